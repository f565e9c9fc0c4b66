"""The feeds one poller instance owns: partitions from the consumer group, their tables loaded, poison out.

Ownership. Instances share one consumer group (``settings.group("poller")``) on the compacted feeds
topic; the group's (eager) assignment decides which feeds' partitions an instance owns. The table
never commits offsets: an assigned partition is read from the beginning, and the state of its feeds
is loaded from the same partition of the state topic (``ingest.store``). Membership is served
(``sync``) only *between* batches, when nothing is in flight and every result is persisted; a
rebalance therefore waits for the current batch of every member, and a new owner starts from the
state the previous owner wrote: no feed is polled twice in one cycle.

Poison. A record of either table that is not a definition (or not a state) is dead-lettered with its
reason and deleted with a tombstone (``quarantine``), so it is dead-lettered once. The state topic is
written only by its partitions' owners: the owner scans the tail of its state partitions for records
it did not write (``scan_state_tail``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from ingest import metrics
from ingest.state import FeedDefinition, FeedState, new_state
from ingest.store import (
    TableReadTimeout, decode, decode_table, load_feeds_file, partitions_of, put_definition, read_table,
    table_consumer, topic_is_empty,
)
from ingest.transitions import reconcile
from newsflow.kafka_io import make_consumer, subscribe_known
from newsflow.partitions import unfinished
from newsflow.settings import Settings
from newsflow.stage.deadletters import send_dead_letters
from newsflow.stage.outcomes import DeadLetter, SinkUnavailable
from newsflow.stage.sinks import KafkaTransactions

log = logging.getLogger(__name__)

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


class _Assignments(ConsumerRebalanceListener):
    """Records the group's decisions; the table acts on them after ``poll`` returns."""

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


