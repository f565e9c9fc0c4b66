"""Quote attribution patterns (processors/enrich/quotes.py), table-driven; no NER needed."""

from __future__ import annotations

import pytest

from processors.enrich.quotes import People, find_quotes, quote_spans

NAMES = ["John Kirby", "Jen Psaki", "Emmanuel Macron", "Olaf Scholz"]

CASES = [
    # (id, text, [(quote text, speaker, rule)])
    ("after: X said",
     "“We are ready,” Kirby said.",
     [("We are ready", "John Kirby", "after")]),
    ("after: full name with apposition",
     "“We have continued to see capabilities flow,” John Kirby, the Pentagon spokesperson, said.",
     [("We have continued to see capabilities flow", "John Kirby", "after")]),
    ("after: X added",
     "John Kirby spoke first. “The numbers continue to grow. We maintain our view,” Kirby added.",
     [("The numbers continue to grow. We maintain our view", "John Kirby", "after")]),
    ("after: inverted, said X",
     "“It is a matter of days,” said Jen Psaki.",
     [("It is a matter of days", "Jen Psaki", "after")]),
    ("after: pronoun",
     "Olaf Scholz met reporters in Berlin. “We stand together,” he said.",
     [("We stand together", "Olaf Scholz", "after")]),
    ("after: title stripped",
     "“Talks will go on,” President Macron told reporters.",
     [("Talks will go on", "Emmanuel Macron", "after")]),
    ("before: X said:",
     "Jen Psaki, the White House press secretary, said: “They are taking escalatory steps.”",
     [("They are taking escalatory steps.", "Jen Psaki", "before")]),
    ("before: told reporters,",
     "Kirby told reporters, “Nothing has changed on the ground.”",
     [("Nothing has changed on the ground.", "John Kirby", "before")]),
    ("split quote",
     "“We are watching closely,” Kirby said, “and we will respond if needed.”",
     [("We are watching closely and we will respond if needed.", "John Kirby", "split")]),
    ("according to",
     "They discussed “ongoing diplomatic and deterrence efforts”, according to a White House account.",
     [("ongoing diplomatic and deterrence efforts", "White House", "according")]),
    ("reported speech with partial quote",
     "Macron said he had fulfilled his aim of “arranging things to prevent an escalation” for diplomacy.",
     [("arranging things to prevent an escalation", "Emmanuel Macron", "reported")]),
    ("speaker named in the previous sentence",
     "Kirby was asked about the troops in Poland.\n“They are there to reassure our allies.”",
     [("They are there to reassure our allies.", "John Kirby", "previous-sentence")]),
    ("continuation paragraph keeps the speaker",
     "“The first part of the statement,” Psaki said.\n“And the second part, in its own paragraph.”",
     [("The first part of the statement", "Jen Psaki", "after"),
      ("And the second part, in its own paragraph.", "Jen Psaki", "continued")]),
    ("role resolved through a pre-modifier",
     "French president Emmanuel Macron flew to Moscow. “We need a new balance,” the French president said.",
     [("We need a new balance", "Emmanuel Macron", "after")]),
    ("role resolved through an apposition, head noun only",
     "John Kirby, the Pentagon spokesperson, spoke on Monday. “Troops remain on alert,” the spokesperson said.",
     [("Troops remain on alert", "John Kirby", "after")]),
    ("straight quotes",
     '"This is not over," Scholz said.',
     [("This is not over", "Olaf Scholz", "after")]),
    ("unknown speaker keeps the name as written",
     "“The harbour is closed,” Maria Lopez said.",
     [("The harbour is closed", "Maria Lopez", "after")]),
    ("scare quotes without attribution are not quotes",
     "The so-called “new normal” has arrived in the harbour town.",
     []),
    ("one-word quotes are ignored",
     "Kirby called it “nonsense”.",
     []),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quote_patterns(text, expected):
    found = find_quotes(text, People.from_names(text, NAMES))
    assert [(q.text, q.speaker, q.how) for q in found] == expected


def test_pronoun_ignores_people_named_inside_quotes():
    text = "Psaki spoke at noon. “Kirby will brief you later,” she said."
    found = find_quotes(text, People.from_names(text, NAMES))
    assert [(q.speaker, q.speaker_raw) for q in found] == [("Jen Psaki", "she")]


def test_unclosed_quote_runs_to_paragraph_end():
    text = "“First paragraph of a long quote,\n“and its end,” Kirby said."
    spans = quote_spans(text)
    assert [text[s.open + 1 : s.close] for s in spans] == ["First paragraph of a long quote,", "and its end,"]


def test_ambiguous_role_is_not_resolved():
    text = ("Russian president Vladimir Putin and Ukrainian president Volodymyr Zelensky did not meet. "
            "“There is no date,” the president said.")
    found = find_quotes(text, People.from_names(text, ["Vladimir Putin", "Volodymyr Zelensky"]))
    assert [(q.speaker, q.speaker_raw) for q in found] == [(None, "the president")]
