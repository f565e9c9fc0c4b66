"""Entity normalisation (pure) and the NER pipeline on the seed article."""

from __future__ import annotations

import pytest

from processors.enrich.entities import Mention, clean_surface, load_nlp, normalise, person_aliases, strip_titles
from tests.conftest import SEED


def m(text: str, label: str, start: int = 0) -> Mention:
    return Mention(start, start + len(text), text, label)


@pytest.mark.parametrize(("raw", "clean"), [
    ("the Wall Street Journal", "Wall Street Journal"),
    ("The White House", "White House"),
    ("Macron’s", "Macron"),
    ("“Kirby,", "Kirby"),
    ("  Olaf   Scholz ", "Olaf Scholz"),
])
def test_clean_surface(raw, clean):
    assert clean_surface(raw) == clean


def test_titles_are_not_names():
    assert strip_titles("President Joe Biden") == "Joe Biden"
    assert strip_titles("Mr. Kirby") == "Kirby"
    assert strip_titles("President") == "President"  # never empty


def test_short_forms_become_the_full_name():
    aliases = person_aliases(["John Kirby", "Kirby", "Jen Psaki", "Biden"])
    assert aliases["kirby"] == "John Kirby"
    assert aliases["psaki"] == "Jen Psaki"
    assert "biden" not in aliases  # no full name to map to


def test_ambiguous_short_form_stays_as_written():
    ents = normalise([m("Anna Berg", "PERSON", 0), m("Tom Berg", "PERSON", 20), m("Berg", "PERSON", 40)])
    assert ents.persons == ["Anna Berg", "Tom Berg", "Berg"]


def test_label_repair_and_ranking():
    found = [
        m("Emmanuel Macron", "PERSON", 0), m("Macron", "ORG", 30), m("Macron’s", "PERSON", 60),
        m("European Nato", "ORG", 90), m("Nato", "ORG", 120), m("the Pentagon", "FAC", 150),
        m("Kyiv", "PERSON", 170), m("Monday", "DATE", 190), m("1,700", "CARDINAL", 200), m("two", "CARDINAL", 210),
    ]
    ents = normalise(found)
    assert ents.persons == ["Emmanuel Macron"]          # three mentions, one person
    assert ents.organizations == ["Nato", "Pentagon"]   # nationality dropped; gazetteer label for FAC
    assert ents.places == ["Kyiv"]                      # gazetteer place, not a person
    assert ents.dates == ["Monday"] and ents.numbers == ["1,700"]
    assert [name for _s, _e, name in ents.person_mentions] == ["Emmanuel Macron"] * 3


@pytest.fixture(scope="module")
def nlp():
    return load_nlp()


def test_seed_entities(nlp):
    from processors.enrich.entities import extract_entities

    text = SEED.read_text(encoding="utf-8")
    ents = extract_entities(nlp, text)
    assert {"John Kirby", "Jen Psaki", "Emmanuel Macron", "Vladimir Putin", "Volodymyr Zelensky", "Olaf Scholz",
            "Biden"} <= set(ents.persons)
    assert "Kirby" not in ents.persons and "Macron" not in ents.persons
    assert {"Russia", "Ukraine", "Moscow", "Kyiv", "Poland", "Belarus"} <= set(ents.places)
    assert {"Pentagon", "White House", "Nato", "Wall Street Journal"} <= set(ents.organizations)


def test_pipeline_runs_ner_only(nlp):
    assert nlp.pipe_names == ["ner", "entity_ruler"]
