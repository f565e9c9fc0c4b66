"""The dead-letter topic: list what is in it, replay it to the topics the records came from.

The dead-letter record itself (its ``nf-*`` headers, how to read one, what replaying it means per
stage: ``replay_action``, resend / refetch / refuse) lives in ``newsflow.stage.deadletters``.

The DLQ is a queue with one reader, the replay group ``<prefix>-dlq-replay``. Its committed
offset divides the topic: records before it are *handled*, records from it on are *pending*.

A **refetch** goes through the poller's own ``FeedJobs.page`` (robots.txt, SSRF guard, caps, per-host
limits), keeping the dead letter's ``first_seen_at``. A page that comes back is sent to ``topic_raw``;
a page that is dead again is re-appended as its *new* dead letter (new reason, ``nf-attempts`` + 1); a
temporary failure or a robots.txt skip re-appends the original. A replay never writes into a feed table.

``replay`` takes the pending records present when it starts and, per batch:

0. fetches the batch's pages again (before the transaction: HTTP is slow, a transaction stays short);
1. in ONE Kafka transaction (``newsflow.stage.sinks.KafkaTransactions``, the stages' own, with their
   recovery from a lost transaction; transactional id = the replay group, so two replays fence each
   other: a fenced replay stops), sends what each record's action produced (resent record, refetched
   page or new dead letter);
2. re-appends each record that does not match the filters, is refused, or could not be fetched now
   to the DLQ, so it stays pending for a later replay;
3. commits the replay group's offset past the batch (``send_offsets_to_transaction``).

A record is therefore replayed at most once, and exactly once if the replay completes; a killed
replay commits nothing of its open batch (its pages are simply fetched again by the next replay).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow.kafka_io import make_consumer
from newsflow.partitions import RangeReadTimeout, committed_or_beginning, read_range
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from newsflow.stage.deadletters import (
    H_ERROR_CLASS, H_STAGE, Action, DeadRecord, Refetch, Refuse, Resend, dead_again_headers, header_text, replay_action,
    replay_headers,
)
from newsflow.stage.sinks import KafkaTransactions

if TYPE_CHECKING:
    from ingest.jobs import FeedJobs, Record
    from ingest.transitions import PageOutcome

log = logging.getLogger(__name__)

_IDLE_POLLS = 4
_TXN_TRIES = 6  # a replay's transaction is tried again across a broker restart (15 s of back-off in all)


def replay_group(settings: Settings) -> str:
    return settings.group("dlq-replay")


@dataclass(frozen=True)
class Filters:
    stages: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def match(self, record: ConsumerRecord) -> bool:
        if self.stages and header_text(record, H_STAGE) not in self.stages:
            return False
        return not (self.reasons and header_text(record, H_ERROR_CLASS) not in self.reasons)


# --- the poller's page path, for Refetch ------------------------------------------------------------


class _Refetcher:
    """``FeedJobs.page`` (the poller's own page path: robots.txt, SSRF guard, caps, per-host limits) on one
    event loop for the whole replay. It persists nothing: the feed state it passes is a throwaway whose
    only job is to carry the dead letter's ``first_seen_at`` (the entry is already seen in the real one)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.loop: asyncio.Runner | None = None
        self.jobs: FeedJobs | None = None

    def fetch(self, pages: list[RawArticle]) -> list[tuple[PageOutcome, Record | None] | None | Exception]:
        """One result per page, in order: what ``FeedJobs.page`` returned, or the exception it raised."""
        if not pages:
            return []
        if self.loop is None:
            self.loop = asyncio.Runner()
        return self.loop.run(self._fetch_all(pages))

    async def _fetch_all(self, pages: list[RawArticle]) -> list:
        from ingest.fetch import Fetcher
        from ingest.jobs import FeedJobs
        from ingest.state import utcnow

        if self.jobs is None:
            self.jobs = FeedJobs(self.settings, Fetcher(self.settings), parse_executor=None, clock=utcnow,
                                 rand=random.random)
        got = await asyncio.gather(*(self._one(p) for p in pages), return_exceptions=True)
        for g in got:
            if isinstance(g, BaseException) and not isinstance(g, Exception):
                raise g  # cancelled, interrupted: not a page's fate
        return got

    async def _one(self, page: RawArticle):
        from ingest.parse import EntryRef
        from ingest.state import FeedDefinition, FeedState, SeenEntry, epoch, utcnow
        from ingest.urls import feed_id

        assert self.jobs is not None
        first = epoch(page.first_seen_at)
        # attempts=0: on this try a temporary failure is a "retry" (the original stays pending), not a new
        # page_fetch_failed dead letter; the re-appended dead letter counts the attempt (``_outputs``).
        ref = EntryRef(**page.entry.model_dump(), key=f"dlq:{page.id[:16]}", version="dlq-replay",
                       page_url=page.url, attempts=0)
        feed_url = page.feed_url or page.url
        fid = feed_id(feed_url)
        state = FeedState(feed_id=fid, url=feed_url, title=page.feed_title,
                          seen={ref.key: SeenEntry(version=ref.version, first_seen=first, last_in_feed=first)})
        definition = FeedDefinition(id=fid, url=feed_url, added_url=feed_url, title=page.feed_title,
                                    added_at=utcnow())
        return await self.jobs.page(ref, state, definition)

    def close(self) -> None:
        if self.loop is None:
            return
        try:
            if self.jobs is not None:
                self.loop.run(self.jobs.fetcher.aclose())
        finally:
            self.loop.close()
            self.loop = None


# --- reading the DLQ ------------------------------------------------------------------------------------


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"dead-letter topic {topic!r} does not exist (run `newsflow topology`)")
    return [TopicPartition(topic, p) for p in sorted(parts)]


