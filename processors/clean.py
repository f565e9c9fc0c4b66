"""Cleaning: Unicode, whitespace, boilerplate lines, byte-safe truncation. Pure functions.

Text rules (``clean_text``), in order:

1. Unicode NFC; CRLF/CR -> LF; zero-width characters and soft hyphens removed;
   no-break and other Unicode spaces -> plain space.
2. Each line: runs of spaces/tabs collapsed, ends stripped.
3. Boilerplate lines dropped: a line that is *entirely* a share/subscribe/advertisement/cookie
   prompt or a photo credit (``BOILERPLATE``); lines made only of punctuation or symbols.
4. A line identical to the line before it is dropped (repeated captions, doubled bylines).
5. Blank lines dropped: paragraphs are separated by one newline, as trafilatura does.

Field limits (``FIELD_BYTES``) keep every keyword value far below Lucene's 32,766-byte term
limit and text fields sane; truncation never splits a UTF-8 sequence.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_ONLY_SYMBOLS = re.compile(r"^[\W_]+$")

# Whole-line boilerplate. Anchored: a sentence that merely mentions a newsletter survives.
BOILERPLATE = re.compile(
    r"""^(?:
        advertisement|advertising|sponsored(?:\ content)?|anzeige|werbung|publicit[ée]|publicidad
      | (?:share|tweet|email|print)(?:\ this)?(?:\ (?:article|story|page|post))?(?:\ on\ \w+)?
      | share\ (?:on|via)\ (?:facebook|twitter|x|linkedin|whatsapp|email)
      | (?:subscribe|sign\ up)(?:\ now)?(?:\ to|\ for)\ (?:our|the)\ (?:\w+\ )?newsletters?\.?
      | click\ here\ to\ (?:subscribe|read\ more)\.?
      | read\ more:?|related(?:\ articles|\ stories|\ content)?:?|more\ on\ this\ story:?
      | follow\ us\ on\ (?:twitter|facebook|instagram|x|linkedin)\.?
      | (?:we\ use\ cookies|this\ (?:web)?site\ uses\ cookies)\b.{0,200}
      | (?:photo|image|picture|foto|bild)(?:\ credit)?\s*:\s*.{1,80}
      | ©.{0,120}|copyright\ ©?.{0,120}|all\ rights\ reserved\.?
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

# Max UTF-8 bytes per field. Keyword fields stay < 1,024 bytes, which also keeps them under the
# template's ignore_above of 1,024 characters; text fields are bounded so that one document
# cannot dominate a bulk request.
FIELD_BYTES = {
    "title": 1000,
    "author": 1000,
    "site_name": 1000,
    "source": 1000,
    "description": 8000,
    "list_item": 1000,
    "quote": 4000,
    "speaker": 500,
}
MAX_LIST_ITEMS = 100


def nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value).translate(_ZERO_WIDTH)


def clean_line(line: str) -> str:
    return _SPACES.sub(" ", line).strip()


def is_boilerplate(line: str) -> bool:
    return bool(BOILERPLATE.match(line) or _ONLY_SYMBOLS.match(line))


def clean_text(text: str) -> str:
    """Article body -> clean text (rules in the module docstring)."""
    text = nfc(text).replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for raw in text.split("\n"):
        line = clean_line(raw)
        if not line or is_boilerplate(line) or (out and out[-1] == line):
            continue
        out.append(line)
    return "\n".join(out)


def clean_field(value: str | None, limit_key: str = "title") -> str | None:
    """A one-line metadata value: HTML entities decoded, NFC, one line, whitespace collapsed,
    truncated to its byte limit. Empty -> None."""
    if value is None:
        return None
    value = clean_line(nfc(html.unescape(value)).replace("\n", " "))
    return truncate_bytes(value, FIELD_BYTES[limit_key]) or None


def strip_html(value: str | None) -> str | None:
    """Feed summaries often carry markup: drop tags, decode entities."""
    if not value:
        return None
    return re.sub(r"<[^>]{0,2000}>", " ", value)


def clean_list(values: Iterable[str | None], *, split_commas: bool = False) -> list[str]:
    """Cleaned, de-duplicated (case-insensitively, first spelling kept), bounded list.
    ``split_commas`` splits values like ``"a, b, c"`` (meta keywords) into items."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        parts = value.split(",") if (split_commas and value) else [value]
        for part in parts:
            item = clean_field(part, "list_item")
            if item and item.casefold() not in seen:
                seen.add(item.casefold())
                out.append(item)
                if len(out) >= MAX_LIST_ITEMS:
                    return out
    return out


def truncate_bytes(value: str, max_bytes: int, *, at_space: bool = False) -> str:
    """At most ``max_bytes`` of UTF-8, never splitting a character; with ``at_space`` the cut
    moves back to the last whitespace when there is one in the last 10%."""
    data = value.encode("utf-8")
    if len(data) <= max_bytes:
        return value
    cut = data[:max_bytes].decode("utf-8", "ignore")
    if at_space:
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space >= len(cut) * 0.9:
            cut = cut[:space]
    return unicodedata.normalize("NFC", cut.rstrip())
