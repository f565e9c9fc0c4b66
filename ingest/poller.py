"""The poller stage: feed tables in Kafka -> due feeds -> feed polls and page fetches -> ``articles.raw``.

Scale-out. Instances share one consumer group (``settings.group("poller")``) on the compacted feeds
topic. The group's (eager) partition assignment decides which instance owns which feeds: an instance
only polls feeds of partitions it is assigned, reads those partitions from the beginning (it never
commits offsets: the topic is a table), and loads their state from the same partitions of the state
topic. Membership is served (``consumer.poll``) only *between* batches, when nothing is in flight and
every result is persisted; a rebalance therefore waits for the current batch of every member, and a
new owner starts from the state the previous owner wrote: no feed is polled twice in one cycle.
``poll_batch_s`` bounds a batch (plus ``total_timeout_s`` for requests in flight).

Seeding. When the feeds topic was never written to, the poller seeds it from ``settings.feeds_file``.
Feed ids are hashes of URLs, so two instances seeding at once write the same records.

One batch, and its commit order (``deliver``):

1. run the jobs of the due feeds concurrently (``ingest.jobs``): polls and page fetches;
2. send the page records (``articles.raw``, dead letters) and **flush** the producer;
3. settle each feed's state: only entries whose records were acknowledged become "seen";
4. send the states (and moved definitions), **flush** again.

A crash between 2 and 4 fetches those pages again after a restart (the same article ids: downstream
is idempotent); the state never claims a page was sent when it was not.
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from ingest import metrics
from ingest.fetch import Fetcher
from ingest.jobs import FeedJobs, JobResult
from ingest.limits import Deadline
from ingest.netguard import Resolver
from ingest.state import (
    FeedDefinition, FeedState, Policy, moved_definition, new_state, on_error, reconcile, settle, utcnow,
)
from ingest.store import (
    TableReadTimeout, decode, decode_table, load_feeds_file, partitions_of, put_definition, put_state, read_table,
    table_consumer, topic_is_empty,
)
from newsflow.kafka_io import make_consumer, make_producer
from newsflow.settings import Settings
from newsflow.stage.deadletters import send_dead_letters
from newsflow.stage.outcomes import DeadLetter
from newsflow.topology import ensure_topics

log = logging.getLogger(__name__)

MAX_BATCH_FEEDS = 2000  # feeds per batch: bounds the results (and producer buffers) held at once
REDELIVERY_DELAY = timedelta(seconds=10)
STATE_SCAN_S = 10.0  # how often the owner looks at the tail of its state partitions for foreign records
KNOWN_ARTICLES_CAP = 200_000


@dataclass
class Slot:
    definition: FeedDefinition
    partition: int
    state: FeedState
    # When the pending pages are due without a feed poll: now after a batch deadline cut them off or after a
    # restart, soon after a record was not acknowledged; None: with the feed's next poll (failed pages).
    pages_due_at: datetime | None = None


@dataclass
class PollerStats:
    """Counters of this process (tests, benchmark, logs); the metrics say the same to Prometheus."""

    batches: int = 0
    polls: int = 0
    polled: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))  # the latest polls' feed ids
    produced: int = 0
    dead_lettered: int = 0


class _Assignments(ConsumerRebalanceListener):
    """Records the group's decisions; the poller acts on them after ``poll`` returns."""

    def __init__(self) -> None:
        self.revoked: set[TopicPartition] = set()
        self.assigned: set[TopicPartition] = set()
        self.joined = False

    def on_partitions_revoked(self, revoked):
        # A rebalance began: until its assignment arrives this instance owns nothing, and ``run(once=True)``
        # must wait for it instead of finding nothing due and returning (a poll may return mid-rebalance).
        self.revoked |= set(revoked)
        self.assigned -= set(revoked)
        self.joined = False

    def on_partitions_assigned(self, assigned):
        self.assigned |= set(assigned)
        self.joined = True


