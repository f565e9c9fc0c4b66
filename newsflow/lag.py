"""Consumer lag per partition and topic sizes, from the broker (no consumer group is joined).

Lag = (last stable offset of the partition) - (the group's committed offset). The end offset is
read with ``read_committed`` isolation, the way the stages consume. A group that never committed
on a partition has the whole retained partition ahead of it (the stages start from the earliest).

Topics written in transactions (``articles.enriched``) end with a commit marker that takes an
offset, so a group that has consumed everything still shows a lag of 1 on such a partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from kafka import KafkaAdminClient, TopicPartition
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


def topic_records(admin: KafkaAdminClient, topic: str) -> int:
    """Records retained in a topic (end - start over its partitions); e.g. the DLQ size."""
    tps = partitions(admin, [topic])
    start = offsets(admin, tps, OffsetSpec.EARLIEST)
    end = offsets(admin, tps, OffsetSpec.LATEST)
    return sum(max(0, end.get(tp, 0) - start.get(tp, 0)) for tp in tps)
