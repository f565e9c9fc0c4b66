"""The dead-letter topic: list what is in it, replay it to the topics the records came from.

Every stage dead-letters through the runner with headers ``nf-stage``, ``nf-error-class``,
``nf-error``, ``nf-topic``, ``nf-partition``, ``nf-offset`` and ``nf-attempts``.

The DLQ is a queue with one reader, the replay group ``<prefix>-dlq-replay``. Its committed
offset divides the topic: records before it are *handled*, records from it on are *pending*.

``replay`` takes the pending records present when it starts and, per batch, in ONE Kafka
transaction (transactional id = the replay group, so two replays fence each other):

1. sends each record that matches the filters back to its original topic (``nf-topic``) with its
   key, value and headers; the ``nf-*`` bookkeeping headers are dropped except ``nf-attempts``,
   which is carried so the stage keeps counting attempts;
2. re-appends each record that does not match (or names no original topic) to the DLQ, so it
   stays pending for a later replay;
3. commits the replay group's offset past the batch (``send_offsets_to_transaction``).

A record is therefore replayed at most once, and exactly once if the replay completes; a killed
replay commits nothing of its open batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow.kafka_io import make_consumer, make_producer
from newsflow.runner import (
    H_ATTEMPTS, H_ERROR, H_ERROR_CLASS, H_OFFSET, H_PARTITION, H_STAGE, H_TOPIC, header,
)
from newsflow.settings import Settings

_BOOKKEEPING = {H_STAGE, H_ERROR_CLASS, H_ERROR, H_TOPIC, H_PARTITION, H_OFFSET}
_IDLE_POLLS = 4


def replay_group(settings: Settings) -> str:
    return settings.group("dlq-replay")


def _text(record: ConsumerRecord, name: str) -> str | None:
    value = header(record, name)
    return value.decode("utf-8", "replace") if value is not None else None


def _int(record: ConsumerRecord, name: str) -> int | None:
    value = _text(record, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadRecord:
    """One DLQ record, as ``dlq list`` shows it."""

    partition: int
    offset: int
    timestamp: datetime | None
    stage: str | None
    error_class: str | None
    message: str | None
    topic: str | None
    original_partition: int | None
    original_offset: int | None
    attempts: int
    key: str | None
    value_bytes: int

    @classmethod
    def of(cls, record: ConsumerRecord) -> DeadRecord:
        ts = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC) if record.timestamp and record.timestamp > 0 else None
        return cls(
            partition=record.partition, offset=record.offset, timestamp=ts,
            stage=_text(record, H_STAGE), error_class=_text(record, H_ERROR_CLASS), message=_text(record, H_ERROR),
            topic=_text(record, H_TOPIC), original_partition=_int(record, H_PARTITION),
            original_offset=_int(record, H_OFFSET), attempts=_int(record, H_ATTEMPTS) or 0,
            key=record.key.decode("utf-8", "replace") if record.key else None,
            value_bytes=len(record.value or b""),
        )

    def as_json(self) -> dict:
        out = self.__dict__.copy()
        out["timestamp"] = self.timestamp.isoformat() if self.timestamp else None
        return out


@dataclass(frozen=True)
class Filters:
    stages: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def match(self, record: ConsumerRecord) -> bool:
        if self.stages and _text(record, H_STAGE) not in self.stages:
            return False
        return not (self.reasons and _text(record, H_ERROR_CLASS) not in self.reasons)


def replay_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The record's own headers plus ``nf-attempts``; the DLQ bookkeeping is dropped."""
    return [(k, v) for k, v in (record.headers or ()) if k not in _BOOKKEEPING]


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"dead-letter topic {topic!r} does not exist (run `newsflow topology`)")
    return [TopicPartition(topic, p) for p in sorted(parts)]


def _start_positions(consumer: KafkaConsumer, tps: list[TopicPartition], *, pending_only: bool) -> dict[TopicPartition, int]:
    begins = consumer.beginning_offsets(tps)
    if not pending_only:
        return dict(begins)
    out = {}
    for tp in tps:
        committed = consumer.committed(tp)
        out[tp] = max(begins[tp], committed if committed is not None else 0)
    return out


def _read(consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int],
          timeout_s: float = 30.0) -> Iterator[list[ConsumerRecord]]:
    """Batches of records from ``starts`` up to (excluding) ``ends``, in offset order per partition."""
    consumer.assign(list(starts))
    for tp, pos in starts.items():
        consumer.seek(tp, pos)
    pending = {tp for tp in starts if starts[tp] < ends[tp]}
    idle, deadline = 0, time.monotonic() + timeout_s
    while pending and idle < _IDLE_POLLS and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500)
        batch = [r for tp, recs in polled.items() for r in recs if r.offset < ends[tp]]
        idle = 0 if polled else idle + 1
        if batch:
            deadline = time.monotonic() + timeout_s
            yield batch
        pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}


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


@dataclass
class ReplayResult:
    replayed: int = 0
    kept: int = 0
    by_topic: dict[str, int] | None = None


def replay(settings: Settings, *, filters: Filters = Filters(), limit: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Re-inject pending DLQ records into their original topics (see the module docstring).
    ``progress(done, total)`` is called after every committed batch."""
    group = replay_group(settings)
    producer = make_producer(settings, transactional_id=group)
    producer.init_transactions()  # fences any other replay before we read the committed offsets
    consumer = make_consumer(settings, group)
    result = ReplayResult(by_topic={})
    try:
        tps = _partitions(consumer, settings.topic_dlq)
        starts = _start_positions(consumer, tps, pending_only=True)
        ends = consumer.end_offsets(tps)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        done = 0
        if progress:
            progress(0, total)
        for batch in _read(consumer, starts, ends):
            if limit is not None and result.replayed >= limit:
                break
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            producer.begin_transaction()
            try:
                for rec in batch:
                    if limit is not None and result.replayed >= limit:
                        break
                    target = _text(rec, H_TOPIC)
                    if target and filters.match(rec):
                        producer.send(target, key=rec.key, value=rec.value, headers=replay_headers(rec))
                        result.replayed += 1
                        result.by_topic[target] = result.by_topic.get(target, 0) + 1
                    else:
                        producer.send(settings.topic_dlq, key=rec.key, value=rec.value, headers=list(rec.headers or ()))
                        result.kept += 1
                    offsets[TopicPartition(rec.topic, rec.partition)] = OffsetAndMetadata(rec.offset + 1, "", -1)
                    done += 1
                producer.send_offsets_to_transaction(offsets, group)
                producer.commit_transaction()
            except BaseException:
                producer.abort_transaction()
                raise
            if progress:
                progress(done, total)
        return result
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