class Poller:
    def __init__(self, settings: Settings, *, resolver: Resolver | None = None,
                 clock: Callable[[], datetime] = utcnow, rand: Callable[[], float] = random.random):
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.resolver = resolver
        self.clock = clock
        self.rand = rand
        self.slots: dict[str, Slot] = {}
        self.ready: set[int] = set()  # partitions whose definitions and states are loaded
        self.loading: dict[int, int] = {}  # partition -> end offset of the feeds topic to reach
        self.loading_defs: dict[int, dict[str, ConsumerRecord]] = {}  # latest definition record per feed id
        # State partitions of this instance: offset to scan from, and the offsets it wrote itself since.
        self.state_scan_from: dict[int, int] = {}
        self.own_state_offsets: dict[int, set[int]] = {}
        self.state_scan_s = STATE_SCAN_S
        self._next_state_scan = 0.0
        self.known_articles: dict[str, int] = {}
        self.stats = PollerStats()
        self.health = metrics.HealthGauges()
        self._stop = threading.Event()
        self._deadline: Deadline | None = None
        self.last_progress = time.monotonic()  # main-loop heartbeat (between batches), read by /healthz
        self._assignments = _Assignments()
        self.consumer = None
        self.reader = None
        self.producer = None
        self.loop: asyncio.Runner | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.jobs: FeedJobs | None = None

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
                if self.loading or not self._assignments.joined:
                    self.sync(200)
                    continue
                batch = self.pick(self.clock(), force=force, polled=polled if once else None,
                                  tried=tried if once else None)
                if not batch:
                    if once:
                        break
                    self.sync(self._idle_ms())
                    continue
                results = self.run_batch(batch, tried if once else None)
                if once:
                    polled |= {r.feed_id for r in results if r.polled}
                    for r in results:
                        tried.setdefault(r.feed_id, set()).update(o.ref.key for o, _ in r.pages)
        finally:
            self.close()

    def start(self) -> None:
        s = self.settings
        ensure_topics(s)
        self.producer = make_producer(s)
        self.reader = table_consumer(s)
        feed_parts = partitions_of(self.reader, s.topic_feeds)
        state_parts = partitions_of(self.reader, s.topic_feed_state)
        if len(state_parts) < len(feed_parts):
            raise RuntimeError(f"{s.topic_feed_state} has fewer partitions ({len(state_parts)}) than "
                               f"{s.topic_feeds} ({len(feed_parts)}): a feed's state lives in its feed's partition")
        self.seed()
        self.consumer = make_consumer(s, s.group("poller"), max_poll_records=5000, allow_auto_create_topics=False)
        self.consumer.subscribe([s.topic_feeds], listener=self._assignments)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feedparse")
        self.loop = asyncio.Runner()
        self.jobs = self.loop.run(self._make_jobs())

    async def _make_jobs(self) -> FeedJobs:
        fetcher = Fetcher(self.settings, resolver=self.resolver)
        return FeedJobs(self.settings, fetcher, parse_executor=self.executor, clock=self.clock, rand=self.rand,
                        known_articles=self.known_articles)

    def seed(self) -> int:
        """Seed the feeds topic from ``feeds_file`` when it was never written to. Returns feeds written."""
        path = self.settings.feeds_file
        if not path.is_file() or not topic_is_empty(self.reader, self.settings.topic_feeds):
            return 0
        defs = load_feeds_file(path)
        for d in defs:
            put_definition(self.producer, self.settings, d)
        self.producer.flush()
        log.info("seeded %d feeds from %s", len(defs), path)
        return len(defs)

    def close(self) -> None:
        if self.loop is not None:
            if self.jobs is not None:
                self.loop.run(self.jobs.fetcher.aclose())
            self.loop.close()
            self.loop = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        if self.reader is not None:
            self.reader.close(autocommit=False)
        if self.producer is not None:
            self.producer.close(timeout=10)

    # --- group membership and tables ---------------------------------------------------------
    def sync(self, timeout_ms: int) -> None:
        """Serve the group, apply assignment changes and definition records, finish loading partitions.
        Called only between batches, when everything of the previous batch is persisted."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        self.last_progress = time.monotonic()
        a = self._assignments
        if a.revoked:
            lost = {tp.partition for tp in a.revoked}
            a.revoked.clear()
            self.ready -= lost
            for p in lost:
                self.loading.pop(p, None)
                self.loading_defs.pop(p, None)
            self.slots = {k: v for k, v in self.slots.items() if v.partition not in lost}
            for p in lost:
                self.state_scan_from.pop(p, None)
                self.own_state_offsets.pop(p, None)
            log.info("feed partitions revoked: %s", sorted(lost))
        if a.assigned:
            tps = sorted(a.assigned, key=lambda tp: tp.partition)
            a.assigned.clear()
            # The table is read whole on every assignment: the consumer may keep the position it had in a
            # partition it owned before the rebalance, so rewind, and drop what this poll returned for it.
            self.consumer.seek_to_beginning(*tps)
            polled = {tp: recs for tp, recs in polled.items() if tp not in tps}
            ends = self.consumer.end_offsets(tps)
            for tp in tps:
                self.ready.discard(tp.partition)
                self.slots = {k: v for k, v in self.slots.items() if v.partition != tp.partition}
                self.loading[tp.partition] = ends[tp]
                self.loading_defs[tp.partition] = {}
            log.info("feed partitions assigned: %s", [tp.partition for tp in tps])
        for tp, records in polled.items():
            for r in records:
                if r.key is not None:
                    self._definition_record(r)
        for p, end in list(self.loading.items()):
            if self.consumer.position(TopicPartition(self.settings.topic_feeds, p)) >= end:
                self._load_partition(p)
        if self.ready and time.monotonic() >= self._next_state_scan:
            self.scan_state_tail()

    def _definition_record(self, record: ConsumerRecord) -> None:
        partition, fid = record.partition, record.key.decode("utf-8", "replace")
        if partition in self.loading_defs:
            self.loading_defs[partition][fid] = record  # decided once the partition is read to its end
            return
        if partition not in self.ready:
            return
        definition = decode(record, FeedDefinition) if record.value is not None else None
        if isinstance(definition, DeadLetter):
            self.quarantine([definition])
            return
        if definition is None:
            self.slots.pop(fid, None)
            return
        slot = self.slots.get(fid)
        if slot is None:
            self.slots[fid] = Slot(definition, partition, new_state(definition))
        else:
            slot.definition = definition
            slot.state = reconcile(slot.state, definition)

    def _load_partition(self, partition: int) -> None:
        found, bad_defs = decode_table(self.loading_defs.pop(partition), FeedDefinition)
        defs = {k: d for k, (_p, d) in found.items()}
        s = self.settings
        scan_from = self.reader.end_offsets([TopicPartition(s.topic_feed_state, partition)])
        found_states, bad_states = decode_table(read_table(self.reader, s.topic_feed_state, [partition]), FeedState)
        stored = {k: st for k, (_p, st) in found_states.items()}
        self.quarantine(bad_defs + bad_states)
        self.state_scan_from[partition] = next(iter(scan_from.values()))
        self.own_state_offsets[partition] = set()
        for fid, definition in defs.items():
            state = reconcile(stored.get(fid), definition)
            # pages left pending by the previous owner (or a crash) are taken up at once
            self.slots[fid] = Slot(definition, partition, state, self.clock() if state.pending else None)
            for e in state.seen.values():
                for prefix in (e.a, e.k):
                    if prefix:
                        self.known_articles.setdefault(prefix, e.f)
        del self.loading[partition]
        self.ready.add(partition)
        self._trim_known()
        log.info("feed partition %d loaded: %d feeds, %d with state", partition, len(defs),
                 sum(1 for f in defs if f in stored))
        self.health.update(s.state for s in self.slots.values())

    def quarantine(self, dead: list[DeadLetter]) -> None:
        """Poison in a feed table (a record that is not a definition, or not a state): dead-letter it
        with its reason, then delete it from the table (a tombstone), so the table says what the poller
        acts on and the record is dead-lettered once. A feed whose definition was overwritten by poison is
        gone; its bytes are in the DLQ."""
        if not dead:
            return
        sent = send_dead_letters(self.producer, self.settings.topic_dlq, "poller", dead)
        self.producer.flush()
        if not all(f.succeeded() for f in sent):
            raise KafkaError("feed-table poison not dead-lettered: left in place, retried on the next read")
        for d in dead:
            r = d.record
            log.error("%s: record %r in partition %d is poison, dead-lettered: %s", r.topic, r.key, r.partition,
                      d.message)
            self.producer.send(r.topic, key=r.key, value=None, partition=r.partition)
        self.producer.flush()
        self.stats.dead_lettered += len(dead)

    def scan_state_tail(self) -> None:
        """The state topic is written only by the owners of its partitions, so a record there that this
        owner did not write is foreign: poison is quarantined (a valid foreign state is left alone; the
        owner's next write for that feed supersedes it). Reads only what was appended since the last scan
        and, as a table, only the latest record of each feed id there: this instance's own writes are
        skipped without decoding, and a foreign record it has already overwritten is not looked at (its
        tombstone would delete the owner's state)."""
        self._next_state_scan = time.monotonic() + self.state_scan_s
        topic = self.settings.topic_feed_state
        tps = [TopicPartition(topic, p) for p in self.state_scan_from if p in self.ready]
        if not tps:
            return
        ends = {tp.partition: end for tp, end in self.reader.end_offsets(tps).items()}
        since = {p: self.state_scan_from[p] for p in ends if self.state_scan_from[p] < ends[p]}
        if not since:
            return
        try:
            tail = read_table(self.reader, topic, since=since, timeout_s=30)
        except TableReadTimeout as exc:
            log.warning("feed-state scan for poison: %s (tried again in %.0f s)", exc, self.state_scan_s)
            return
        dead = [got for r in tail.values()
                if r.value is not None and r.offset not in self.own_state_offsets.get(r.partition, ())
                and isinstance(got := decode(r, FeedState), DeadLetter)]
        for p in since:  # read to its end: the next scan starts there
            self.state_scan_from[p] = ends[p]
            self.own_state_offsets[p] = {o for o in self.own_state_offsets.get(p, ()) if o >= ends[p]}
        self.quarantine(dead)

    def _idle_ms(self) -> int:
        now = self.clock()
        nexts = [s.state.next_check_at for s in self.slots.values()
                 if s.state.next_check_at is not None and s.state.retired_at is None]
        if not nexts:
            return 1000
        return int(max(0, min(1.0, (min(nexts) - now).total_seconds())) * 1000)

    # --- batches ---------------------------------------------------------------------------------
    def pick(self, now: datetime, *, force: bool = False, polled: set[str] | None = None,
             tried: dict[str, set[str]] | None = None) -> list[tuple[Slot, bool]]:
        """The next batch: (slot, poll the feed?) for due feeds (most overdue first) and feeds whose pending
        pages are due. ``polled``/``tried`` (once mode) leave out feeds and pages already done in this run."""
        out: list[tuple[datetime, Slot, bool]] = []
        for fid, slot in self.slots.items():
            st = slot.state
            due = st.retired_at is None and fid not in (polled or ()) and (
                st.is_due(now) or (force and st.next_check_reason != "retry-after"))
            pages = (slot.pages_due_at is not None and slot.pages_due_at <= now
                     and any(p.key not in (tried or {}).get(fid, ()) for p in st.pending))
            if due or pages:
                out.append((st.next_check_at or datetime.min.replace(tzinfo=now.tzinfo), slot, due))
        out.sort(key=lambda t: t[0])
        return [(slot, due) for _, slot, due in out[:MAX_BATCH_FEEDS]]

    def run_batch(self, batch: list[tuple[Slot, bool]], tried: dict[str, set[str]] | None = None) -> list[JobResult]:
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
            self.deliver(batch, results)
        finally:
            self.jobs.end_batch()
        self.stats.batches += 1
        done = time.monotonic()
        metrics.CYCLE_SECONDS.observe(done - started)
        log.info("poll batch: %d feeds, %d polled, %d pages; fetch %.2fs, deliver %.2fs", len(batch),
                 sum(r.polled for r in results), sum(len(r.pages) for r in results), fetched - started,
                 done - fetched)
        return results

    async def _gather(self, batch: list[tuple[Slot, bool]], deadline: Deadline,
                      tried: dict[str, set[str]]) -> list[JobResult]:
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

    def deliver(self, batch: list[tuple[Slot, bool]], results: list[JobResult]) -> None:
        """Commit order: page records -> flush -> settle states -> states and moved definitions -> flush."""
        s = self.settings
        sent: list[tuple[str, str, bytes | None, object]] = []
        for r in results:
            for outcome, record in r.pages:
                if record is not None:
                    fut = self.producer.send(record.topic, key=record.key, value=record.value,
                                             headers=record.headers)
                    sent.append((r.feed_id, outcome.ref.key, record.key, fut))
        self.producer.flush()
        delivered: dict[str, set[str]] = {}
        for fid, key, record_key, fut in sent:
            if fut.succeeded():
                delivered.setdefault(fid, set()).add(key)
            else:
                log.warning("record of entry %s (feed %s) not delivered: %r", key, fid, fut.exception,
                            extra={"article_id": (record_key or b"").decode("ascii", "replace")})
        now = self.clock()
        writes = []
        for (slot, _poll), r in zip(batch, results, strict=True):
            if not r.polled and not r.pages:
                continue
            ok = delivered.get(r.feed_id, set())
            state = settle(r.state, [o for o, _ in r.pages], delivered_ok=ok, now=now, policy=self.policy)
            slot.state = state
            undelivered = any(rec is not None and o.ref.key not in ok for o, rec in r.pages)
            slot.pages_due_at = now if r.deferred else (now + REDELIVERY_DELAY if undelivered else None)
            if r.polled:
                metrics.POLLS.labels(r.outcome or "unknown").inc()
                self.stats.polled.append(r.feed_id)
                self.stats.polls += 1
            for o, rec in r.pages:
                if o.ref.key in ok or o.result in ("skipped", "duplicate"):
                    for prefix in o.prefixes():
                        self.known_articles.setdefault(prefix, int((o.first_seen or now).timestamp()))
                    if rec is not None and rec.topic == s.topic_raw:
                        self.stats.produced += 1
                    elif rec is not None:
                        self.stats.dead_lettered += 1
            if r.moved_to:
                slot.definition = moved_definition(slot.definition, r.moved_to, now)
                writes.append(put_definition(self.producer, s, slot.definition, partition=slot.partition))
                metrics.FEEDS_MOVED.inc()
                log.warning("feed %s moved permanently to %s", slot.definition.moved_from, r.moved_to,
                            extra={"feed_id": slot.definition.id})
            writes.append(put_state(self.producer, s, state, slot.partition))
        self.producer.flush()
        failed = [f.exception for f in writes if not f.succeeded()]
        if failed:
            raise KafkaError(f"{len(failed)} feed state records not persisted: {failed[0]!r}")
        for f in writes:
            md = f.value
            if md.topic == s.topic_feed_state and md.partition in self.own_state_offsets:
                self.own_state_offsets[md.partition].add(md.offset)
        self._trim_known()
        self.health.update(sl.state for sl in self.slots.values())

    def _trim_known(self) -> None:
        if len(self.known_articles) > KNOWN_ARTICLES_CAP:
            for k in list(self.known_articles)[: len(self.known_articles) - KNOWN_ARTICLES_CAP // 2]:
                del self.known_articles[k]