def trim_known(known_articles: dict[str, int]) -> None:
    """Forget the oldest half of the known article prefixes once there are more than the cap."""
    if len(known_articles) > KNOWN_ARTICLES_CAP:
        for k in list(known_articles)[: len(known_articles) - KNOWN_ARTICLES_CAP // 2]:
            del known_articles[k]


class FeedTable:
    """The slots (definition, partition, state) of the feeds this instance owns."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime], known_articles: dict[str, int],
                 health: metrics.HealthGauges, on_dead_lettered: Callable[[int], None] = lambda _n: None):
        self.settings = settings
        self.clock = clock
        self.known_articles = known_articles
        self.health = health
        self.on_dead_lettered = on_dead_lettered
        self.slots: dict[str, Slot] = {}
        self.ready: set[int] = set()  # partitions whose definitions and states are loaded
        self.loading: dict[TopicPartition, int] = {}  # feeds-topic partition -> end offset to reach
        self.loading_defs: dict[int, dict[str, ConsumerRecord]] = {}  # latest definition record per feed id
        # State partitions of this instance: offset to scan from, and the offsets it wrote itself since.
        self.state_scan_from: dict[int, int] = {}
        self.own_state_offsets: dict[int, set[int]] = {}
        self.state_scan_s = STATE_SCAN_S
        self._next_state_scan = 0.0
        self.assignments = _Assignments()
        self.consumer = None
        self.reader = None
        self.txn: KafkaTransactions | None = None  # the poller's: every write of the poller is transactional

    @property
    def loaded(self) -> bool:
        """The group assigned this instance its partitions and all of them are loaded."""
        return not self.loading and self.assignments.joined

    def open(self, txn: KafkaTransactions) -> None:
        """Check the topics, seed the feeds topic when it was never written to, and join the group."""
        s = self.settings
        self.txn = txn
        self.reader = table_consumer(s)
        feed_parts = partitions_of(self.reader, s.topic_feeds)
        state_parts = partitions_of(self.reader, s.topic_feed_state)
        if len(state_parts) < len(feed_parts):
            raise RuntimeError(f"{s.topic_feed_state} has fewer partitions ({len(state_parts)}) than "
                               f"{s.topic_feeds} ({len(feed_parts)}): a feed's state lives in its feed's partition")
        self.seed()
        self.consumer = make_consumer(s, s.group("poller"), max_poll_records=5000, allow_auto_create_topics=False)
        # The reader's metadata is not this consumer's: CI saw a leader that joined before its metadata had
        # the topic assign nothing and stay so for 60 s (``subscribe_known``).
        subscribe_known(self.consumer, s.topic_feeds, self.assignments)

    def seed(self) -> int:
        """Seed the feeds topic from ``feeds_file`` when it was never written to. Returns feeds written.
        Feed ids are hashes of URLs, so two instances seeding at once write the same records."""
        path = self.settings.feeds_file
        if not path.is_file() or not topic_is_empty(self.reader, self.settings.topic_feeds):
            return 0
        defs = load_feeds_file(path)
        self._transact(lambda p: [put_definition(p, self.settings, d) for d in defs], "seed feeds not written")
        log.info("seeded %d feeds from %s", len(defs), path)
        return len(defs)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        if self.reader is not None:
            self.reader.close(autocommit=False)

    # --- group membership ------------------------------------------------------------------------
    def sync(self, timeout_ms: int) -> None:
        """Serve the group, apply assignment changes and definition records, finish loading partitions.
        Called only between batches, when everything of the previous batch is persisted."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        a = self.assignments
        if a.revoked:
            lost = {tp.partition for tp in a.revoked}
            a.revoked.clear()
            self._drop(lost)
            log.info("feed partitions revoked: %s", sorted(lost))
        if a.assigned:
            tps = sorted(a.assigned, key=lambda tp: tp.partition)
            a.assigned.clear()
            # The table is read whole on every assignment: the consumer may keep the position it had in a
            # partition it owned before the rebalance, so rewind, and drop what this poll returned for it.
            self.consumer.seek_to_beginning(*tps)
            polled = {tp: recs for tp, recs in polled.items() if tp not in tps}
            self._drop({tp.partition for tp in tps})
            self.loading |= self.consumer.end_offsets(tps)
            self.loading_defs |= {tp.partition: {} for tp in tps}
            log.info("feed partitions assigned: %s", [tp.partition for tp in tps])
        for records in polled.values():
            for r in records:
                if r.key is not None:
                    self._definition_record(r)
        pending = unfinished(self.consumer, self.loading)
        for tp in [tp for tp in self.loading if tp not in pending]:
            del self.loading[tp]
            self._load_partition(tp.partition)
        if self.ready and time.monotonic() >= self._next_state_scan:
            self.scan_state_tail()

    def _drop(self, partitions: set[int]) -> None:
        """Forget partitions (revoked, or about to be read again)."""
        self.ready -= partitions
        self.loading = {tp: end for tp, end in self.loading.items() if tp.partition not in partitions}
        self.slots = {k: v for k, v in self.slots.items() if v.partition not in partitions}
        for p in partitions:
            self.loading_defs.pop(p, None)
            self.state_scan_from.pop(p, None)
            self.own_state_offsets.pop(p, None)

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

    # --- loading a partition ---------------------------------------------------------------------
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
                for prefix in (e.article, e.link):
                    if prefix:
                        self.known_articles.setdefault(prefix, e.first_seen)
        self.ready.add(partition)
        trim_known(self.known_articles)
        log.info("feed partition %d loaded: %d feeds, %d with state", partition, len(defs),
                 sum(1 for f in defs if f in stored))
        self.health.update(s.state for s in self.slots.values())

    # --- poison ------------------------------------------------------------------------------------
    def quarantine(self, dead: list[DeadLetter]) -> None:
        """Poison in a feed table (a record that is not a definition, or not a state): dead-letter it
        with its reason and delete it from the table (a tombstone), in one transaction, so the table says
        what the poller acts on and the record is dead-lettered once. A feed whose definition was
        overwritten by poison is gone; its bytes are in the DLQ."""
        if not dead:
            return

        def write(p: KafkaProducer) -> None:
            send_dead_letters(p, self.settings.topic_dlq, "poller", dead)
            for d in dead:
                r = d.record
                p.send(r.topic, key=r.key, value=None, partition=r.partition)

        self._transact(write, "feed-table poison not dead-lettered: left in place, retried on the next read")
        for d in dead:
            r = d.record
            log.error("%s: record %r in partition %d is poison, dead-lettered: %s", r.topic, r.key, r.partition,
                      d.message)
        self.on_dead_lettered(len(dead))

    def _transact(self, write: Callable[[KafkaProducer], object], failed: str) -> None:
        """``write`` in one transaction of the poller's producer; KafkaError when it did not commit."""
        try:
            self.txn.transact(None, {}, write)
        except SinkUnavailable as exc:
            raise KafkaError(f"{failed}: {exc}") from exc

    def wrote_states(self, written: Iterable) -> None:
        """Remember the offsets of the states this owner wrote (acknowledged futures of ``put_state``):
        ``scan_state_tail`` skips them."""
        for f in written:
            md = f.value
            if md.topic == self.settings.topic_feed_state and md.partition in self.own_state_offsets:
                self.own_state_offsets[md.partition].add(md.offset)

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
