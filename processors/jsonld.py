"""The article's own JSON-LD (schema.org ``NewsArticle`` and kin) -> headline, authors, dates. Pure.

Only the objects that describe an article are read (``@type`` naming an article, a blog posting, a
report or a live blog, directly, in a list or in an ``@graph``); the page's ``WebSite`` and
``Organization`` blocks are not. Authors keep their ``@type`` so the merge can tell a person from an
organisation. A script that is not valid JSON is skipped: the other metadata still applies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml.html import HtmlElement

log = logging.getLogger(__name__)

_ARTICLE_WORDS = ("article", "posting", "report", "liveblog")
_ORG_TYPES = ("organization", "newsmediaorganization", "corporation", "ngo", "brand")


@dataclass(frozen=True)
class Credit:
    """One ``author`` entry: its name and whether the markup says it is an organisation."""

    name: str
    organisation: bool = False


@dataclass
class ArticleLD:
    headline: str | None = None
    authors: list[Credit] = field(default_factory=list)
    published: str | None = None
    modified: str | None = None


def _types(obj: dict[str, Any]) -> list[str]:
    t = obj.get("@type")
    return [str(x).casefold() for x in (t if isinstance(t, list) else [t]) if x]


def _objects(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _objects(item)
    elif isinstance(data, dict):
        yield data
        if "@graph" in data:
            yield from _objects(data["@graph"])


def _is_article(obj: dict[str, Any]) -> bool:
    return any(w in t for t in _types(obj) for w in _ARTICLE_WORDS)


def _credits(value: Any) -> list[Credit]:
    out: list[Credit] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item.strip():
            out.append(Credit(item.strip()))
        elif isinstance(item, dict):
            name = item.get("name")
            if isinstance(name, list):
                name = " ".join(str(n) for n in name)
            if isinstance(name, str) and name.strip():
                org = any(t in _ORG_TYPES for t in _types(item))
                out.append(Credit(name.strip(), org))
    return out


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class LdBlock:
    """One ``<script type="application/ld+json">``: its text, and its JSON when it parses."""

    text: str
    data: Any = None
    parsed: bool = False


def ld_blocks(tree: HtmlElement) -> list[LdBlock]:
    """The page's JSON-LD scripts, each parsed once: the metadata (``read_article_ld``) and the
    access flag (``processors.access``) both read them."""
    blocks = []
    for script in tree.iter("script"):
        if "ld+json" not in (script.get("type") or "").casefold() or not script.text:
            continue
        try:
            blocks.append(LdBlock(script.text, json.loads(script.text), parsed=True))
        except ValueError as exc:
            log.debug("JSON-LD block is not valid JSON: %s", exc)
            blocks.append(LdBlock(script.text))
    return blocks


def read_article_ld(tree: HtmlElement, blocks: list[LdBlock] | None = None) -> ArticleLD:
    """The first article object's fields (a later article object fills what the first lacks).
    ``blocks``: the page's ``ld_blocks``, when the caller has them already."""
    found = ArticleLD()
    for block in ld_blocks(tree) if blocks is None else blocks:
        if not block.parsed:
            continue
        for obj in _objects(block.data):
            if not _is_article(obj):
                continue
            found.headline = found.headline or _text(obj.get("headline")) or _text(obj.get("name"))
            found.authors = found.authors or _credits(obj.get("author"))
            found.published = found.published or _text(obj.get("datePublished"))
            found.modified = found.modified or _text(obj.get("dateModified"))
    return found
