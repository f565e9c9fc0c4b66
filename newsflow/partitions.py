"""Reading a range of a topic's partitions up to the end offsets captured when the read starts.

Every "read these partitions to their end" in Newsflow goes through here: the poller's feed tables
(``ingest.store.read_table``), the processor's story-window seed, the dead-letter listing and
replay (``processors.dlq``), and the end offsets that reindex and reprocess drain up to
(``processors.index.reindex.drain``). The end offsets are the consumer's: with ``read_committed`` (every
Newsflow consumer, ``newsflow.kafka_io``) the last stable offsets, so an open transaction is not
waited for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

POLL_MS = 500


class RangeReadTimeout(Exception):
    """A range read waited ``timeout_s`` for records and some partitions are still short of their end."""


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` the consumer's metadata knows, in order (none: an empty list)."""
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def end_offsets(consumer: KafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """The end offsets of every partition of ``topic`` now (last stable offsets under read_committed)."""
    return consumer.end_offsets(topic_partitions(consumer, topic))


def committed_or_beginning(consumer: KafkaConsumer, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """Where the consumer's group left each partition; its beginning when the group committed nothing
    there, or when retention deleted what the committed offset points at."""
    tps = list(tps)
    begins = consumer.beginning_offsets(tps)
    out = {}
    for tp in tps:
        committed = consumer.committed(tp)
        out[tp] = max(begins[tp], committed) if committed is not None else begins[tp]
    return out


def unfinished(consumer: KafkaConsumer, ends: dict[TopicPartition, int]) -> set[TopicPartition]:
    """The partitions whose position has not reached ``ends`` yet."""
    return {tp for tp, end in ends.items() if consumer.position(tp) < end}


def read_range(consumer: KafkaConsumer, starts: dict[TopicPartition, int],
               ends: dict[TopicPartition, int] | None = None, *, timeout_s: float = 60.0,
               idle_polls: int | None = None) -> Iterator[list[ConsumerRecord]]:
    """Batches of the records of ``starts``' partitions from those offsets up to (excluding) ``ends``
    (default: the end offsets when the read starts), in offset order per partition.

    The consumer is assigned exactly these partitions (a group consumer's offsets are not touched).
    ``timeout_s`` bounds each wait for records, not the caller's time with a batch; past it, with
    partitions still short of their end, ``RangeReadTimeout`` says which. ``idle_polls``: stop early,
    without an error, after that many polls in a row returned nothing."""
    tps = list(starts)
    if not tps:
        return
    consumer.assign(tps)
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    if ends is None:
        ends = consumer.end_offsets(tps)
    remaining = {tp for tp in tps if starts[tp] < ends[tp]}
    idle, deadline = 0, time.monotonic() + timeout_s
    while remaining:
        polled = consumer.poll(timeout_ms=POLL_MS)
        batch = [r for tp, recs in polled.items() for r in recs if r.offset < ends.get(tp, 0)]
        idle = 0 if polled else idle + 1
        if batch:
            yield batch
            deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        if not remaining or (idle_polls is not None and idle >= idle_polls):
            return
        if time.monotonic() > deadline:
            short = ", ".join(f"{tp.topic}[{tp.partition}] at {consumer.position(tp)} of {ends[tp]}"
                              for tp in sorted(remaining, key=lambda tp: (tp.topic, tp.partition)))
            raise RangeReadTimeout(f"no records for {timeout_s:.0f}s before the end offsets: {short}")


def read_from_beginning(consumer: KafkaConsumer, tps: Iterable[TopicPartition], *,
                        timeout_s: float = 60.0) -> Iterator[list[ConsumerRecord]]:
    """``read_range`` of whole partitions: from their beginning to their end offsets now."""
    tps = list(tps)
    return read_range(consumer, consumer.beginning_offsets(tps) if tps else {}, timeout_s=timeout_s)
