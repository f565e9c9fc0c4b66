"""One feed poll: a conditional GET of the feed, its body parsed (a sitemap index with its children,
``ingest.sitemap_index``), and the feed's new state from the pure transitions (``ingest.transitions``).

A poll returns what happened (``Poll``); it produces nothing and persists nothing (``ingest.jobs``
runs it with the pages of the feed's pending entries, the poller persists the result).

Sitemaps are polled as feeds are; a sitemap index's children are read in the same poll
(``ingest.sitemap_index``), through the same fetcher, caps and per-host limiter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest import metrics
from ingest.fetch import Deferred, FetchError, Fetcher, Response
from ingest.limits import Deadline
from ingest.parse import NotAFeed, ParsedFeed, parse_feed
from ingest.sitemap_index import ChildDeferred, ChildFailed, walk_index
from ingest.state import FeedDefinition, FeedState, Policy
from ingest.transitions import conditional_headers, on_error, on_feed, on_not_modified, on_redirects
from newsflow.settings import Settings

log = logging.getLogger(__name__)

FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/feed+json;q=0.9, "
               "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")
STATUS_CLASSES = {404: "not_found", 410: "gone", 429: "rate_limited", 503: "unavailable"}


def status_error_class(status: int) -> str:
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status]
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "protocol"


@dataclass(frozen=True)
class Poll:
    """What one feed poll did: the feed's new state, the outcome (new, not_modified, unchanged or the
    error class) and, once a permanent redirect settled, the feed's new URL."""

    state: FeedState
    outcome: str
    moved_to: str | None = None


class FeedPoll:
    """Polls feeds through the shared fetcher (and so its per-host limiter); parses off the event loop."""

    def __init__(self, settings: Settings, fetcher: Fetcher, *, parse_executor: Executor | None,
                 clock: Callable[[], datetime], rand: Callable[[], float]):
        self.settings = settings
        self.fetcher = fetcher
        self.policy = Policy.from_settings(settings)
        self.executor = parse_executor
        self.clock = clock
        self.rand = rand

    async def poll(self, definition: FeedDefinition, state: FeedState, deadline: Deadline) -> Poll | None:
        """Poll the feed once; None when ``deadline`` deferred it (the feed stays due)."""
        headers = conditional_headers(state) | {"Accept": FEED_ACCEPT}
        started = time.monotonic()
        try:
            resp = await self.fetcher.get(state.url, max_bytes=self.settings.max_feed_bytes, headers=headers,
                                          what="feed", deadline=deadline, gzip_files=True)
        except Deferred:
            return None
        except FetchError as exc:
            return Poll(on_error(state, error_class=exc.error_class, message=exc.message, status=None,
                                 headers=None, now=self.clock(), policy=self.policy, rand=self.rand()),
                        exc.error_class)
        finally:
            metrics.FETCH_SECONDS.labels("feed").observe(time.monotonic() - started)
        now = self.clock()
        state, moved_to = on_redirects(state, permanent=resp.redirected_permanently,
                                       final_url=resp.final_url, redirected=bool(resp.hops))
        if resp.status == 304:
            new, outcome = on_not_modified(state, headers=resp.headers, now=now, policy=self.policy,
                                           rand=self.rand()), "not_modified"
        elif resp.is_ok:
            new, outcome = await self._feed_body(state, resp, now, deadline)
        else:
            new, outcome = self._failed(state, resp, now, status_error_class(resp.status),
                                        f"HTTP {resp.status} from {resp.final_url}")
        if new.health == "retired" and state.health != "retired":
            log.warning("feed %s retired: %s", state.url, new.retired_reason, extra={"feed_id": definition.id})
        return Poll(new, outcome, moved_to)

    def _parse(self, resp: Response, now: datetime) -> Awaitable[ParsedFeed]:
        since = now - timedelta(days=self.settings.sitemap_recent_days)
        return asyncio.get_running_loop().run_in_executor(
            self.executor,
            lambda: parse_feed(resp.body, url=resp.final_url, content_type=resp.headers.get("content-type"),
                               max_entries=self.settings.max_entries_per_feed, since=since),
        )

    async def _feed_body(self, state: FeedState, resp: Response, now: datetime,
                         deadline: Deadline) -> tuple[FeedState, str]:
        """A 200: the new state and the outcome."""
        body_hash = hashlib.sha256(resp.body).hexdigest()[:32]
        if body_hash == state.body_hash:
            return self._unchanged(state, resp, now)
        try:
            parsed = await self._parse(resp, now)
        except NotAFeed as exc:
            return self._failed(state, resp, now, exc.error_class, exc.message)
        if parsed.version == "sitemapindex":
            walk = await walk_index(
                parsed, root_urls=[state.url, resp.final_url], root_hash=body_hash,
                read=lambda url: self._child_sitemap(url, now, deadline), max_depth=self.settings.sitemap_max_depth,
                max_files=self.settings.sitemap_max_files, max_entries=self.settings.max_entries_per_feed)
            if walk.failed is not None:
                return self._failed(state, resp, now, walk.failed.error_class,
                                    f"all {walk.read} sitemaps of the index failed; {walk.notes[0]}")
            parsed, body_hash = walk.parsed, walk.body_hash
            if body_hash == state.body_hash:
                return self._unchanged(state, resp, now)
        new, fresh = on_feed(state, parsed, body_hash=body_hash, headers=resp.headers, status=resp.status,
                             now=now, policy=self.policy, rand=self.rand())
        metrics.NEW_ENTRIES.inc(len(fresh))
        if new.validators_ignored and not state.validators_ignored:
            log.warning("feed %s: validators ignored from now on: %s", state.url, new.validators_note)
        return new, "new" if fresh else "unchanged"

    def _unchanged(self, state: FeedState, resp: Response, now: datetime) -> tuple[FeedState, str]:
        return on_not_modified(state, headers=resp.headers, now=now, policy=self.policy, rand=self.rand(),
                               status=resp.status), "unchanged"

    def _failed(self, state: FeedState, resp: Response, now: datetime, error_class: str,
                message: str) -> tuple[FeedState, str]:
        return on_error(state, error_class=error_class, message=message, status=resp.status, headers=resp.headers,
                        now=now, policy=self.policy, rand=self.rand()), error_class

    async def _child_sitemap(self, url: str, now: datetime, deadline: Deadline) -> tuple[ParsedFeed, str]:
        """Fetch and parse one child sitemap of an index, with the feed's caps; raises ChildFailed, or
        ChildDeferred when its host's turn comes after ``deadline``."""
        started = time.monotonic()
        try:
            resp = await self.fetcher.get(url, max_bytes=self.settings.max_feed_bytes, headers={"Accept": FEED_ACCEPT},
                                          what="sitemap", deadline=deadline, gzip_files=True)
        except Deferred as exc:
            raise ChildDeferred(url) from exc
        except FetchError as exc:
            raise ChildFailed(exc.error_class, exc.message) from exc
        finally:
            metrics.FETCH_SECONDS.labels("sitemap").observe(time.monotonic() - started)
        if not resp.is_ok:
            raise ChildFailed(status_error_class(resp.status), f"HTTP {resp.status}")
        try:
            parsed = await self._parse(resp, now)
        except NotAFeed as exc:
            raise ChildFailed(exc.error_class, exc.message) from exc
        if parsed.version not in ("sitemap", "sitemapindex"):
            raise ChildFailed("bad_content_type", f"a {parsed.version or 'feed'}, not a sitemap")
        return parsed, hashlib.sha256(resp.body).hexdigest()[:32]