def _start_positions(consumer: KafkaConsumer, tps: list[TopicPartition], *, pending_only: bool) -> dict[TopicPartition, int]:
    return committed_or_beginning(consumer, tps) if pending_only else consumer.beginning_offsets(tps)


def _read(consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int],
          timeout_s: float = 30.0) -> Iterator[list[ConsumerRecord]]:
    """Batches of records from ``starts`` up to (excluding) ``ends``, in offset order per partition
    (``newsflow.partitions.read_range``); a read that times out ends with what it had, logged."""
    try:
        yield from read_range(consumer, starts, ends, timeout_s=timeout_s, idle_polls=_IDLE_POLLS)
    except RangeReadTimeout as exc:
        log.warning("reading %s stopped: %s", ", ".join(sorted({tp.topic for tp in starts})), exc)


def list_dead(settings: Settings, *, include_handled: bool = False, filters: Filters = Filters()) -> list[DeadRecord]:
    """DLQ records, pending ones only unless ``include_handled``. Reads; commits nothing."""
    consumer = make_consumer(settings, replay_group(settings))
    try:
        tps = _partitions(consumer, settings.topic_dlq)
        starts = _start_positions(consumer, tps, pending_only=not include_handled)
        ends = consumer.end_offsets(tps)
        return [DeadRecord.of(r) for batch in _read(consumer, starts, ends) for r in batch if filters.match(r)]
    finally:
        consumer.close(autocommit=False)


# --- replay ---------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a replay did, per action. Everything but ``resent`` and ``refetched`` is still pending."""

    resent: Counter[str] = field(default_factory=Counter)  # original topic -> records sent back
    refetched: int = 0  # pages fetched again and sent to topic_raw
    still_dead: Counter[str] = field(default_factory=Counter)  # new reason -> pages dead again (re-queued)
    not_fetched: Counter[str] = field(default_factory=Counter)  # "retry timeout", "skipped robots_disallowed", ...
    refused: Counter[str] = field(default_factory=Counter)  # why -> records refused
    unmatched: int = 0  # records the filters did not select

    @property
    def replayed(self) -> int:
        return sum(self.resent.values()) + self.refetched

    @property
    def kept(self) -> int:
        return (self.unmatched + sum(self.still_dead.values()) + sum(self.not_fetched.values())
                + sum(self.refused.values()))


Out = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]  # topic, key, value, headers


