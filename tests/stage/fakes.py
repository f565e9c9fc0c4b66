"""A fake Kafka consumer and sink for unit tests of the stage runner (no Kafka).

``FakeConsumer`` keeps a log per partition, positions, pauses and committed offsets the way
kafka-python does where the runner depends on it: a paused partition returns nothing, a revoked and
re-assigned partition keeps its position and loses its pause, ``poll`` calls the registered
``ConsumerRebalanceListener`` when a rebalance was scheduled (``rebalance_on_poll``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import OffsetAndMetadata, TopicPartition

from newsflow.stage.outcomes import Batch, Out, SinkUnavailable
from newsflow.stage.sinks import Sink

TOPIC = "unit.raw"


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple = ()
    timestamp: int = 0


@dataclass
class Rebalance:
    revoke: set[TopicPartition]
    assign_again: set[TopicPartition] = field(default_factory=set)


class FakeConsumer:
    def __init__(self, records_per_partition: int, partitions: int = 2, topic: str = TOPIC):
        self.topic = topic
        self.log = {TopicPartition(topic, p): [Rec(topic, p, o, f"k{p}-{o}".encode(), f"v{p}-{o}".encode())
                                               for o in range(records_per_partition)] for p in range(partitions)}
        self.position = {tp: 0 for tp in self.log}
        self.assigned: set[TopicPartition] = set()
        self.paused_tps: set[TopicPartition] = set()
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.listener = None
        self.rebalances: list[Rebalance] = []  # applied one per poll, in order
        self.polls: list[int] = []  # timeout_ms of every poll
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.closed_with_autocommit: bool | None = None
        self.calls: list[str] = []  # the order of metadata and group calls (partitions_for_topic, subscribe, topics)

    # --- what StageRunner calls ----------------------------------------------------------------
    def partitions_for_topic(self, topic: str) -> set[int]:
        self.calls.append("partitions_for_topic")
        return {tp.partition for tp in self.log if tp.topic == topic}

    def subscribe(self, topics, listener=None) -> None:
        self.calls.append("subscribe")
        self.listener = listener

    def topics(self) -> set[str]:
        self.calls.append("topics")
        return {self.topic}

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        self.polls.append(timeout_ms)
        if not self.assigned and self.listener is not None and not self.rebalances:
            self._assign(set(self.log))  # the first join
        if self.rebalances:
            rb = self.rebalances.pop(0)
            self.assigned -= rb.revoke
            self.paused_tps -= rb.revoke
            self.listener.on_partitions_revoked(rb.revoke)
            self._assign(self.assigned | rb.assign_again)
        out: dict[TopicPartition, list[Rec]] = {}
        budget = max_records if max_records is not None else 10**9
        for tp in sorted(self.assigned):
            if tp in self.paused_tps or budget <= 0:
                continue
            recs = self.log[tp][self.position[tp]:self.position[tp] + budget]
            if recs:
                out[tp] = recs
                self.position[tp] += len(recs)
                budget -= len(recs)
        return out

    def _assign(self, tps: set[TopicPartition]) -> None:
        self.assigned = set(tps)
        self.listener.on_partitions_assigned(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position[tp] = offset

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def close(self, autocommit: bool = True) -> None:
        self.closed_with_autocommit = autocommit

    # --- what a sink calls ---------------------------------------------------------------------------
    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, om in offsets.items():
            self.committed_offsets[tp] = om.offset

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)


class FakeSink(Sink):
    """Writes a batch "durably" into ``written`` and commits its offsets, as a real sink does;
    ``fail`` says how many writes to refuse first with SinkUnavailable."""

    def __init__(self, fail: int = 0, on_write=None):
        self.fail = fail
        self.on_write = on_write  # called with (consumer, batch) at every write attempt
        self.written: list[Batch] = []
        self.attempts: list[Batch] = []
        self.paused_at_attempt: list[set[TopicPartition]] = []
        self.durable_calls: list[Batch] = []
        self.ready_calls = 0
        self.closed = False

    def write(self, consumer: FakeConsumer, batch: Batch) -> None:
        self.attempts.append(batch)
        self.paused_at_attempt.append(consumer.paused())
        if self.on_write is not None:
            self.on_write(consumer, batch)
        if self.fail:
            self.fail -= 1
            raise SinkUnavailable("down (test)")
        self.written.append(batch)
        consumer.commit(batch.offsets())

    def commit_durable(self, consumer, batch: Batch) -> None:
        self.durable_calls.append(batch)

    def commit_ready(self, consumer) -> None:
        self.ready_calls += 1

    def close(self) -> None:
        self.closed = True

    def written_keys(self) -> list[bytes]:
        return [r.key for b in self.written for r, _o in b.outputs]


class Echo:
    """A one-batch stage: every record becomes an Out with its key and value."""

    name = "unit"

    def __init__(self):
        self.closed = False

    def process(self, record: Rec) -> Out:
        return Out(record.key, record.value)

    def close(self) -> None:
        self.closed = True


class TwoPhaseEcho(Echo):
    """A two-phase stage: ``submit`` hands back a numbered handle; ``collect`` echoes the records."""

    def __init__(self):
        super().__init__()
        self.submitted: dict[int, list[Rec]] = {}
        self.collected: list[int] = []
        self.abandoned: list[int] = []

    def submit(self, records: list[Rec]) -> int:
        handle = len(self.submitted)
        self.submitted[handle] = list(records)
        return handle

    def collect(self, handle: int) -> list[Out]:
        self.collected.append(handle)
        return [self.process(r) for r in self.submitted[handle]]

    def abandon(self, handle: int) -> None:
        self.abandoned.append(handle)
