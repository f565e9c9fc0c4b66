"""Walking a sitemap index: its child sitemaps, breadth first, bounded, into one ``ParsedFeed``.

The walk is the poll of one source: the index and every child read are hashed together (the feed's
``body_hash``), the recent entries of all children are merged, newest first, up to the entries cap.

Bounds (hostile indexes): children ``sitemap_max_depth`` levels down at most; at most
``sitemap_max_files`` children fetched per poll (the newest by ``lastmod`` first, ``ingest.sitemap``);
a sitemap already read in this walk is not read again (an index listing itself, or two indexes listing
each other); each child is capped like any feed (``max_feed_bytes`` after decompression, gzip files
included); a child whose host's turn comes after the poll batch's deadline is left for the next poll
(``deferred``), so a slow index never holds a batch (and a rebalance) longer than a feed does. Whatever
was not read, and why, is counted (``newsflow_ingest_sitemaps_total{result}``) and noted on the feed's
health (error class ``sitemap``). When every child read failed, the poll failed with the first child's
error class.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ingest import metrics
from ingest.parse import EntryRef, ParsedFeed
from ingest.urls import canonical_url

log = logging.getLogger(__name__)


class ChildDeferred(Exception):
    """The batch deadline passed before the child's host had a turn: nothing was sent."""


class ChildFailed(Exception):
    def __init__(self, error_class: str, message: str):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message


# read(url) -> (parsed child, hash of its body); raises ChildFailed
ReadChild = Callable[[str], Awaitable[tuple[ParsedFeed, str]]]


@dataclass
class Walk:
    parsed: ParsedFeed
    body_hash: str
    failed: ChildFailed | None = None  # every child read failed: the poll failed with this
    read: int = 0
    notes: list[str] = field(default_factory=list)


def _skip(result: str, n: int = 1) -> None:
    if n:
        metrics.SITEMAPS.labels(result).inc(n)


async def walk_index(root: ParsedFeed, *, root_urls: list[str], root_hash: str, read: ReadChild, max_depth: int,
                     max_files: int, max_entries: int) -> Walk:
    visited = {canonical_url(u) for u in root_urls}
    level = list(root.sitemaps)
    hashes = [root_hash]
    entries: dict[str, EntryRef] = {}
    failures: list[ChildFailed] = []
    notes: list[str] = []
    deferred = 0
    title, total, read_n = root.title, 0, 0
    for _depth in range(max_depth):
        todo: list[str] = []
        for url in level:
            key = canonical_url(url)
            if key in visited:
                _skip("loop")
                continue
            visited.add(key)
            todo.append(url)
        over = todo[max(0, max_files - read_n):]
        todo = todo[:max(0, max_files - read_n)]
        if over:
            _skip("over_limit", len(over))
            notes.append(f"{len(over)} sitemaps over sitemap_max_files ({max_files}) not read")
        results = await asyncio.gather(*(read(u) for u in todo), return_exceptions=True)
        read_n += len(todo)
        level = []
        for url, res in zip(todo, results):
            if isinstance(res, ChildDeferred):
                deferred += 1
                continue
            if isinstance(res, ChildFailed):
                _skip(res.error_class)
                failures.append(res)
                log.warning("sitemap %s: %s", url, res)
                notes.insert(len(failures) - 1, f"{url}: {res}")  # failures first: they explain a failed poll
                continue
            if isinstance(res, BaseException):
                raise res
            child, child_hash = res
            _skip("ok")
            hashes.append(child_hash)
            total += child.total_entries
            title = title or child.title
            if child.bozo:
                notes.append(f"{url}: {child.bozo}")
            for e in child.entries:
                entries.setdefault(e.key, e)
            level.extend(child.sitemaps)
    if deferred:
        _skip("deferred", deferred)
        notes.append(f"{deferred} sitemaps left for the next poll (poll batch deadline)")
    deeper = [u for u in level if canonical_url(u) not in visited]
    if deeper:
        _skip("too_deep", len(deeper))
        notes.append(f"{len(deeper)} sitemaps deeper than sitemap_max_depth ({max_depth}) not read")
    merged = sorted(entries.values(), key=lambda e: e.published.timestamp() if e.published else 0.0, reverse=True)
    merged = merged[:max_entries]
    parsed = ParsedFeed(
        title=title, entries=merged, total_entries=total, bozo="; ".join(notes)[:2000] or None,
        bozo_class="sitemap", version="sitemapindex",
        dates=[e.published for e in merged if e.published is not None],
    )
    combined = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32]
    tried = read_n - deferred
    failed = failures[0] if tried and len(failures) == tried else None
    if root.bozo and parsed.bozo is None:
        parsed.bozo, parsed.bozo_class = root.bozo, root.bozo_class
    return Walk(parsed, combined, failed, read_n, notes)
