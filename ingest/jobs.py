"""One feed's work in a batch: poll the feed, then fetch the pages of its pending entries.

A job does I/O and returns what happened; it produces nothing and persists nothing. The poller
(``ingest.poller``) sends the job's records, flushes, and only then settles and persists the state.

Pages: robots.txt (when ``respect_robots``), the same fetcher and per-host limiter as feeds, HTML only,
charset determined (``RawArticle.charset``), final URL and useful headers kept. A page whose record
would exceed ``max_message_bytes`` (or whose body exceeds ``max_page_bytes``) goes to the dead-letter
topic with reason ``page_too_large``; a page refused for good (redirect loop, private address, 4xx,
not HTML, ...) with ``page_<reason>``; a page that keeps failing temporarily after ``max_attempts``
polls with ``page_fetch_failed``. None of them stops anything; the feed's health shows the last one.

Identity: a fetched page's article id is ``article_id`` of the URL it is known by, its declared
canonical URL when that is on the same site, else its final URL (``ingest.pagehead``). The entry's
link gives a *link id* the same way before the fetch; both are remembered, and a page is fetched once
per article across all feeds of this poller (``FeedJobs.page``).

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest import metrics
from ingest.decode import detect_charset
from ingest.limits import Deadline
from ingest.fetch import Deferred, FetchError, Fetcher, Response
from ingest.pagehead import page_identity
from ingest.parse import EntryRef, NotAFeed, ParsedFeed, check_page_type, page_article_id, parse_feed
from ingest.robots import ROBOTS_MAX_BYTES, RobotsCache, Verdict
from ingest.schedule import error_kind
from ingest.sitemap_index import ChildDeferred, ChildFailed, walk_index
from ingest.state import (
    FeedDefinition, FeedState, PageOutcome, Policy, conditional_headers, first_seen_for, from_epoch, on_error,
    on_feed, on_not_modified, on_redirects,
)
from ingest.urls import canonical_url
from newsflow.schema import FeedEntry, RawArticle, article_id
from newsflow.settings import Settings
from newsflow.stage.deadletters import build_headers

log = logging.getLogger(__name__)

FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/feed+json;q=0.9, "
               "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
KEPT_HEADERS = ("content-type", "content-language", "last-modified", "etag", "date", "expires", "cache-control",
                "link", "x-robots-tag", "content-location")
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
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class JobResult:
    feed_id: str
    state: FeedState  # after the feed poll; ``settle`` adds the page outcomes once records are delivered
    polled: bool = False
    outcome: str = ""  # new, not_modified, unchanged or the error class
    moved_to: str | None = None
    pages: list[tuple[PageOutcome, Record | None]] = field(default_factory=list)
    deferred: int = 0  # pending pages left for the next batch (deadline reached)


class FeedJobs:
    """Runs feed jobs. Shares the fetcher (and so the per-host limiter) and robots cache across feeds."""

    def __init__(self, settings: Settings, fetcher: Fetcher, *, parse_executor: Executor | None,
                 clock: Callable[[], datetime], rand: Callable[[], float],
                 known_articles: dict[str, int] | None = None):
        self.settings = settings
        self.fetcher = fetcher
        self.policy = Policy.from_settings(settings)
        self.executor = parse_executor
        self.clock = clock
        self.rand = rand
        # identity prefixes (16 hex: article ids and entry-link ids) of pages this poller has fetched ->
        # first seen (epoch seconds); the poller fills it from its feeds' state and after each batch
        self.known_articles = known_articles if known_articles is not None else {}
        # link id (and article id) -> outcome of the page fetch of this batch that has it, done or not
        self.batch_pages: dict[str, asyncio.Future] = {}
        self.robots = RobotsCache(self._fetch_robots, settings.user_agent,
                                  on_crawl_delay=fetcher.limiter.set_crawl_delay)

    # --- the job -------------------------------------------------------------------------------
    async def run(self, definition: FeedDefinition, state: FeedState, *, poll: bool, deadline: Deadline,
                  skip: frozenset[str] = frozenset()) -> JobResult:
        """Poll the feed (when ``poll``), then fetch the pages of its pending entries (but those in ``skip``).
        Nothing starts after ``deadline``: a feed not polled stays due, pages not fetched stay pending."""
        result = JobResult(definition.id, state)
        if poll:
            await self.poll_feed(definition, result, deadline)
        pending = [p for p in result.state.pending if p.key not in skip]
        if not pending:
            return result
        outcomes = await asyncio.gather(*(self.page(p, result.state, definition, deadline) for p in pending))
        result.pages = [o for o in outcomes if o is not None]
        result.deferred = len(pending) - len(result.pages)
        return result

    async def poll_feed(self, definition: FeedDefinition, result: JobResult, deadline: Deadline) -> None:
        state = result.state
        headers = conditional_headers(state) | {"Accept": FEED_ACCEPT}
        started = time.monotonic()
        try:
            resp = await self.fetcher.get(state.url, max_bytes=self.settings.max_feed_bytes, headers=headers,
                                          what="feed", deadline=deadline, gzip_files=True)
        except Deferred:
            return
        except FetchError as exc:
            now = self.clock()
            result.polled = True
            result.state = on_error(state, error_class=exc.error_class, message=exc.message, status=None,
                                    headers=None, now=now, policy=self.policy, rand=self.rand())
            result.outcome = exc.error_class
            return
        finally:
            metrics.FETCH_SECONDS.labels("feed").observe(time.monotonic() - started)
        now = self.clock()
        result.polled = True
        state, result.moved_to = on_redirects(state, permanent=resp.redirected_permanently,
                                              final_url=resp.final_url, redirected=bool(resp.hops))
        if resp.status == 304:
            result.state = on_not_modified(state, headers=resp.headers, now=now, policy=self.policy,
                                           rand=self.rand())
            result.outcome = "not_modified"
        elif resp.is_ok:
            await self._feed_body(state, resp, now, result, deadline)
        else:
            error_class = status_error_class(resp.status)
            result.state = on_error(state, error_class=error_class, message=f"HTTP {resp.status} from {resp.final_url}",
                                    status=resp.status, headers=resp.headers, now=now, policy=self.policy,
                                    rand=self.rand())
            result.outcome = error_class
        if result.state.health == "retired" and state.health != "retired":
            log.warning("feed %s retired: %s", state.url, result.state.retired_reason,
                        extra={"feed_id": definition.id})

    def _parse(self, resp: Response, now: datetime) -> Awaitable[ParsedFeed]:
        since = now - timedelta(days=self.settings.sitemap_recent_days)
        return asyncio.get_running_loop().run_in_executor(
            self.executor,
            lambda: parse_feed(resp.body, url=resp.final_url, content_type=resp.headers.get("content-type"),
                               max_entries=self.settings.max_entries_per_feed, since=since),
        )

    async def _feed_body(self, state: FeedState, resp: Response, now: datetime, result: JobResult,
                         deadline: Deadline) -> None:
        body_hash = hashlib.sha256(resp.body).hexdigest()[:32]
        if body_hash == state.body_hash:
            self._unchanged(state, resp, now, result)
            return
        try:
            parsed = await self._parse(resp, now)
        except NotAFeed as exc:
            self._failed(state, resp, now, result, exc.error_class, exc.message)
            return
        if parsed.version == "sitemapindex":
            walk = await walk_index(
                parsed, root_urls=[state.url, resp.final_url], root_hash=body_hash,
                read=lambda url: self._child_sitemap(url, now, deadline), max_depth=self.settings.sitemap_max_depth,
                max_files=self.settings.sitemap_max_files, max_entries=self.settings.max_entries_per_feed)
            if walk.failed is not None:
                self._failed(state, resp, now, result, walk.failed.error_class,
                             f"all {walk.read} sitemaps of the index failed; {walk.notes[0]}")
                return
            parsed, body_hash = walk.parsed, walk.body_hash
            if body_hash == state.body_hash:
                self._unchanged(state, resp, now, result)
                return
        result.state, fresh = on_feed(state, parsed, body_hash=body_hash, headers=resp.headers, status=resp.status,
                                      now=now, policy=self.policy, rand=self.rand())
        result.outcome = "new" if fresh else "unchanged"
        metrics.NEW_ENTRIES.inc(len(fresh))
        if result.state.validators_ignored and not state.validators_ignored:
            log.warning("feed %s: validators ignored from now on: %s", state.url, result.state.validators_note)

    def _unchanged(self, state: FeedState, resp: Response, now: datetime, result: JobResult) -> None:
        result.state = on_not_modified(state, headers=resp.headers, now=now, policy=self.policy,
                                       rand=self.rand(), status=resp.status)
        result.outcome = "unchanged"

    def _failed(self, state: FeedState, resp: Response, now: datetime, result: JobResult, error_class: str,
                message: str) -> None:
        result.state = on_error(state, error_class=error_class, message=message, status=resp.status,
                                headers=resp.headers, now=now, policy=self.policy, rand=self.rand())
        result.outcome = error_class

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

    # --- pages ---------------------------------------------------------------------------------
    async def page(self, ref: EntryRef, state: FeedState, definition: FeedDefinition,
                   deadline: Deadline | None = None) -> tuple[PageOutcome, Record | None] | None:
        """Fetch one entry's page: (outcome, record to produce or None); None when deferred by ``deadline``.

        Outcomes: ``delivered`` (a RawArticle for ``articles.raw``); ``duplicate`` (the article was fetched
        already, for another entry or feed of this poller: nothing is fetched or produced); ``skipped``
        (robots.txt says no); ``retry`` (temporary failure: pending, tried again with the feed's next poll);
        ``dead`` (a dead letter ``page_<reason>``: too large, refused for good, or still failing after
        ``max_attempts``).

        A page is fetched once per article: an entry new to this feed whose link (in its identity form) is
        known, or is being fetched right now by another feed's job, is a duplicate; so is a fetched page
        whose declared canonical URL names an article already known. A changed entry of this feed (a new
        version) is always fetched again. "Known" is what earlier batches fetched (``known_articles``) and
        what this batch is fetching or has fetched (``batch_pages``, until ``end_batch``).
        """
        if deadline is not None and deadline.passed():
            return None
        link_id = page_article_id(ref)
        assert link_id is not None
        if ref.key in state.seen:  # a new version of this feed's own entry
            return await self._fetch_page(ref, state, definition, deadline, link_id, dedup=False)
        if link_id[:16] in self.known_articles:
            return self._duplicate(ref, link_id, link_id, "fetched before")
        other = self.batch_pages.get(link_id)
        if other is not None:
            return self._follow(ref, link_id, await asyncio.shield(other))
        claim = asyncio.get_running_loop().create_future()
        self.batch_pages[link_id] = claim
        result = None
        try:
            result = await self._fetch_page(ref, state, definition, deadline, link_id, dedup=True)
            if result is not None and result[0].article_id and result[0].article_id != link_id:
                self.batch_pages.setdefault(result[0].article_id, claim)
            return result
        finally:
            claim.set_result(result)

    def end_batch(self) -> None:
        """Forget the batch's page fetches: the poller calls it once it has made them known (or not)."""
        self.batch_pages.clear()

    def _duplicate(self, ref: EntryRef, link_id: str, aid: str, message: str) -> tuple[PageOutcome, None]:
        metrics.PAGES.labels("duplicate", "same_article").inc()
        first = self.known_articles.get(aid[:16]) or self.known_articles.get(link_id[:16])
        return PageOutcome(ref, "duplicate", "same_article", aid, from_epoch(first) if first else None, message,
                           link_id=link_id), None

    def _follow(self, ref: EntryRef, link_id: str,
                first: tuple[PageOutcome, Record | None] | None) -> tuple[PageOutcome, None] | None:
        """The outcome of an entry whose page another job was fetching at the same time."""
        if first is None:
            return None  # deferred with it
        done = first[0]
        if done.result in ("delivered", "dead", "duplicate"):
            return self._duplicate(ref, link_id, done.article_id or link_id, "fetched at the same time")
        metrics.PAGES.labels(done.result, done.reason).inc()
        return PageOutcome(ref, done.result, done.reason, done.article_id, done.first_seen, done.message,
                           link_id=link_id), None

    async def _fetch_page(self, ref: EntryRef, state: FeedState, definition: FeedDefinition,
                          deadline: Deadline | None, link_id: str, *,
                          dedup: bool) -> tuple[PageOutcome, Record | None] | None:
        url = ref.page_url
        assert url is not None
        now = self.clock()
        first_seen = first_seen_for(state, ref, link_id, now, self.known_articles)
        last_try = ref.attempts + 1 >= self.policy.max_attempts

        def outcome(result: str, reason: str, message: str = "", raw: RawArticle | None = None):
            record = None
            aid = raw.id if raw is not None else link_id
            if result == "retry" and last_try:
                result, message = "dead", f"{reason}: {message} (after {ref.attempts + 1} attempts)"
                reason = "fetch_failed"
            if result == "dead":
                record = self._dead(ref, aid, state, first_seen, now, f"page_{reason}", f"{url}: {message}", raw)
            metrics.PAGES.labels(result, reason).inc()
            return PageOutcome(ref, result, reason, aid, first_seen, message[:300], link_id=link_id), record

        if self.settings.respect_robots:
            verdict = await self.robots.verdict(url)
            if verdict is Verdict.DISALLOWED:
                return outcome("skipped", "robots_disallowed", "robots.txt disallows it")
            if verdict is Verdict.UNREACHABLE:
                return outcome("retry", "robots_unreachable", "robots.txt could not be fetched")
        started = time.monotonic()
        try:
            resp = await self.fetcher.get(url, max_bytes=self.settings.max_page_bytes,
                                          headers={"Accept": PAGE_ACCEPT}, what="page", deadline=deadline)
        except Deferred:
            return None
        except FetchError as exc:
            if error_kind(exc.error_class) == "temporary":
                return outcome("retry", exc.error_class, exc.message)
            return outcome("dead", exc.error_class, exc.message)  # too_large, blocked, redirect_loop, ...
        finally:
            metrics.FETCH_SECONDS.labels("page").observe(time.monotonic() - started)
        if not resp.is_ok:
            if resp.status == 429 or resp.status >= 500:
                return outcome("retry", f"http_{resp.status}", f"HTTP {resp.status}")
            return outcome("dead", f"http_{resp.status}", f"HTTP {resp.status} from {resp.final_url}")
        try:
            check_page_type(resp.media_type, resp.body.lstrip()[:2048])
        except NotAFeed as exc:
            return outcome("dead", "bad_content_type", exc.message)
        charset, _source = detect_charset(resp.body, resp.headers.get("content-type"))
        canonical, canonical_from = page_identity(resp.body, charset, resp.final_url)
        aid = article_id(canonical)
        if dedup and aid != link_id:
            if aid[:16] in self.known_articles:
                return self._duplicate(ref, link_id, aid, f"declares the canonical URL of a known article: {canonical}")
            same = self.batch_pages.get(aid)
            if same is not None:  # another link of this batch named the same article
                followed = self._follow(ref, link_id, await asyncio.shield(same))
                if followed is not None and followed[0].result == "duplicate":
                    return followed
        raw = RawArticle(
            id=aid, url=url, canonical_url=canonical, canonical_from=canonical_from, final_url=resp.final_url,
            feed_url=state.url, feed_title=state.title or definition.title,
            entry=FeedEntry(**ref.model_dump(include=set(FeedEntry.model_fields))),
            fetched_at=now, first_seen_at=first_seen, status=resp.status,
            content_type=resp.headers.get("content-type"),
            headers={k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers},
            charset=charset, body_b64=RawArticle.encode_body(resp.body),
        )
        value = raw.to_bytes()
        if len(value) > self.settings.max_message_bytes:
            return outcome("dead", "too_large", f"record of {len(value)} bytes exceeds max_message_bytes "
                           f"({self.settings.max_message_bytes})", raw)
        metrics.PAGES.labels("delivered", "ok").inc()
        return (PageOutcome(ref, "delivered", "ok", aid, first_seen, link_id=link_id),
                Record(self.settings.topic_raw, aid.encode(), value))

    def _dead(self, ref: EntryRef, aid: str, state: FeedState, first_seen: datetime, now: datetime, reason: str,
              message: str, raw: RawArticle | None = None) -> Record:
        """A dead-letter record: the RawArticle without its body, headers from ``newsflow.stage.deadletters``."""
        url = ref.page_url or ""
        meta = (raw or RawArticle(
            id=aid, url=url, canonical_url=canonical_url(url), canonical_from="link", final_url=url, feed_url=state.url,
            feed_title=state.title, entry=FeedEntry(**ref.model_dump(include=set(FeedEntry.model_fields))),
            fetched_at=now, first_seen_at=first_seen, status=0, body_b64="",
        )).model_copy(update={"body_b64": ""})
        log.warning("page dead-lettered: %s: %s", reason, message, extra={"article_id": aid})
        return Record(self.settings.topic_dlq, aid.encode(), meta.to_bytes(),
                      build_headers("poller", reason, message, topic=self.settings.topic_raw, attempts=ref.attempts + 1))

    async def _fetch_robots(self, url: str) -> tuple[int, bytes]:
        try:
            resp = await self.fetcher.get(url, max_bytes=ROBOTS_MAX_BYTES, headers={"Accept": "text/plain"},
                                          what="robots.txt")
        except FetchError as exc:
            if exc.error_class == "too_large":
                return 200, b""  # RFC 9309: rules past the size limit may be ignored; read as allow
            log.info("robots.txt %s unreachable: %s", url, exc)
            return 0, b""
        return resp.status, resp.body
