"""Consumer lag per partition and topic sizes, from the broker (no consumer group is joined).

Lag = (last stable offset of the partition) - (the group's committed offset). The end offset is
read with ``read_committed`` isolation, the way the stages consume. A group that never committed
on a partition has the whole retained partition ahead of it (the stages start from the earliest).

Topics written in transactions (``articles.enriched``) end with a commit marker that takes an
offset, so a group that has consumed everything still shows a lag of 1 on such a partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.protocol.consumer.offsets import IsolationLevel


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int

    @property
    def lag(self) -> int:
        done = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - done)

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
    todo = [tp for tp in end if end[tp] > start.get(tp, 0)]
    if span > limit:
        return span, False
    if not todo:
        return 0, True
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, start[tp])
    count = 0
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end[tp] for tp in todo):
        if time.monotonic() > deadline:
            return span, False
        for recs in consumer.poll(timeout_ms=200).values():
            count += sum(1 for r in recs if r.offset < end[TopicPartition(r.topic, r.partition)])
    return count, True
