"""Feed parsing: feedparser plus the rules around it (identity, version, caps, content-type sanity).

* **Entry identity** (the key of the seen set): the GUID/Atom id, else the normalised link, else a hash
  of the entry's content. Hashed to 16 hex digits.
* **Entry version**: the entry's ``updated`` date when it has one, else a hash of title and link. A seen
  entry whose version changes is fetched again (same article id, same ``first_seen_at``). Summaries are
  left out on purpose: feeds that rewrite them on every request would refetch every page every poll.
* **Entries cap**: at most ``max_entries`` entries, the first ones in document order (feeds list the
  newest first). A document with more is cut *before* parsing (``truncate_entries``), so a
  100,000-entry feed costs what a ``max_entries`` one does.
* **Content-type sanity**: images, audio, video, PDFs, archives and HTML pages are not feeds.
* **bozo**: the entries feedparser could read are kept and the error is reported with them.
* **JSON Feed** (jsonfeed.org 1.0/1.1), which feedparser 6.0 does not read, is mapped to feedparser's
  entry shape here, so one identity/version path serves every format.
* **Sitemaps** (``<urlset>``, Google News ``news:``, ``<sitemapindex>``; ``ingest.sitemap``) are mapped
  the same way. Only their recent entries are read (``since``), newest first; an index's entries are
  its child sitemaps (``ParsedFeed.sitemaps``), which the poller's job fetches.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import feedparser

from ingest.sitemap import Sitemap, read_sitemap, sitemap_kind
from ingest.urls import canonical_url, resolve
from newsflow.schema import FeedEntry, article_id

MAX_SUMMARY_CHARS = 20_000
_ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>", re.I)
_NOT_FEED_PREFIXES = ("image/", "audio/", "video/", "font/", "model/", "multipart/")
_NOT_FEED_TYPES = {
    "application/pdf", "application/zip", "application/gzip", "application/x-gzip", "application/x-tar",
    "application/msword", "application/javascript", "text/javascript", "text/css", "application/wasm",
}
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S)
_FEED_ROOT = re.compile(rb"<(?:[\w.-]+:)?(?:rss|feed|rdf)[\s>]", re.I)
PAGE_TYPES = ("text/html", "application/xhtml+xml")


class NotAFeed(Exception):
    def __init__(self, error_class: str, message: str):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message


class EntryRef(FeedEntry):
    """A feed entry as the poller tracks it: what the feed said plus identity, version and page link."""

    key: str
    version: str
    page_url: str | None = None
    attempts: int = 0


@dataclass
class ParsedFeed:
    title: str | None
    entries: list[EntryRef]
    total_entries: int
    ttl: str | None = None
    sy_period: str | None = None
    sy_frequency: str | None = None
    bozo: str | None = None
    bozo_class: str = "parse"  # the error class ``bozo`` is recorded with (``sitemap``: a child sitemap failed)
    version: str = ""
    dates: list[datetime] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)  # a sitemap index: the child sitemaps to read


def _h(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _time(entry, key: str) -> datetime | None:
    value = entry.get(f"{key}_parsed")
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def _image(entry) -> str | None:
    for key in ("media_thumbnail", "media_content"):
        for item in entry.get(key) or []:
            url = item.get("url")
            if url and (key == "media_thumbnail" or item.get("medium") == "image"
                        or str(item.get("type", "")).startswith("image/")):
                return url
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/") and link.get("href"):
            return link["href"]
    return None


def entry_ref(entry, base_url: str) -> EntryRef:
    """Identity, version and metadata of one feedparser entry (``base_url`` resolves relative links)."""
    title = entry.get("title")
    guid = str(entry.get("id") or "").strip()
    raw_link = entry.get("link")
    if raw_link and raw_link == guid and not guid.lower().startswith(("http://", "https://")):
        raw_link = None  # feedparser copies a "permalink" GUID into link; only an absolute one is a page
    link = resolve(base_url, raw_link)
    if guid:
        identity = "guid:" + guid
    elif link:
        identity = "link:" + canonical_url(link)
    else:
        content = " ".join(c.get("value", "") for c in entry.get("content") or [])
        identity = "hash:" + _h(f"{title}\x00{entry.get('summary')}\x00{content}", 64)
    updated = _time(entry, "updated")
    version = _h(f"u:{updated.isoformat()}" if updated else f"t:{title}\x00{link}", 8)
    summary = entry.get("summary")
    return EntryRef(
        key=_h(identity),
        version=version,
        page_url=link,
        guid=guid or None,
        title=title,
        link=link or raw_link,
        published=_time(entry, "published") or updated,
        updated=updated,
        author=entry.get("author"),
        summary=summary[:MAX_SUMMARY_CHARS] if isinstance(summary, str) else None,
        tags=[t.get("term") for t in entry.get("tags") or [] if t.get("term")],
        image=_image(entry),
        language=entry.get("language"),
    )


def page_article_id(ref: EntryRef) -> str | None:
    return article_id(canonical_url(ref.page_url)) if ref.page_url else None


def check_feed_type(media_type: str, head: bytes) -> None:
    """Raise NotAFeed for documents that are certainly not feeds (by media type or by their first bytes)."""
    if media_type.startswith(_NOT_FEED_PREFIXES) or media_type in _NOT_FEED_TYPES:
        raise NotAFeed("bad_content_type", f"{media_type} is not a feed")
    start = head[:2048]
    if _HTML_START.match(start) and not _FEED_ROOT.search(start):
        raise NotAFeed("bad_content_type", f"an HTML page ({media_type or 'no content type'}), not a feed; "
                       "try `newsflow feeds discover`")


def check_page_type(media_type: str, head: bytes) -> None:
    """Raise NotAFeed (class bad_content_type) unless the page is HTML (declared, or sniffed when undeclared)."""
    if media_type in PAGE_TYPES:
        return
    if media_type in ("", "application/octet-stream", "text/plain") and _HTML_START.match(head[:2048]):
        return
    raise NotAFeed("bad_content_type", f"{media_type or 'no content type'} is not an HTML page")


def truncate_entries(body: bytes, max_entries: int) -> tuple[bytes, int]:
    """Cut an XML feed after its ``max_entries``-th entry, keeping what follows the last entry (the closing
    tags), so the result stays well-formed. Returns (document, number of entries in the original)."""
    count = 0
    cut = last = -1
    for m in _ENTRY_END.finditer(body):
        count += 1
        if count == max_entries:
            cut = m.end()
        last = m.end()
    if count <= max_entries or cut < 0:
        return body, count
    return body[:cut] + body[last:], count


def _json_time(value) -> time.struct_time | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).timetuple()


def parse_json_feed(body: bytes) -> feedparser.FeedParserDict | None:
    """A JSON Feed as a feedparser result (version ``json1``), or None when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or "jsonfeed.org" not in str(data.get("version", "")):
        return None
    entries = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        entries.append(feedparser.FeedParserDict(
            id=str(item.get("id") or ""), link=item.get("url") or item.get("external_url"), title=item.get("title"),
            summary=item.get("summary") or item.get("content_text") or item.get("content_html"),
            published_parsed=_json_time(item.get("date_published")),
            updated_parsed=_json_time(item.get("date_modified")),
            author=(authors[0].get("name") if authors and isinstance(authors[0], dict) else None),
            tags=[{"term": t} for t in item.get("tags") or [] if isinstance(t, str)],
            media_thumbnail=[{"url": item["image"]}] if isinstance(item.get("image"), str) else [],
        ))
    return feedparser.FeedParserDict(version="json1", bozo=False, entries=entries,
                                     feed=feedparser.FeedParserDict(title=data.get("title")))


