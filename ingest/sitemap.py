"""Sitemaps as sources: ``<urlset>`` (with the Google News ``news:`` and ``image:`` extensions) and
``<sitemapindex>``. Pure: bytes in, a ``Sitemap`` out; the poller's job walks an index (``ingest.jobs``).

* **Safe XML.** lxml's ``iterparse`` with entities left unexpanded (``resolve_entities=False``), no DTD
  loaded, no network, no huge-tree mode; each ``<url>``/``<sitemap>`` element is freed once read, and
  within one only the first of each field it needs is kept, so a document costs its byte cap
  (``max_feed_bytes``) and little more, whatever its shape. A truncated or broken document keeps
  the entries read before the break (``recover``), and the error is reported with them, as for feeds.
* **Recent entries only.** An entry's date is the later of ``news:publication_date`` and ``lastmod``.
  Entries older than ``since`` are skipped, and so are entries with neither date: a sitemap may list a
  site's whole archive, and without a date nothing tells a new article from one of 2009. A child sitemap
  of an index is skipped when its ``lastmod`` is older than ``since``; one without ``lastmod`` is kept
  (indexes rarely date their children), and children are listed newest first, undated last.
* **What an entry carries**: the link (``loc``), ``news:title``, ``news:publication_date`` (else
  ``lastmod``) as published, ``lastmod`` as updated, ``news:publication/news:language``,
  ``news:keywords`` (comma separated) as tags, the first ``image:image/image:loc``, and the publication's
  name (``news:publication/news:name``) as the source's title.
"""

from __future__ import annotations

import heapq
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from lxml import etree

from ingest.urls import resolve

GZIP_MAGIC = b"\x1f\x8b"
MAX_KEYWORDS = 50
# The root element, after an optional BOM, XML declaration, comments, processing instructions and DOCTYPE.
_ROOT = re.compile(rb"^(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)*"
                   rb"<(?:[\w.-]+:)?(urlset|sitemapindex)[\s/>]", re.S | re.I)

Kind = Literal["urlset", "sitemapindex"]
# The elements read within a <url> or <sitemap> (local names); others are dropped as soon as they end.
_FIELDS = frozenset({"loc", "lastmod", "news", "publication", "name", "language", "publication_date", "title",
                     "keywords", "image"})


@dataclass(frozen=True)
class SitemapEntry:
    loc: str
    published: datetime | None = None
    updated: datetime | None = None
    title: str | None = None
    language: str | None = None
    keywords: tuple[str, ...] = ()
    image: str | None = None
    publication: str | None = None


@dataclass
class Sitemap:
    kind: Kind
    entries: list[SitemapEntry] = field(default_factory=list)  # urlset: the recent ones, newest first
    children: list[str] = field(default_factory=list)  # index: child sitemaps to fetch, newest first
    total: int = 0  # <url> or <sitemap> elements in the document
    old: int = 0  # skipped: older than ``since``
    undated: int = 0  # urlset entries skipped: no date at all
    error: str | None = None  # the XML error a broken document was read up to

    @property
    def title(self) -> str | None:
        return next((e.publication for e in self.entries if e.publication), None)


def sitemap_kind(head: bytes) -> Kind | None:
    """``urlset`` or ``sitemapindex`` when the document's root element is one (by its first bytes)."""
    m = _ROOT.match(head[:4096])
    return m.group(1).decode().lower() if m else None  # type: ignore[return-value]


def parse_date(text: str | None) -> datetime | None:
    """A W3C datetime (``2024-03-05``, ``2024-03-05T09:30Z``, ``...+01:00``) in UTC; None when it is not one.
    A date without a time zone is taken as UTC."""
    value = (text or "").strip()
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _local(tag) -> str:
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def _text(el) -> str:
    """The element's text without entity references (``resolve_entities=False`` leaves them as nodes)."""
    if el is None:
        return ""
    parts = [el.text or ""]
    for c in el:
        if isinstance(c.tag, str):  # an element, not an entity reference
            parts.append(_text(c))
        parts.append(c.tail or "")
    return "".join(parts).strip()


def _fields(el) -> dict:
    """Child elements by local name (the first of each name)."""
    out: dict = {}
    if el is not None:
        for c in el:
            out.setdefault(_local(c.tag), c)
    return out


