"""Every search filter and facet returns what was indexed (real Kafka -> indexer -> Elasticsearch)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from newsflow import cli
from newsflow.elastic import ensure_index, index_name, make_es
from newsflow.schema import Article
from processors.index.search import Filters, search
from tests.processors.index.helpers import make_article, make_runner, produce

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def corpus() -> list[Article]:
    def a(slug, days, **kw):
        published = None if days is None else NOW - timedelta(days=days)
        return make_article(f"https://{kw.get('host', 'news.example.org')}/{slug}.html", published_at=published,
                            **kw)

    return [
        a("kirby-briefing", 1, host="harbour.example", source="Harbour Times", language="en",
          title="Kirby briefs reporters on Ukraine", text="John Kirby said troops continue to gather near the border.",
          persons=["John Kirby", "Jen Psaki"], organizations=["Pentagon", "White House"], places=["Ukraine", "Kyiv"],
          story_id="story-border", access="paywalled"),
        a("psaki-sanctions", 3, host="harbour.example", source="Harbour Times", language="en",
          title="White House warns of sanctions", text="Jen Psaki said sanctions would follow an invasion.",
          persons=["Jen Psaki"], organizations=["White House"], places=["Ukraine", "Moscow"], story_id="story-border",
          access="free"),
        a("scholz-berlin", 10, host="zeitung.example", source="Die Zeitung", language="de",
          title="Scholz trifft Biden", text="Olaf Scholz reiste nach Washington, um über die Ukraine zu sprechen.",
          persons=["Olaf Scholz", "Joe Biden"], organizations=["Nato"], places=["Berlin", "Washington", "Ukraine"],
          story_id="story-diplomacy", access="paywalled"),
        a("lighthouse", 40, host="coast.example", source="Coast Courier", language="en",
          title="Harbour town votes to rebuild its lighthouse",
          text="The harbour council voted to rebuild the old lighthouse after the storm.",
          persons=["Ada Keeper"], organizations=["Harbour Council"], places=["Kestrel Haven"]),
        a("undated-recent", None, host="coast.example", source="Coast Courier", language="en",
          title="Ferry returns to the island", text="The ferry service returned after repairs.",
          first_seen_at=NOW - timedelta(days=2), fetched_at=NOW - timedelta(days=2),
          places=["Kestrel Haven"], organizations=["Ferry Company"]),
        a("undated-old", None, host="zeitung.example", source="Die Zeitung", language="de",
          title="Alte Brücke gesperrt", text="Die alte Brücke bleibt wegen Reparaturen gesperrt.",
          first_seen_at=NOW - timedelta(days=60), fetched_at=NOW - timedelta(days=60), places=["Berlin"]),
        a("macron-kyiv", 5, host="monde.example", source="Le Monde Example", language="fr",
          title="Macron à Kyiv", text="Emmanuel Macron a rencontré Volodymyr Zelensky à Kyiv.",
          persons=["Emmanuel Macron", "Volodymyr Zelensky"], places=["Kyiv", "Ukraine"], story_id="story-diplomacy"),
    ]


@pytest.fixture
def indexed(make_settings):
    s = make_settings()
    articles = corpus()
    produce(s, articles)
    make_runner(s).run(idle_exit_s=3)
    return s, articles


def when(a: Article) -> datetime:
    return a.published_at or a.first_seen_at


def ci(values) -> set[str]:
    return {v.lower() for v in values}


CASES: list[tuple[str, Filters, Callable[[Article], bool]]] = [
    ("since 7d", Filters(since=NOW - timedelta(days=7)), lambda a: when(a) >= NOW - timedelta(days=7)),
    ("until 7d", Filters(until=NOW - timedelta(days=7)), lambda a: when(a) <= NOW - timedelta(days=7)),
    ("since+until", Filters(since=NOW - timedelta(days=12), until=NOW - timedelta(days=2, hours=12)),
     lambda a: NOW - timedelta(days=12) <= when(a) <= NOW - timedelta(days=2, hours=12)),
    ("lang", Filters(languages=("de",)), lambda a: a.language == "de"),
    ("lang any", Filters(languages=("DE", "fr")), lambda a: a.language in ("de", "fr")),
    ("source name", Filters(sources=("coast courier",)), lambda a: a.source == "Coast Courier"),
    ("source host", Filters(sources=("harbour.example",)), lambda a: a.host == "harbour.example"),
    ("person", Filters(persons=("jen psaki",)), lambda a: "jen psaki" in ci(a.persons)),
    ("persons all", Filters(persons=("Jen Psaki", "John Kirby")),
     lambda a: {"jen psaki", "john kirby"} <= ci(a.persons)),
    ("org", Filters(organizations=("White House",)), lambda a: "White House" in a.organizations),
    ("place", Filters(places=("Kyiv",)), lambda a: "Kyiv" in a.places),
    ("places all", Filters(places=("Ukraine", "Moscow")), lambda a: {"Ukraine", "Moscow"} <= set(a.places)),
    ("story", Filters(stories=("story-diplomacy",)), lambda a: a.story_id == "story-diplomacy"),
    ("access", Filters(access=("paywalled",)), lambda a: a.access == "paywalled"),
    ("access any", Filters(access=("free", "unknown")), lambda a: a.access in ("free", "unknown")),
    ("combined", Filters(places=("Ukraine",), languages=("en",), since=NOW - timedelta(days=7)),
     lambda a: "Ukraine" in a.places and a.language == "en" and when(a) >= NOW - timedelta(days=7)),
]


def test_every_filter_and_facet_returns_what_was_indexed(indexed):
    s, articles = indexed
    everything = search(s, "", size=100, facet_size=100)
    assert everything["total"] == len(articles)
    for name, filters, keep in CASES:
        expected = [a for a in articles if keep(a)]
        assert expected, f"case {name!r} selects nothing: a useless case"
        result = search(s, "", filters, size=100, facet_size=100)
        assert {h["id"] for h in result["hits"]} == {a.id for a in expected}, name
        assert result["total"] == len(expected), name
        facets = {k: {b["value"]: b["count"] for b in v} for k, v in result["facets"].items()}
        assert facets["sources"] == Counter(a.source for a in expected), name
        assert facets["languages"] == Counter(a.language for a in expected), name
        assert facets["access"] == Counter(a.access for a in expected), name
        for field in ("persons", "organizations", "places"):
            assert facets[field] == Counter(v for a in expected for v in getattr(a, field)), (name, field)


def test_query_highlights_and_ordering(indexed):
    s, articles = indexed
    result = search(s, "lighthouse")
    assert [h["url"] for h in result["hits"]] == ["https://coast.example/lighthouse.html"]
    hit = result["hits"][0]
    assert "<mark>lighthouse</mark>" in hit["snippet"]
    assert hit["title_highlight"] == "Harbour town votes to rebuild its <mark>lighthouse</mark>"
    assert hit["title"] == "Harbour town votes to rebuild its lighthouse"

    ukraine = search(s, "ukraine", Filters(languages=("en",)))
    assert {h["id"] for h in ukraine["hits"]} == {a.id for a in articles if a.language == "en" and
                                                   "ukraine" in (a.title + a.text).lower()}
    newest = search(s, "", size=100, sort="newest")
    dated = [h["published_at"] for h in newest["hits"] if h["published_at"]]
    assert dated == sorted(dated, reverse=True)
    assert [h["published_at"] for h in newest["hits"]][-2:] == [None, None]  # undated last


def test_cli_json_and_rich_output(indexed, monkeypatch, capsys):
    s, articles = indexed
    for name in ("es_url", "es_index", "kafka_bootstrap"):
        monkeypatch.setenv(f"NEWSFLOW_{name.upper()}", str(getattr(s, name)))
    assert cli.main(["search", "sanctions", "--person", "Jen Psaki", "--since", "7d", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [h["url"] for h in out["hits"]] == ["https://harbour.example/psaki-sanctions.html"]
    assert out["filters"]["persons"] == ["Jen Psaki"] and "since" in out["filters"]
    assert {b["value"] for b in out["facets"]["places"]} == {"Ukraine", "Moscow"}

    monkeypatch.setenv("COLUMNS", "160")
    assert cli.main(["search", "--place", "Kyiv", "--sort", "newest"]) == 0
    text = capsys.readouterr().out
    assert "2 matching articles" in text
    assert text.index("Kirby briefs reporters on Ukraine") < text.index("Macron à Kyiv")  # newest first
    assert "top persons" in text and "Volodymyr Zelensky" in text

    assert cli.main(["search", "--since", "yesterday-ish"]) == 2
    assert "neither a duration" in capsys.readouterr().err


def test_search_before_anything_is_indexed_says_so(make_settings):
    s = make_settings()
    result = search(s, "anything")
    assert result["total"] == 0 and "nothing indexed yet" in result["note"]


def test_documents_indexed_before_the_access_field_count_as_unknown(indexed):
    """An article indexed before ``access`` existed has no such field: facet and filter call it unknown."""
    s, articles = indexed
    old = make_article("https://coast.example/old.html", title="Old article", first_seen_at=NOW, fetched_at=NOW)
    body = old.model_dump(mode="json", exclude_none=True)
    del body["access"]
    es = make_es(s)
    try:
        index = index_name(s.es_index, old.first_seen_at)
        ensure_index(es, index, s.es_index)
        es.index(index=index, id=old.id, document=body, refresh=True)
    finally:
        es.close()
    result = search(s, "", Filters(access=("unknown",)), size=100)
    expected = {a.id for a in articles if a.access == "unknown"} | {old.id}
    assert {h["id"] for h in result["hits"]} == expected
    assert {b["value"]: b["count"] for b in result["facets"]["access"]} == {"unknown": len(expected)}
    assert search(s, "", Filters(access=("free",)))["total"] == 1


def test_cli_access_facet_and_filter(indexed, monkeypatch, capsys):
    s, articles = indexed
    for name in ("es_url", "es_index"):
        monkeypatch.setenv(f"NEWSFLOW_{name.upper()}", str(getattr(s, name)))
    assert cli.main(["search", "--access", "paywalled", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {h["access"] for h in out["hits"]} == {"paywalled"}
    assert out["facets"]["access"] == [{"value": "paywalled", "count": 2}]
    monkeypatch.setenv("COLUMNS", "160")
    assert cli.main(["search"]) == 0
    text = capsys.readouterr().out
    assert "top access" in text and "paywalled" in text
