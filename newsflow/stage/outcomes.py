"""A stage's contract (``Stage``, ``TwoPhaseStage``), what its transform gives back, and the batch the
runner hands to a sink.

There are exactly three ways out of a stage's ``process`` besides returning an ``Out``:

* ``raise Drop(reason)``        the record is not worth keeping; counted by reason;
* ``raise Quarantine(reason)``  it can never succeed; sent to the dead-letter topic with the reason;
* any other exception           retried in-process up to ``max_attempts``, then dead-lettered.

Pure: no Kafka client is imported here (``Batch.offsets`` builds kafka-python's offset tuples lazily),
so the extraction workers (``processors.pool``) raise ``Quarantine`` without loading the runner.
Drop and Quarantine survive pickling, so a stage may raise them in worker processes and hand them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kafka import OffsetAndMetadata, TopicPartition
    from kafka.consumer.fetcher import ConsumerRecord


class Drop(Exception):
    """Not worth keeping: counted under ``reason`` and committed past."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Quarantine(Exception):
    """Permanent failure: goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message or reason

    def __reduce__(self):  # keep reason/message across process boundaries (worker pools)
        return (type(self), (self.reason, self.message))


class SinkUnavailable(Exception):
    """The sink cannot take the batch now (outage, 429). Nothing of the batch was made durable
    that cannot be written again idempotently; the runner pauses and retries the whole batch."""


@dataclass(frozen=True)
class Out:
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class DeadLetter:
    record: ConsumerRecord
    reason: str
    message: str
    attempts: int


def partition_of(record: Any) -> tuple[str, int]:
    """(topic, partition) of a record; equal to kafka-python's ``TopicPartition`` (a named tuple)."""
    return (record.topic, record.partition)


@dataclass
class Batch:
    records: list[ConsumerRecord]
    outputs: list[tuple[ConsumerRecord, Out]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Next offset to consume per partition: what to commit once the batch is durable."""
        from kafka import OffsetAndMetadata, TopicPartition

        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in out or out[tp].offset <= r.offset:
                out[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
        return out

    def without(self, revoked: set[TopicPartition]) -> Batch:
        def keep(r: ConsumerRecord) -> bool:
            return partition_of(r) not in revoked

        return Batch(
            records=[r for r in self.records if keep(r)],
            outputs=[(r, o) for r, o in self.outputs if keep(r)],
            dead=[d for d in self.dead if keep(d.record)],
        )


class Stage(Protocol):
    name: str

    def process(self, record: ConsumerRecord) -> Out | None: ...

    def close(self) -> None:
        """Release what the stage holds (a worker pool); called on shutdown, after the sink is closed."""


@runtime_checkable
class TwoPhaseStage(Stage, Protocol):
    """A stage whose batches run elsewhere, one batch ahead (``newsflow.stage.runner``)."""

    def submit(self, records: list[ConsumerRecord]) -> Any: ...

    def collect(self, handle: Any) -> list[Any]: ...

    def abandon(self, handle: Any) -> None: ...
