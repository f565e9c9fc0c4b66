"""The poller stage: feed tables in Kafka -> due feeds -> feed polls and page fetches -> ``articles.raw``.

The feeds this instance polls are those of the feed-table partitions the consumer group assigns it
(``ingest.feed_table``: ownership, loading, poison). The group is served only between batches;
``poll_batch_s`` bounds a batch (plus ``total_timeout_s`` for requests in flight).

Seeding. When the feeds topic was never written to, the poller seeds it from ``settings.feeds_file``.

One batch, and its commit order (``publish_batch``), all in one Kafka transaction:

1. run the jobs of the due feeds concurrently (``ingest.jobs``): polls and page fetches;
2. begin a transaction; send the page records (``articles.raw``, dead letters) and **flush**;
3. record the page outcomes in each feed's state: only entries whose records were acknowledged
   become "seen" (``ingest.transitions.record_page_outcomes``);
4. send the states (and moved definitions), **commit**; then the slots take the new states.

Every reader is ``read_committed`` (the processor, the feed tables a restarted owner loads), so it
sees a batch's pages together with the states that record them, or neither: a poller killed at any
point fetches again exactly the pages no reader saw (the same article ids: downstream is
idempotent), and never a page that reached ``articles.raw``. The transactional id is
``<group>-<instance id>``: a restarted instance aborts its predecessor's open transaction at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from kafka import KafkaProducer

from ingest import metrics
from ingest.feed_table import FeedTable, Slot, trim_known
from ingest.fetch import Fetcher
from ingest.jobs import FeedJobs, JobResult
from ingest.limits import Deadline
from ingest.netguard import Resolver
from ingest.state import FeedDefinition, FeedState, Policy, utcnow
from ingest.store import put_definition, put_state
from ingest.transitions import moved_definition, on_error, record_page_outcomes
from newsflow.settings import Settings
from newsflow.stage.outcomes import SinkUnavailable
from newsflow.stage.sinks import KafkaTransactions
from newsflow.topology import ensure_topics

log = logging.getLogger(__name__)

MAX_BATCH_FEEDS = 2000  # feeds per batch: bounds the results (and producer buffers) held at once
REDELIVERY_DELAY = timedelta(seconds=10)  # a record not acknowledged: its page is fetched again after this
MAX_REDELIVERY_DELAY = timedelta(minutes=5)  # ... doubled with each batch in a row that did not commit
# A batch's flush or commit unanswered for KafkaTransactions.TXN_WAIT_S (10 s): the producer is replaced
# and the batch written again; after this many transactions its pages stay pending.
PUBLISH_ATTEMPTS = 3
# A batch waits (up to this long after its first feed came due) for the feeds due right after it: one
# transaction for them all instead of one each (a batch costs ~5 ms of CPU however few feeds it has).
BATCH_GATHER = timedelta(milliseconds=200)

FeedBatch = list[tuple[Slot, bool]]  # (slot, poll the feed?)


@dataclass(frozen=True)
class FeedUpdate:
    """What one feed's job result changes: written in the batch's transaction, applied once it committed."""

    slot: Slot
    result: JobResult
    state: FeedState
    moved: FeedDefinition | None  # the definition at its new URL after a permanent redirect
    delivered: set[str]  # keys of the entries whose record is in the transaction


@dataclass
class PollerStats:
    """Counters of this process (tests, benchmark, logs); the metrics say the same to Prometheus."""

    batches: int = 0
    polls: int = 0
    polled: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))  # the latest polls' feed ids
    produced: int = 0
    dead_lettered: int = 0


class Poller:
    def __init__(self, settings: Settings, *, resolver: Resolver | None = None,
                 clock: Callable[[], datetime] = utcnow, rand: Callable[[], float] = random.random):
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.resolver = resolver
        self.clock = clock
        self.rand = rand
        self.known_articles: dict[str, int] = {}
        self.stats = PollerStats()
        self.health = metrics.HealthGauges()
        self.table = FeedTable(settings, clock=clock, known_articles=self.known_articles, health=self.health,
                               on_dead_lettered=self._count_dead)
        self._stop = threading.Event()
        self._deadline: Deadline | None = None
        self.last_progress = time.monotonic()  # main-loop heartbeat (between batches), read by /healthz
        self.txn: KafkaTransactions | None = None
        self._failed_publishes = 0  # batches in a row whose transaction did not commit
        self.loop: asyncio.Runner | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.jobs: FeedJobs | None = None
        self._gathered_for: datetime | None = None  # the first due time a batch last waited for (once each)

    # --- lifecycle ---------------------------------------------------------------------------
    def progress_age(self) -> float:
        """Seconds since the main loop last served the group: at most ``poll_batch_s`` plus the
        in-flight requests' ``total_timeout_s`` while healthy."""
        return time.monotonic() - self.last_progress

    def stop(self, *_: object) -> None:
        self._stop.set()
        if self._deadline is not None:
            self._deadline.expire()

    def run(self, *, once: bool = False, force: bool = False) -> None:
        """Poll until stopped (SIGTERM/SIGINT in the main thread). ``once``: poll each due feed of this
        instance at most once, finish their pages, and return. ``force``: treat every active feed as due
        (an operator's override; Retry-After is still honoured)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        polled: set[str] = set()  # once: feeds polled in this run ...
        tried: dict[str, set[str]] = {}  # ... and entries whose page was tried (feed id -> entry keys)
        try:
            self.start()
            while not self._stop.is_set():
                self.sync(0)
                if not self.table.loaded:
                    self.sync(200)
                    continue
                now = self.clock()
                batch = self.pick(now, force=force, polled=polled if once else None, tried=tried if once else None)
                if not batch:
                    if once:
                        break
                    self.sync(self._idle_ms())
                    continue
                gather_ms = 0 if once or force else self._gather_ms(batch, now)
                if gather_ms:
                    self.sync(gather_ms)
                    continue
                results = self.run_batch(batch, tried if once else None)
                if once:
                    polled |= {r.feed_id for r in results if r.polled}
                    for r in results:
                        tried.setdefault(r.feed_id, set()).update(o.ref.key for o, _ in r.pages)
        finally:
            self.close()

    def start(self) -> None:
        ensure_topics(self.settings)
        self.txn = KafkaTransactions(self.settings, "poller",
                                     f"{self.settings.group('poller')}-{self.settings.instance_id}")
        self.table.open(self.txn)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feedparse")
        self.loop = asyncio.Runner()
        self.jobs = self.loop.run(self._make_jobs())

    async def _make_jobs(self) -> FeedJobs:
        fetcher = Fetcher(self.settings, resolver=self.resolver)
        return FeedJobs(self.settings, fetcher, parse_executor=self.executor, clock=self.clock, rand=self.rand,
                        known_articles=self.known_articles)

    def close(self) -> None:
        if self.loop is not None:
            if self.jobs is not None:
                self.loop.run(self.jobs.fetcher.aclose())
            self.loop.close()
            self.loop = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        self.table.close()
        if self.txn is not None:
            self.txn.close()

    def sync(self, timeout_ms: int) -> None:
        """Serve the feed table's group (``FeedTable.sync``): only between batches."""
        self.table.sync(timeout_ms)
        self.last_progress = time.monotonic()

    def _count_dead(self, n: int) -> None:
        self.stats.dead_lettered += n

    def _idle_ms(self) -> int:
        now = self.clock()
        nexts = [s.state.next_check_at for s in self.table.slots.values()
                 if s.state.next_check_at is not None and s.state.retired_at is None]
        if not nexts:
            return 1000
        return int(max(0, min(1.0, (min(nexts) - now).total_seconds())) * 1000)

    def _gather_ms(self, batch: FeedBatch, now: datetime) -> int:
        """How long ``batch`` waits for the feeds due within ``BATCH_GATHER`` of its first: until the last of
        them is due (ms; 0: none is, or it waited already). No feed is polled before it is due: the batch is
        picked again after the wait."""
        dues = [slot.state.next_check_at for slot, poll in batch if poll and slot.state.next_check_at is not None]
        if not dues or len(batch) >= MAX_BATCH_FEEDS or min(dues) == self._gathered_for:
            return 0
        until = min(dues) + BATCH_GATHER
        ids = {slot.definition.id for slot, _poll in batch}
        soon = [s.state.next_check_at for fid, s in self.table.slots.items()
                if fid not in ids and s.state.retired_at is None and s.state.next_check_at is not None
                and now < s.state.next_check_at <= until]
        if not soon:
            return 0
        self._gathered_for = min(dues)
        return int((max(soon) - now).total_seconds() * 1000) + 1

    # --- batches ---------------------------------------------------------------------------------
    def pick(self, now: datetime, *, force: bool = False, polled: set[str] | None = None,
             tried: dict[str, set[str]] | None = None) -> FeedBatch:
        """The next batch: (slot, poll the feed?) for due feeds (most overdue first) and feeds whose pending
        pages are due. ``polled``/``tried`` (once mode) leave out feeds and pages already done in this run."""
        out: list[tuple[datetime, Slot, bool]] = []
        for fid, slot in self.table.slots.items():
            st = slot.state
            due = st.retired_at is None and fid not in (polled or ()) and (
                st.is_due(now) or (force and st.next_check_reason != "retry-after"))
            pages = (slot.pages_due_at is not None and slot.pages_due_at <= now
                     and any(p.key not in (tried or {}).get(fid, ()) for p in st.pending))
            if due or pages:
                out.append((st.next_check_at or datetime.min.replace(tzinfo=now.tzinfo), slot, due))
        out.sort(key=lambda t: t[0])
        return [(slot, due) for _, slot, due in out[:MAX_BATCH_FEEDS]]

    def run_batch(self, batch: FeedBatch, tried: dict[str, set[str]] | None = None) -> list[JobResult]:
        started = time.monotonic()
        self._deadline = Deadline.after(self.settings.poll_batch_s)
        if self._stop.is_set():
            self._deadline.expire()
        try:
            results = self.loop.run(self._gather(batch, self._deadline, tried or {}))
        finally:
            self._deadline = None
        fetched = time.monotonic()
        try:
            self.publish_batch(batch, results)
        finally:
            self.jobs.end_batch()
        self.stats.batches += 1
        done = time.monotonic()
        metrics.CYCLE_SECONDS.observe(done - started)
        log.info("poll batch: %d feeds, %d polled, %d pages; fetch %.2fs, publish %.2fs", len(batch),
                 sum(r.polled for r in results), sum(len(r.pages) for r in results), fetched - started,
                 done - fetched)
        return results

    async def _gather(self, batch: FeedBatch, deadline: Deadline, tried: dict[str, set[str]]) -> list[JobResult]:
        jobs = [self.jobs.run(slot.definition, slot.state, poll=poll, deadline=deadline,
                              skip=frozenset(tried.get(slot.definition.id, ())))
                for slot, poll in batch]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        results = []
        for (slot, _poll), r in zip(batch, out, strict=True):
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                # A bug, not a feed problem: record it on the feed (never silently drop it) and back off.
                log.error("feed job %s failed: %r", slot.state.url, r, exc_info=r)
                state = on_error(slot.state, error_class="internal", message=f"{type(r).__name__}: {r}",
                                 status=None, headers=None, now=self.clock(), policy=self.policy, rand=self.rand())
                r = JobResult(slot.definition.id, state, polled=True, outcome="internal")
            results.append(r)
        return results

    # --- publishing a batch ----------------------------------------------------------------------
    def publish_batch(self, batch: FeedBatch, results: list[JobResult]) -> None:
        """One Kafka transaction per batch: page records -> flush -> page outcomes into the states -> states
        and moved definitions -> commit; then the slots take the new states. A transaction that does not
        commit leaves no trace in Kafka and is tried again with the same records (``PUBLISH_ATTEMPTS``);
        after that the batch's pages stay pending and are fetched again later (``_publish_failed``)."""
        now = self.clock()
        owed = [(slot, r) for (slot, _poll), r in zip(batch, results, strict=True) if r.polled or r.pages]
        done: dict[str, list] = {}

        def write(producer: KafkaProducer) -> None:
            delivered = self._send_pages(producer, results)
            updates = [self._update(slot, r, delivered.get(r.feed_id, set()), now) for slot, r in owed]
            done["updates"] = updates
            done["writes"] = [f for u in updates for f in self._send_update(producer, u)]

        try:  # a lost transaction is written again from memory: a coordinator that moved costs no refetch
            self.txn.transact_retrying(None, {}, write, tries=PUBLISH_ATTEMPTS, delay_s=1.0, wait=self._stop.wait)
        except SinkUnavailable as exc:
            self._publish_failed(owed, now, exc)
            return
        self._failed_publishes = 0
        for u in done["updates"]:
            self._apply(u, now)
        self.table.wrote_states(done["writes"])
        trim_known(self.known_articles)
        self.health.update(sl.state for sl in self.table.slots.values())

    def _send_pages(self, producer: KafkaProducer, results: list[JobResult]) -> dict[str, set[str]]:
        """Send the batch's page records and flush: feed id -> keys of the entries whose record was acknowledged."""
        sent: list[tuple[str, str, bytes | None, object]] = []
        for r in results:
            for outcome, record in r.pages:
                if record is not None:
                    fut = producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
                    sent.append((r.feed_id, outcome.ref.key, record.key, fut))
        self.txn.await_acks(producer)
        delivered: dict[str, set[str]] = {}
        for fid, key, record_key, fut in sent:
            if fut.succeeded():
                delivered.setdefault(fid, set()).add(key)
            else:
                log.warning("record of entry %s (feed %s) not delivered: %r", key, fid, fut.exception,
                            extra={"article_id": (record_key or b"").decode("ascii", "replace")})
        return delivered

    def _update(self, slot: Slot, r: JobResult, ok: set[str], now: datetime) -> FeedUpdate:
        """One feed's result as it is written: its state with the page outcomes, its definition if it moved."""
        state = record_page_outcomes(r.state, [o for o, _ in r.pages], delivered_ok=ok, now=now, policy=self.policy)
        moved = moved_definition(slot.definition, r.moved_to, now) if r.moved_to else None
        return FeedUpdate(slot, r, state, moved, ok)

    def _send_update(self, producer: KafkaProducer, u: FeedUpdate) -> list:
        writes = []
        if u.moved is not None:
            writes.append(put_definition(producer, self.settings, u.moved, partition=u.slot.partition))
        writes.append(put_state(producer, self.settings, u.state, u.slot.partition))
        return writes

    def _apply(self, u: FeedUpdate, now: datetime, *, redeliver_after: timedelta = REDELIVERY_DELAY) -> None:
        """The slot takes the update (written, or given up by ``_publish_failed``); metrics and known articles."""
        slot, r, s = u.slot, u.result, self.settings
        slot.state = u.state
        undelivered = any(rec is not None and o.ref.key not in u.delivered for o, rec in r.pages)
        slot.pages_due_at = now if r.deferred else (now + redeliver_after if undelivered else None)
        if r.polled:
            metrics.POLLS.labels(r.outcome or "unknown").inc()
            self.stats.polled.append(r.feed_id)
            self.stats.polls += 1
        for o, rec in r.pages:
            if o.ref.key in u.delivered or o.result in ("skipped", "duplicate"):
                for prefix in o.prefixes():
                    self.known_articles.setdefault(prefix, int((o.first_seen or now).timestamp()))
                if rec is not None and rec.topic == s.topic_raw:
                    self.stats.produced += 1
                elif rec is not None:
                    self.stats.dead_lettered += 1
        if u.moved is not None:
            slot.definition = u.moved
            metrics.FEEDS_MOVED.inc()
            log.warning("feed %s moved permanently to %s", u.moved.moved_from, r.moved_to,
                        extra={"feed_id": u.moved.id})

    def _publish_failed(self, owed: list[tuple[Slot, JobResult]], now: datetime, exc: Exception) -> None:
        """The batch's transaction did not commit (Kafka away, the coordinator lost it): nothing of it is
        visible. The slots keep their polls' outcomes in memory, with every page still pending; they are
        fetched again after a delay that doubles with each failed batch in a row (at most
        ``MAX_REDELIVERY_DELAY``), and the states are written with the feeds' next successful batch."""
        self._failed_publishes += 1
        delay = min(REDELIVERY_DELAY * 2 ** (self._failed_publishes - 1), MAX_REDELIVERY_DELAY)
        metrics.BATCHES_NOT_COMMITTED.inc()
        log.warning("poll batch not committed, %d feeds' pages stay pending (fetched again in %.0f s): %s",
                    len(owed), delay.total_seconds(), exc)
        for slot, r in owed:  # a move is not applied: the next poll finds the redirect again and writes it
            self._apply(replace(self._update(slot, r, set(), now), moved=None), now, redeliver_after=delay)
