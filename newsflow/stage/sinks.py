"""Where a stage's batch goes: the ``Sink`` Protocol, and Kafka transactions that recover from a broker
restart (``KafkaTransactions``), used by the Kafka -> Kafka stages (``TransactionalKafkaSink``), by
the poller (one transaction per batch, no consumed offsets) and by ``newsflow dlq replay`` alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, ProducerFencedError

from newsflow.kafka_io import make_producer
from newsflow.settings import Settings
from newsflow.stage.deadletters import send_dead_letters
from newsflow.stage.outcomes import Batch, SinkUnavailable

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the runner writes a batch. Subclass it to get the optional hooks' no-op defaults."""

    # A sink that works in the background keeps its own heartbeat (monotonic seconds), read by /healthz.
    last_progress: float | None = None

    def write(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Make the batch durable, then commit its offsets. Raise SinkUnavailable to be retried."""
        ...

    def commit_durable(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Called after SinkUnavailable, before the runner polls (where partitions can be revoked):
        commit the offsets of what of ``batch`` is already durable (Elasticsearch bulk items)."""

    def commit_ready(self, consumer: KafkaConsumer) -> None:
        """Called before every poll: commit what has become durable in the background, without waiting."""

    def flush(self, consumer: KafkaConsumer) -> None:
        """Make everything written so far durable and committed, waiting for it (a job's last batch)."""

    def close(self) -> None: ...


class _TransactionStuck(KafkaError):
    """A transactional request that the coordinator never answered."""


class KafkaTransactions:
    """One transactional producer; ``transact`` writes and commits consumed offsets in one transaction.

    Commit order: begin transaction, send (``write``), add the consumed offsets to the transaction (with
    the consumer's group metadata, so a zombie is fenced), commit the transaction. Either all of it
    becomes visible to ``read_committed`` readers, or none of it.

    A broker restart can leave kafka-python 3.0.12 waiting forever on a transactional request (its
    ``send_offsets_to_transaction``/``commit_transaction`` wait without a timeout), or fence the
    producer after the coordinator aborted a transaction that timed out. Either way it waits at most
    ``TXN_WAIT_S`` per step, then replaces the producer: ``init_transactions`` with the same
    transactional id aborts the open transaction on the coordinator, and the caller writes the same
    batch again (``SinkUnavailable``). If the lost request was in fact the commit and it went
    through, the group's committed offsets already cover the batch: it is not written twice. A
    second fencing within ``FENCE_WINDOW_S`` means another live producer has this id (a zombie or a
    twin instance): that is fatal, the stage exits. With ``renew_when_fenced=False`` (``dlq replay``,
    whose id is fenced on purpose by the next replay) the first fencing is fatal.
    """

    # 10 s: a transaction coordinator that died with its broker is replaced (KRaft moves its partition
    # within the broker session timeout, 9 s) before a stage stands still through a short outage; a
    # replacement costs one batch written again (the committed offsets prevent duplicates).
    TXN_WAIT_S = 10.0
    FENCE_WINDOW_S = 120.0

    def __init__(self, settings: Settings, stage: str, transactional_id: str, *, renew_when_fenced: bool = True,
                 wait_s: float | None = None):
        if wait_s is not None:
            self.TXN_WAIT_S = wait_s
        self.settings = settings
        self.stage = stage
        self.transactional_id = transactional_id
        self.renew_when_fenced = renew_when_fenced
        self._last_renewal = float("-inf")
        self._renewed = False  # a producer was replaced: check the next batch is not committed already
        self.producer: KafkaProducer | None = None  # None: the replacement could not start yet
        self._start_producer()

    def _start_producer(self) -> None:
        producer = make_producer(self.settings, transactional_id=self.transactional_id)
        producer.init_transactions()
        self.producer = producer

    def _await(self, result: Any, what: str) -> None:
        # kafka-python's own wrappers (send_offsets_to_transaction, commit_transaction) wait forever.
        self.producer._sender.wakeup()
        if not result.wait(timeout_ms=int(self.TXN_WAIT_S * 1000)):
            raise _TransactionStuck(f"{what}: no answer from the transaction coordinator in {self.TXN_WAIT_S:g}s")

    def await_acks(self, producer: KafkaProducer) -> None:
        """Flush inside a transaction (for a ``write`` that must know what was acknowledged before it goes
        on), waiting at most ``TXN_WAIT_S``: after a broker restart kafka-python 3.0.12 can hold a
        transaction's records unsent until their delivery timeout; the producer is then replaced."""
        try:
            producer.flush(timeout=self.TXN_WAIT_S)
        except KafkaTimeoutError as exc:
            raise _TransactionStuck(f"flush: records not acknowledged in {self.TXN_WAIT_S:g}s") from exc

    def transact(self, consumer: KafkaConsumer | None, offsets: dict[TopicPartition, OffsetAndMetadata],
                 write: Callable[[KafkaProducer], None], group_metadata: Any = None) -> bool:
        """``write(producer)`` and commit ``offsets`` in one transaction (``group_metadata`` defaults to
        the consumer's). Returns False when a lost transaction had committed them already (nothing
        written). Raises SinkUnavailable when nothing was committed: the caller tries again.

        Without offsets (a producer that consumes nothing: the poller) a lost commit cannot be looked
        up afterwards: it counts as not committed, and what it wrote may be written once more."""
        if self.producer is None:
            self._start_replacement()
        if self._renewed and offsets:
            committed = self._already_committed(consumer, offsets)  # unknown: raises, asked again next time
            self._renewed = False
            if committed:
                log.warning("%s: the transaction that was lost in flight had committed this batch", self.stage)
                return False
        p = self.producer
        try:
            p.begin_transaction()
            write(p)
            tm = p._transaction_manager
            if offsets:
                group = consumer.group_metadata() if group_metadata is None else group_metadata
                self._await(tm.send_offsets_to_transaction(offsets, group), "offsets")
            self._await(tm.begin_commit(), "commit")
        except (ProducerFencedError, _TransactionStuck) as exc:
            self._renew(exc)
            raise SinkUnavailable(f"kafka transaction not committed, producer replaced: {exc!r}") from exc
        except KafkaError as exc:
            try:
                p.abort_transaction()
            except KafkaError as abort_exc:
                log.warning("abort_transaction failed: %s", abort_exc)
            raise SinkUnavailable(f"kafka transaction failed: {exc!r}") from exc
        except BaseException:  # a bug in ``write``, or interrupted: nothing of it is committed
            try:
                p.abort_transaction()
            except KafkaError as abort_exc:
                log.warning("abort_transaction failed: %s", abort_exc)
            raise
        return True

    def transact_retrying(self, consumer: KafkaConsumer | None, offsets: dict[TopicPartition, OffsetAndMetadata],
                          write: Callable[[KafkaProducer], None], *, tries: int, delay_s: float,
                          group_metadata: Any = None, wait: Callable[[float], Any] = time.sleep,
                          max_delay_s: float = 30.0) -> bool:
        """``transact``, tried again after a ``SinkUnavailable`` (broker away, answer lost, producer
        replaced) up to ``tries`` times, the delay doubling from ``delay_s``. ``wait`` returning a true
        value (a set ``threading.Event``'s ``wait``: stopping) ends the tries early. The last
        ``SinkUnavailable`` is raised."""
        for attempt in range(1, tries + 1):
            try:
                return self.transact(consumer, offsets, write, group_metadata)
            except SinkUnavailable as exc:
                if attempt == tries:
                    raise
                log.warning("%s: transaction not committed (attempt %d of %d), trying again in %.1fs: %s",
                            self.stage, attempt, tries, delay_s, exc)
                if wait(delay_s):
                    raise
                delay_s = min(delay_s * 2, max_delay_s)
        raise AssertionError("unreachable: tries >= 1")

    def _renew(self, cause: BaseException) -> None:
        now = time.monotonic()
        fenced = isinstance(cause, ProducerFencedError)
        if fenced and (not self.renew_when_fenced or now - self._last_renewal < self.FENCE_WINDOW_S):
            raise cause  # fenced again: another live producer owns this transactional id
        log.warning("%s: replacing the transactional producer (%r); the open transaction is aborted and "
                    "the batch written again", self.stage, cause)
        self._last_renewal = now
        self._renewed = True
        old, self.producer = self.producer, None
        try:
            old.close(timeout=0)
        except Exception as exc:  # noqa: BLE001 - the old producer is being thrown away
            log.warning("closing the old producer: %r", exc)
        self._start_replacement()

    def _start_replacement(self) -> None:
        try:
            self._start_producer()
        except KafkaError as exc:  # the broker may still be away: the next write tries again
            raise SinkUnavailable(f"new transactional producer not ready: {exc!r}") from exc

    @staticmethod
    def _already_committed(consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
        """True when the group's committed offsets cover the whole batch (transactions are atomic, so a
        batch is either all committed or not at all)."""
        try:
            return all((consumer.committed(tp) or 0) >= om.offset for tp, om in offsets.items())
        except KafkaError as exc:
            raise SinkUnavailable(f"committed offsets unknown: {exc!r}") from exc

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=10)


class TransactionalKafkaSink(KafkaTransactions, Sink):
    """Kafka -> Kafka, exactly once: outputs, dead letters and the consumed offsets are one transaction
    (``KafkaTransactions``: commit order and recovery)."""

    def __init__(self, settings: Settings, stage: str, topic: str, transactional_id: str):
        self.topic = topic
        super().__init__(settings, stage, transactional_id)

    def write(self, consumer: KafkaConsumer, batch: Batch) -> None:
        def send(p: KafkaProducer) -> None:
            for _rec, out in batch.outputs:
                p.send(self.topic, key=out.key, value=out.value, headers=list(out.headers))
            send_dead_letters(p, self.settings.topic_dlq, self.stage, batch.dead)

        self.transact(consumer, batch.offsets(), send)
