"""Author credits (JSON-LD ``author``, ``<meta name="author">``, bylines, the feed's ``dc:creator``)
-> a list of person names. Pure; no per-site rules.

One credit string is cut into names and each name cleaned:

* a byline prefix goes, in the languages a byline is written in ("By", "Von", "Par", "Por", "Av",
  "Di", "Door", "Przez", "Af", "Od", "Autor:", ...), also when something precedes it
  ("Capital Von Jane Doe", "Ein Kommentar von Jane Doe");
* e-mail addresses, URLs, ``@handles``, bracketed notes ("(dpa)"), dates and times go;
* the credit is split at ``;``, ``,``, ``|``, ``/``, ``&`` and the word "and" in a dozen languages
  ("and", "und", "et", "y", "e", "en", "og", "och", "i", "és", "ve", "и");
* what is left is dropped when it is a role ("Reporter", "Political Correspondent", "Redakteur", ...),
  a generic credit ("admin", "staff", "Redaktion", ...), has no letter, or is too long for a name.

Whether a name is an organisation is told by the markup (JSON-LD ``@type``), by the site's own
names, and by words that name organisations ("News", "Zeitung", "GmbH", "Agency", a domain, ...).
``people`` keeps the persons; when a page credits no person, the organisation it credits (a
newsroom, a wire agency) is kept instead, so that the article can still be filtered by it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from processors.clean import clean_field

_PREFIX_WORDS = (
    r"written\s+by|reported\s+by|words\s+by|story\s+by|by|von|vom|par|por|av|di|da|door|przez|af|od|"
    r"autor(?:in|a)?|author|auteur|texto?|tekst|text\s+und\s+fotos?|redakce|napisał(?:a)?"
)
_PREFIX = re.compile(rf"^(?:{_PREFIX_WORDS})\s*[:\-–]?\s+", re.IGNORECASE)
# A capitalised prefix word later in the string ("Capital Von Jane Doe"): nobiliary particles
# ("Ursula von der Leyen") are written in lower case, so only a capital one counts.
_INNER_PREFIX = re.compile(r"(?:^|\s)(?:By|Von|Par|Por|Door|Przez)\s+(?=\S)")
_EMAIL = re.compile(r"\(?\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b\)?")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?:^|\s)@\w+")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_DATE = re.compile(
    r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b|\b\d{1,2}:\d{2}\b|\b\d{1,2}\.?\s+[A-Za-zÀ-ÿ]{3,}\.?\s+\d{4}\b"
    r"|\b(?:updated|published|aktualisiert|veröffentlicht|publié|mis à jour)\b.*$",
    re.IGNORECASE,
)
_SPLIT = re.compile(
    r"\s*[;,|/&·•]\s*|\s+(?:and|und|et|y|e|en|og|och|i|és|ve|и|a|oraz|ja|sowie)\s+", re.IGNORECASE
)
_ROLES = {
    "reporter", "redakteur", "redakteurin", "correspondent", "korrespondent", "korrespondentin",
    "journalist", "journalistin", "editor", "chefredakteur", "chefredakteurin", "writer", "staff writer",
    "senior writer", "columnist", "kolumnist", "photographer", "fotograf", "fotos", "foto", "photos", "photo",
    "contributor", "autor", "author", "autorin", "rédacteur", "rédactrice", "redactor", "redactora",
    "periodista", "giornalista", "redacción", "redação", "redazione", "envoyé spécial", "envoyée spéciale",
}
_GENERIC = {
    "admin", "administrator", "staff", "editor", "editors", "redaktion", "editorial", "newsroom",
    "news desk", "newsdesk", "web desk", "webmaster", "anonymous", "unknown", "guest", "author",
    "agenturen", "agencies", "red", "redaktion", "online redaktion",
}
_ORG_WORDS = re.compile(
    r"\b(?:news|nachrichten|noticias|notizie|nouvelles|zeitung|times|post|herald|tribune|gazette|journal|"
    r"press|presse|prensa|media|medien|online|redaktion|rédaction|redacción|redazione|agentur|agency|"
    r"agence|agencia|agenzia|gmbh|inc|ltd|llc|plc|group|gruppe|verlag|tv|radio|channel|"
    r"broadcasting|network|magazine|magazin|daily|weekly|newspaper|desk|dpa|afp|reuters|kna|epd|"
    r"ansa|efe)\b|\.(?:com|net|org|de|at|ch|fr|es|it|uk|is|nl|be|pl|cz|se|no|dk|jp|kr|in)\b",
    re.IGNORECASE,
)
MAX_NAME_CHARS = 60


@dataclass(frozen=True)
class Name:
    text: str
    organisation: bool


def key(value: str) -> str:
    return re.sub(r"\W+", " ", value.casefold()).strip()


def _cut_prefix(value: str) -> str:
    value = _PREFIX.sub("", value.strip())
    inner = list(_INNER_PREFIX.finditer(value))
    return value[inner[-1].end():] if inner else value


def split_credit(value: str | None) -> list[str]:
    """One credit string -> the names in it (cleaned, not yet judged person or organisation)."""
    value = clean_field(value, "author")
    if not value:
        return []
    value = _HANDLE.sub(" ", _URL.sub(" ", _EMAIL.sub(" ", value)))
    value = _DATE.sub(" ", _BRACKETS.sub(" ", value))
    out = []
    for i, part in enumerate(_SPLIT.split(_cut_prefix(value))):
        name = clean_field(_cut_prefix(part).strip(" -–—:.'\""), "author")
        if not name or len(name) > MAX_NAME_CHARS or not any(ch.isalpha() for ch in name):
            continue
        # "Jane Doe, Chief Political Correspondent": a role follows a name ("Jane Reporter" is a name)
        role = name.casefold() in _ROLES or (i > 0 and name.split()[-1].casefold() in _ROLES)
        if role or name.casefold() in _GENERIC or any(ch.isdigit() for ch in name):
            continue
        out.append(name)
    return out


def is_organisation(name: str, site_names: set[str]) -> bool:
    k = key(name)
    return k in site_names or bool(_ORG_WORDS.search(name)) or any(
        len(s) > 3 and (k.startswith(s + " ") or k.endswith(" " + s)) for s in site_names)


def names_of(credits: Iterable[tuple[str, bool]], site_names: set[str]) -> list[Name]:
    """(credit string, marked as organisation) pairs -> names, in order, without repeats."""
    out: list[Name] = []
    seen: set[str] = set()
    for credit, marked_org in credits:
        for name in split_credit(credit):
            if key(name) in seen:
                continue
            seen.add(key(name))
            out.append(Name(name, marked_org or is_organisation(name, site_names)))
    return out


def people(names: list[Name]) -> list[str]:
    """The persons; if there is none, the credited organisations (at most one per credit line)."""
    persons = [n.text for n in names if not n.organisation]
    return persons or [n.text for n in names if n.organisation][:1]