def _struct(dt: datetime | None) -> time.struct_time | None:
    return dt.astimezone(UTC).timetuple() if dt else None


def parse_sitemap(body: bytes, *, url: str, since: datetime | None, limit: int) -> feedparser.FeedParserDict:
    """A sitemap as a feedparser result (version ``sitemap`` or ``sitemapindex``); its entries are the
    ``limit`` newest recent ``<url>`` entries, newest first; ``sitemaps`` lists an index's child sitemaps."""
    sm: Sitemap = read_sitemap(body, base_url=url, since=since, limit=limit)
    if sm.error and not sm.total:
        raise NotAFeed("parse", f"sitemap: {sm.error}")
    entries = [feedparser.FeedParserDict(
        id="", link=e.loc, title=e.title, published_parsed=_struct(e.published),
        updated_parsed=_struct(e.updated), tags=[{"term": k} for k in e.keywords],
        media_thumbnail=[{"url": e.image}] if e.image else [], language=e.language,
    ) for e in sm.entries]
    notes = [sm.error] if sm.error else []
    if sm.undated and not sm.entries:
        notes.append(f"{sm.undated} of {sm.total} sitemap entries have no news:publication_date or lastmod: "
                     "skipped (only recent entries are read)")
    return feedparser.FeedParserDict(
        version=sm.kind if sm.kind == "sitemapindex" else "sitemap", bozo=bool(notes),
        bozo_exception="; ".join(notes) if notes else None, entries=entries, sitemaps=sm.children,
        counted=sm.total, feed=feedparser.FeedParserDict(title=sm.title))


def parse_feed(body: bytes, *, url: str, content_type: str | None, max_entries: int,
               since: datetime | None = None) -> ParsedFeed:
    """Parse a feed or sitemap document fetched from ``url`` (the final URL). Raises NotAFeed when it is
    neither. ``since``: sitemaps only, the oldest entry date read (None: every dated entry)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    head = body.lstrip()[:2048]
    if sitemap_kind(head):  # before the media-type check: sitemaps come as text/plain or application/gzip too
        parsed = parse_sitemap(body, url=url, since=since, limit=max_entries)
        return _result(parsed, url, max_entries, parsed.counted)
    check_feed_type(media_type, head)
    parsed = parse_json_feed(body) if head.startswith(b"{") else None
    if parsed is not None:
        return _result(parsed, url, max_entries, len(parsed.entries))
    document, counted = truncate_entries(body, max_entries)
    # No Content-Location: feedparser would resolve relative *GUIDs* against it, and a feed that moves
    # would change every entry's identity. Relative links are resolved against ``url`` in ``entry_ref``.
    headers = {"content-type": content_type} if content_type else {}
    return _result(feedparser.parse(document, response_headers=headers), url, max_entries, counted)


def _result(parsed, url: str, max_entries: int, counted: int) -> ParsedFeed:
    bozo = None
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        if isinstance(exc, str):
            bozo = exc
        else:
            bozo = f"{type(exc).__name__}: {exc}" if exc is not None else "malformed feed"
    if not parsed.get("version") and not parsed.entries:
        raise NotAFeed("parse", bozo or "not an RSS, Atom, RDF or JSON feed")
    entries = [entry_ref(e, url) for e in parsed.entries[:max_entries]]
    feed = parsed.feed
    return ParsedFeed(
        title=feed.get("title"),
        entries=entries,
        total_entries=max(counted, len(parsed.entries)),
        ttl=feed.get("ttl"),
        sy_period=feed.get("sy_updateperiod"),
        sy_frequency=feed.get("sy_updatefrequency"),
        bozo=bozo,
        version=parsed.get("version", ""),
        dates=[d for d in (e.published for e in entries) if d is not None],
        sitemaps=list(parsed.get("sitemaps") or []),
    )
