"""Consumer lag per partition and topic sizes, from the broker (no consumer group is joined).

Lag = (last stable offset of the partition) - (the group's committed offset). The end offset is
read with ``read_committed`` isolation, the way the stages consume. A group that never committed
on a partition has the whole retained partition ahead of it (the stages start from the earliest).

Topics written in transactions (``articles.enriched``) end with a commit marker that takes an
offset, so by offsets alone a group that has consumed everything still lags 1 behind on such a
partition. ``count_records`` reads a small lag (at most ``COUNT_LIMIT`` offsets) and counts the
records really ahead of the group; ``newsflow status`` shows that count, the ``newsflow_consumer_lag``
gauge stays the offset difference (cheap, and a marker never crosses an alert's threshold).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.protocol.consumer.offsets import IsolationLevel


COUNT_LIMIT = 1000


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    records: int | None = None  # records ahead of the group, when counted (``count_records``)

    @property
    def done(self) -> int:
        return self.start if self.committed is None else max(self.committed, self.start)

    @property
    def lag(self) -> int:
        return self.records if self.records is not None else max(0, self.end - self.done)

    def as_dict(self) -> dict:
        return asdict(self) | {"lag": self.lag}


def partitions(admin: KafkaAdminClient, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist (missing topics are left out)."""
    out = []
    for t in admin.describe_topics(list(topics)):
        if t.get("error_code", 0) == 0:
            out += [TopicPartition(t["name"], p["partition_index"]) for p in t["partitions"]]
    return sorted(out)


def offsets(admin: KafkaAdminClient, tps: list[TopicPartition], spec: OffsetSpec) -> dict[TopicPartition, int]:
    if not tps:
        return {}
    found = admin.list_partition_offsets({tp: spec for tp in tps}, isolation_level=IsolationLevel.READ_COMMITTED)
    return {tp: o.offset for tp, o in found.items()}


def group_lag(admin: KafkaAdminClient, group: str, topics: Iterable[str]) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of ``topics``."""
    tps = partitions(admin, topics)
    if not tps:
        return []
    committed = admin.list_group_offsets({group: tps}).get(group, {})
    start = offsets(admin, tps, OffsetSpec.EARLIEST)
    end = offsets(admin, tps, OffsetSpec.LATEST)
    rows = []
    for tp in tps:
        c = committed.get(tp)
        rows.append(PartitionLag(
            group=group, topic=tp.topic, partition=tp.partition,
            committed=c.offset if c is not None and c.offset >= 0 else None,
            start=start.get(tp, 0), end=end.get(tp, 0),
        ))
    return rows


def count_records(consumer: KafkaConsumer, rows: list[PartitionLag], *, limit: int = COUNT_LIMIT,
                  timeout_s: float = 10.0) -> list[PartitionLag]:
    """``rows`` with the records ahead of the group counted where the offset lag is at most ``limit``
    (commit markers take offsets but are no records). ``consumer`` is group-less and ``read_committed``."""
    todo = {TopicPartition(r.topic, r.partition): r for r in rows if 0 < r.lag <= limit}
    if not todo:
        return rows
    counts = _count(consumer, {tp: r.done for tp, r in todo.items()}, {tp: r.end for tp, r in todo.items()},
                    timeout_s)
    if counts is None:
        return rows
    return [replace(r, records=counts[tp]) if (tp := TopicPartition(r.topic, r.partition)) in todo else r
            for r in rows]


def _count(consumer: KafkaConsumer, start: dict[TopicPartition, int], end: dict[TopicPartition, int],
           timeout_s: float) -> dict[TopicPartition, int] | None:
    """Records of each partition in [start, end), read with ``consumer``; None if it took too long."""
    todo = [tp for tp in end if end[tp] > start.get(tp, 0)]
    counts = {tp: 0 for tp in end}
    if not todo:
        return counts
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, start.get(tp, 0))
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end[tp] for tp in todo):
        if time.monotonic() > deadline:
            return None
        for tp, recs in consumer.poll(timeout_ms=200).items():
            counts[tp] += sum(1 for r in recs if r.offset < end[tp])
    return counts


def offset_span(admin: KafkaAdminClient, topic: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    tps = partitions(admin, [topic])
    return offsets(admin, tps, OffsetSpec.EARLIEST), offsets(admin, tps, OffsetSpec.LATEST)


def topic_records(admin: KafkaAdminClient, consumer: KafkaConsumer, topic: str, *, limit: int = 10_000,
                  timeout_s: float = 10.0) -> tuple[int, bool]:
    """Committed records retained in ``topic`` (e.g. the DLQ size) and whether the count is exact.

    The offset span over-counts a topic written in transactions (each commit marker takes an
    offset), so up to ``limit`` records are counted by reading them with ``consumer`` (group-less,
    ``read_committed``); a bigger topic is reported by its offset span, flagged as inexact.
    """
    start, end = offset_span(admin, topic)
    span = sum(max(0, end[tp] - start.get(tp, 0)) for tp in end)
    if span > limit:
        return span, False
    counts = _count(consumer, start, end, timeout_s)
    return (span, False) if counts is None else (sum(counts.values()), True)
