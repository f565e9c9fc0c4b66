"""One feed's work in a batch: poll the feed (``ingest.feed_poll``), then fetch the pages of its pending entries.

A job does I/O and returns what happened (``JobResult``); it produces nothing and persists nothing. The
poller (``ingest.poller``) sends the job's records, flushes, and only then records the page outcomes in
the state (``ingest.transitions.record_page_outcomes``) and persists it.

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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

from ingest import metrics
from ingest.decode import detect_charset
from ingest.limits import Deadline
from ingest.fetch import Deferred, FetchError, Fetcher
from ingest.pagehead import page_identity
from ingest.parse import EntryRef, NotAFeed, check_page_type, page_article_id
from ingest.robots import ROBOTS_MAX_BYTES, RobotsCache, Verdict
from ingest.schedule import error_kind
from ingest.feed_poll import FeedPoll
from ingest.state import FeedDefinition, FeedState, from_epoch
from ingest.transitions import PageOutcome, first_seen_for
from ingest.urls import canonical_url
from newsflow.schema import FeedEntry, RawArticle, article_id
from newsflow.settings import Settings
from newsflow.stage.deadletters import build_headers

log = logging.getLogger(__name__)

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
KEPT_HEADERS = ("content-type", "content-language", "last-modified", "etag", "date", "expires", "cache-control",
                "link", "x-robots-tag", "content-location")


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class JobResult:
    feed_id: str
    state: FeedState  # after the feed poll; ``record_page_outcomes`` adds the pages once records are delivered
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
        self.feeds = FeedPoll(settings, fetcher, parse_executor=parse_executor, clock=clock, rand=rand)
        self.settings = settings
        self.fetcher = fetcher
        self.clock = clock
        self.max_attempts = settings.max_attempts
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
        polled = await self.feeds.poll(definition, state, deadline) if poll else None
        if polled is not None:
            state = polled.state
        pending = [p for p in state.pending if p.key not in skip]
        outcomes = await asyncio.gather(*(self.page(p, state, definition, deadline) for p in pending))
        pages = [o for o in outcomes if o is not None]
        return JobResult(definition.id, state, polled=polled is not None,
                         outcome=polled.outcome if polled else "", moved_to=polled.moved_to if polled else None,
                         pages=pages, deferred=len(pending) - len(pages))

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
        last_try = ref.attempts + 1 >= self.max_attempts

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
