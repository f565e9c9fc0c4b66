"""What the seed article must yield, wherever it enters (CLI, pipeline)."""

from __future__ import annotations

PERSONS = {"John Kirby", "Jen Psaki", "Emmanuel Macron", "Vladimir Putin", "Volodymyr Zelensky", "Olaf Scholz", "Biden"}
PLACES = {"Russia", "Ukraine", "Moscow", "Kyiv", "Poland", "Belarus"}
ORGS = {"Pentagon", "White House", "Nato", "Wall Street Journal"}

# Quote openings and who said them, as the article attributes them.
ATTRIBUTED = {
    "We have continued to see even over the last 24 hours": "John Kirby",
    "The numbers continue to grow": "John Kirby",
    "What we’re looking at here": "Jen Psaki",
    "arranging things to prevent an escalation": "Emmanuel Macron",
    "close attention": "John Kirby",
}


def check_seed_article(article: dict) -> None:
    assert PERSONS <= set(article["persons"]), set(article["persons"])
    assert PLACES <= set(article["places"]), set(article["places"])
    assert ORGS <= set(article["organizations"]), set(article["organizations"])
    short = {"Kirby", "Macron", "Psaki"} & set(article["persons"])
    assert not short, f"short forms not normalised: {short}"
    correct = [q for q in article["quotes"]
               if any(q["text"].startswith(head) and q.get("speaker") == who for head, who in ATTRIBUTED.items())]
    assert len(correct) >= 4, article["quotes"]
    speakers = {q.get("speaker") for q in article["quotes"]}
    assert {"John Kirby", "Jen Psaki", "Emmanuel Macron"} <= speakers
    assert article["language"] == "en"