def _url_entry(loc: str, f: dict, news: dict, published: datetime | None, updated: datetime | None,
               base_url: str) -> SitemapEntry:
    publication = _fields(news.get("publication"))
    keywords = _text(news.get("keywords"))
    return SitemapEntry(
        loc=loc, published=published, updated=updated,
        title=_text(news.get("title")) or None,
        language=_text(publication.get("language")) or None,
        keywords=tuple(k.strip() for k in keywords.split(",") if k.strip())[:MAX_KEYWORDS],
        image=resolve(base_url, _text(_fields(f.get("image")).get("loc")) or None),
        publication=_text(publication.get("name")) or None,
    )


def _free(el) -> None:
    """Forget a child of the root once read: memory stays flat however long the document."""
    el.clear(keep_tail=False)
    while el.getprevious() is not None:
        del el.getparent()[0]


class _Newest:
    """The ``limit`` newest items seen (undated ones rank last, earlier in the document first): a heap, so
    a sitemap of 50,000 recent entries keeps ``limit`` of them in memory, not 50,000."""

    def __init__(self, limit: int):
        self.limit = limit
        self.heap: list[tuple[tuple[bool, float, int], object]] = []

    @staticmethod
    def rank(date: datetime | None, order: int) -> tuple[bool, float, int]:
        return date is not None, date.timestamp() if date else 0.0, -order  # larger ranks first

    def wants(self, date: datetime | None, order: int) -> bool:
        """Whether an item so dated would be kept (so it is worth building)."""
        return len(self.heap) < self.limit or self.rank(date, order) > self.heap[0][0]

    def add(self, date: datetime | None, order: int, item: object) -> None:
        rank = self.rank(date, order)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, (rank, item))
        elif rank > self.heap[0][0]:
            heapq.heapreplace(self.heap, (rank, item))

    def items(self) -> list:
        return [item for _rank, item in sorted(self.heap, key=lambda t: t[0], reverse=True)]


def read_sitemap(body: bytes, *, base_url: str, since: datetime | None, limit: int) -> Sitemap:
    """Read a sitemap document (already decompressed): at most ``limit`` entries (or children), the newest.
    Raises ValueError when its root is not a sitemap."""
    kind = sitemap_kind(body.lstrip()[:4096])
    if kind is None:
        raise ValueError("not a sitemap (no <urlset> or <sitemapindex> root)")
    out = Sitemap(kind)
    entries, children = _Newest(limit), _Newest(limit)
    seen_children: set[str] = set()
    parser = etree.iterparse(io.BytesIO(body), events=("end",), resolve_entities=False, load_dtd=False,
                             no_network=True, huge_tree=False, recover=True, remove_pis=True, remove_comments=True)
    try:
        for _event, el in parser:
            parent = el.getparent()
            if parent is None:
                continue  # the root
            name = _local(el.tag)
            if parent.getparent() is not None:  # within a <url>/<sitemap>: keep the first of each field only
                if name not in _FIELDS or any(_local(c.tag) == name for c in el.itersiblings(preceding=True)):
                    parent.remove(el)
                continue
            if name not in ("url", "sitemap"):
                _free(el)
                continue
            out.total += 1
            f = _fields(el)
            lastmod = parse_date(_text(f.get("lastmod")))
            if name == "url" and kind == "urlset":
                news = _fields(f.get("news"))
                published = parse_date(_text(news.get("publication_date")))
                date = max((d for d in (published, lastmod) if d is not None), default=None)
                if date is None:
                    out.undated += 1
                elif since is not None and date < since:
                    out.old += 1
                elif entries.wants(date, out.total):
                    loc = resolve(base_url, _text(f.get("loc")) or None)
                    if loc:
                        entries.add(date, out.total, _url_entry(loc, f, news, published, lastmod, base_url))
            elif name == "sitemap" and kind == "sitemapindex":
                loc = resolve(base_url, _text(f.get("loc")) or None)
                if not loc or loc in seen_children:
                    pass
                elif since is not None and lastmod is not None and lastmod < since:
                    out.old += 1
                else:
                    seen_children.add(loc)
                    children.add(lastmod, out.total, loc)
            _free(el)
    except etree.XMLSyntaxError as exc:
        out.error = f"XMLSyntaxError: {exc}"
    error_log = [e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR]
    if out.error is None and error_log:
        out.error = f"XMLSyntaxError: {error_log[0].message} (line {error_log[0].line})"
    out.entries = entries.items()
    out.children = children.items()
    return out