def _outputs(rec: ConsumerRecord, action: Action | None, fetched, settings: Settings,
             result: ReplayResult) -> list[Out]:
    """What to send for one DLQ record (``action`` None: it did not match the filters), counted in ``result``."""
    again: Out = (settings.topic_dlq, rec.key, rec.value, list(rec.headers or ()))
    if action is None:
        result.unmatched += 1
        return [again]
    if isinstance(action, Refuse):
        result.refused[action.why] += 1
        return [again]
    if isinstance(action, Resend):
        result.resent[action.topic] += 1
        return [(action.topic, rec.key, rec.value, replay_headers(rec))]
    # Refetch. The outcome's shape may grow (new result kinds): only a record for topic_raw is a replay and
    # only a record for the DLQ is a new dead letter; anything else keeps the original pending.
    if isinstance(fetched, Exception):
        log.error("refetch of %s failed: %r", action.page.url, fetched, extra={"article_id": action.page.id})
        result.not_fetched[f"error {type(fetched).__name__}"] += 1
        return [again]
    outcome, record = fetched if fetched is not None else (None, None)
    if record is not None and record.topic == settings.topic_raw:
        result.refetched += 1
        return [(record.topic, record.key, record.value, list(record.headers))]
    if record is not None and record.topic == settings.topic_dlq:
        headers = dead_again_headers(rec, record.headers)
        reason = dict(record.headers).get(H_ERROR_CLASS, b"?").decode("utf-8", "replace")
        result.still_dead[reason] += 1
        return [(record.topic, record.key, record.value, headers)]
    what = f"{outcome.result} {outcome.reason}" if outcome is not None else "deferred"
    result.not_fetched[what] += 1
    return [again]


def _transact(txn: KafkaTransactions, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata],
              sends: list[Out], group: str) -> None:
    """Steps 1-3 for one batch, in one transaction; a transaction that could not commit (broker away,
    answer lost: ``SinkUnavailable``) is tried again with back-off, up to ``_TXN_TRIES`` times."""
    def write(producer) -> None:
        for topic, key, value, headers in sends:
            producer.send(topic, key=key, value=value, headers=headers)

    txn.transact_retrying(consumer, offsets, write, tries=_TXN_TRIES, delay_s=0.5, group_metadata=group)


def replay(settings: Settings, *, filters: Filters = Filters(), limit: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Replay pending DLQ records, each as ``replay_action`` says (see the module docstring).
    ``limit`` bounds the records resent or refetched (refused and unmatched ones do not count).
    ``progress(done, total)`` is called after every committed batch."""
    group = replay_group(settings)
    # Fences any other replay before we read the committed offsets; a replay that is fenced stops.
    txn = KafkaTransactions(settings, "dlq-replay", group, renew_when_fenced=False)
    consumer = make_consumer(settings, group)
    refetcher = _Refetcher(settings)
    result = ReplayResult()
    attempted = 0
    try:
        tps = _partitions(consumer, settings.topic_dlq)
        starts = _start_positions(consumer, tps, pending_only=True)
        ends = consumer.end_offsets(tps)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        done = 0
        if progress:
            progress(0, total)
        for batch in _read(consumer, starts, ends):
            if limit is not None and attempted >= limit:
                break
            plan: list[tuple[ConsumerRecord, Action | None]] = []
            for rec in batch:
                if limit is not None and attempted >= limit:
                    break
                action = replay_action(rec, settings) if filters.match(rec) else None
                attempted += isinstance(action, (Resend, Refetch))
                plan.append((rec, action))
            # 0. the pages, before the transaction opens
            fetched = iter(refetcher.fetch([a.page for _r, a in plan if isinstance(a, Refetch)]))
            sends: list[Out] = []
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for rec, action in plan:
                page = next(fetched) if isinstance(action, Refetch) else None
                sends += _outputs(rec, action, page, settings, result)
                offsets[TopicPartition(rec.topic, rec.partition)] = OffsetAndMetadata(rec.offset + 1, "", -1)
            _transact(txn, consumer, offsets, sends, group)
            done += len(plan)
            if progress:
                progress(done, total)
        return result
    finally:
        refetcher.close()
        consumer.close(autocommit=False)
        txn.close()
