"""The one stage runner: consume loop, batching, retries, dead letters, commits and shutdown.

A stage is a small object with a pure transform::

    class Stage(Protocol):
        name: str
        def process(self, record: ConsumerRecord) -> Out | None: ...

There are exactly three ways out of ``process`` besides returning an ``Out``:

* ``raise Drop(reason)``        the record is not worth keeping; counted by reason;
* ``raise Quarantine(reason)``  it can never succeed; sent to the dead-letter topic with the reason;
* any other exception           retried in-process up to ``max_attempts`` (counting the
                                ``nf-attempts`` header of replayed records), then dead-lettered.

A stage may also define ``close()`` (to release e.g. a worker pool): the runner calls it on
shutdown, after closing the sink. Drop and Quarantine survive pickling, so a stage may raise them
in worker processes and hand them back (a two-phase stage's ``collect``, below).

Where the output goes, and in which order the work becomes durable, is the sink's job
(``TransactionalKafkaSink`` here, ``ElasticsearchSink`` in ``processors/indexer.py``).
A sink that cannot accept the batch raises ``SinkUnavailable``: the runner pauses its partitions,
keeps the batch, backs off (still polling, so the consumer stays in its group) and retries.

**One batch ahead (two-phase stages).** A stage whose work runs elsewhere (the processor's
extraction pool) may offer ``submit(records) -> handle``, ``collect(handle) -> outcomes`` (one per
record, in order: an ``Out``, None, or the exception ``process`` would have raised) and
``abandon(handle)`` (the outcomes will never be collected: free the workers). The runner then keeps the workers busy while a batch is delivered.
Each step, in this order:

1. poll batch N+1;
2. submit batch N+1 (it queues behind batch N's remaining work);
3. collect batch N, route its outcomes (drops, dead letters; a retry queues behind batch N+1);
4. deliver batch N: its outputs and the offsets of its own records only, in one transaction.

Rebalance safety: a poll that revokes partitions (step 1, or a back-pressure poll in step 4) gives
up the records of those partitions in both batches, N and N+1, and rewinds a partition that came
back to this consumer to the first record given up (``_take_revoked``). A one-batch stage does the
same with its batch when a back-pressure poll revokes partitions.

So at most one batch is in flight ahead, and nothing is committed ahead of delivery: batch N+1's
offsets are committed only with batch N+1's outputs, after batch N's. If batch N is not delivered
(given up on shutdown, or an error), batch N+1 is abandoned, never delivered; on stop the runner
finishes the step under way and abandons the batch ahead, uncommitted, so the partitions' next
owner reads it again. ``step()`` returns the number of records it delivered (or gave up). Stages
without ``submit`` run one batch at a time: poll, transform, deliver.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, ProducerFencedError

from newsflow import metrics
from newsflow.kafka_io import await_partitions, make_consumer, make_producer
from newsflow.liveness import stall_after_s
from newsflow.logs import article_context, record_article_id
from newsflow.settings import Settings

log = logging.getLogger(__name__)

H_STAGE = "nf-stage"
H_ERROR_CLASS = "nf-error-class"
H_ERROR = "nf-error"
H_TOPIC = "nf-topic"
H_PARTITION = "nf-partition"
H_OFFSET = "nf-offset"
H_ATTEMPTS = "nf-attempts"
_NF_HEADERS = {H_STAGE, H_ERROR_CLASS, H_ERROR, H_TOPIC, H_PARTITION, H_OFFSET, H_ATTEMPTS}
_MAX_ERROR_BYTES = 2000


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


@dataclass
class Batch:
    records: list[ConsumerRecord]
    outputs: list[tuple[ConsumerRecord, Out]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    dropped: int = 0

    def offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Next offset to consume per partition: what to commit once the batch is durable."""
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in out or out[tp].offset <= r.offset:
                out[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
        return out

    def without(self, revoked: set[TopicPartition]) -> Batch:
        def keep(r: ConsumerRecord) -> bool:
            return TopicPartition(r.topic, r.partition) not in revoked

        return Batch(
            records=[r for r in self.records if keep(r)],
            outputs=[(r, o) for r, o in self.outputs if keep(r)],
            dead=[d for d in self.dead if keep(d.record)],
            dropped=self.dropped,
        )


class Stage(Protocol):
    name: str

    def process(self, record: ConsumerRecord) -> Out | None: ...


class Sink(Protocol):
    def deliver(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Make the batch durable, then commit its offsets. Raise SinkUnavailable to be retried.

        A sink that can make part of a batch durable (Elasticsearch bulk items) may also define
        ``commit_durable(consumer, batch)``: the runner calls it after SinkUnavailable, before it
        polls (where partitions can be revoked), to commit the offsets of what is already durable.
        A sink that writes in the background may define ``commit_ready(consumer)``: called before
        every poll, it commits what has become durable without waiting.
        """

    def close(self) -> None: ...


def header(record: ConsumerRecord, name: str) -> bytes | None:
    for k, v in record.headers or ():
        if k == name:
            return v
    return None


def attempts_so_far(record: ConsumerRecord) -> int:
    raw = header(record, H_ATTEMPTS)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


def dead_letter_headers(stage: str, dead: DeadLetter) -> list[tuple[str, bytes]]:
    r = dead.record
    kept = [(k, v) for k, v in (r.headers or ()) if k not in _NF_HEADERS]
    return kept + [
        (H_STAGE, stage.encode()),
        (H_ERROR_CLASS, dead.reason.encode()),
        (H_ERROR, dead.message.encode("utf-8", "replace")[:_MAX_ERROR_BYTES]),
        (H_TOPIC, r.topic.encode()),
        (H_PARTITION, str(r.partition).encode()),
        (H_OFFSET, str(r.offset).encode()),
        (H_ATTEMPTS, str(dead.attempts).encode()),
    ]


def send_dead_letters(producer: KafkaProducer, topic: str, stage: str, dead: Sequence[DeadLetter]) -> list[Any]:
    """Send (not flush) the dead letters; returns the send futures for callers that must know."""
    futures = []
    for d in dead:
        futures.append(producer.send(topic, key=d.record.key, value=d.record.value or b"",
                                     headers=dead_letter_headers(stage, d)))
        metrics.DEAD_LETTERS.labels(stage, d.reason).inc()
        log.warning(
            "dead-lettered %s/%s@%s: %s: %s",
            d.record.topic, d.record.partition, d.record.offset, d.reason, d.message[:300],
            extra={"article_id": (d.record.key or b"").decode("ascii", "replace"), "stage": stage},
        )
    return futures


class TransactionalKafkaSink:
    """Kafka -> Kafka, exactly once: outputs, dead letters and the consumed offsets are one transaction.

    Commit order: begin transaction, send outputs and dead letters, add the consumed offsets to the
    transaction (with the consumer's group metadata, so a zombie is fenced), commit the transaction.
    Either all of it becomes visible to ``read_committed`` readers, or none of it.

    A broker restart can leave kafka-python 3.0.12 waiting forever on a transactional request (its
    ``send_offsets_to_transaction``/``commit_transaction`` wait without a timeout), or fence the
    producer after the coordinator aborted a transaction that timed out. Either way the sink waits at
    most ``TXN_WAIT_S`` per step, then replaces the producer: ``init_transactions`` with the same
    transactional id aborts the open transaction on the coordinator, and the runner delivers the
    same batch again (``SinkUnavailable``). If the lost request was in fact the commit and it went
    through, the group's committed offsets already cover the batch: it is not delivered twice. A
    second fencing within ``FENCE_WINDOW_S`` means another live producer has this id (a zombie or a
    twin instance): that is fatal, the stage exits.
    """

    TXN_WAIT_S = 60.0
    FENCE_WINDOW_S = 120.0

    def __init__(self, settings: Settings, stage: str, topic: str, transactional_id: str):
        self.settings = settings
        self.stage = stage
        self.topic = topic
        self.transactional_id = transactional_id
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

    def deliver(self, consumer: KafkaConsumer, batch: Batch) -> None:
        if self.producer is None:
            self._start_replacement()
        if self._renewed:
            committed = self._already_committed(consumer, batch)  # unknown: raises, asked again next time
            self._renewed = False
            if committed:
                log.warning("%s: the transaction that was lost in flight had committed this batch", self.stage)
                return
        p = self.producer
        try:
            p.begin_transaction()
            for _rec, out in batch.outputs:
                p.send(self.topic, key=out.key, value=out.value, headers=list(out.headers))
            send_dead_letters(p, self.settings.topic_dlq, self.stage, batch.dead)
            tm = p._transaction_manager
            self._await(tm.send_offsets_to_transaction(batch.offsets(), consumer.group_metadata()), "offsets")
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

    def _renew(self, cause: BaseException) -> None:
        now = time.monotonic()
        if isinstance(cause, ProducerFencedError) and now - self._last_renewal < self.FENCE_WINDOW_S:
            raise cause  # fenced again: another live producer owns this transactional id
        log.warning("%s: replacing the transactional producer (%r); the open transaction is aborted and "
                    "the batch delivered again", self.stage, cause)
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
        except KafkaError as exc:  # the broker may still be away: the next delivery tries again
            raise SinkUnavailable(f"new transactional producer not ready: {exc!r}") from exc

    @staticmethod
    def _already_committed(consumer: KafkaConsumer, batch: Batch) -> bool:
        """True when the group's committed offsets cover the whole batch (transactions are atomic, so a
        batch is either all committed or not at all)."""
        try:
            return all((consumer.committed(tp) or 0) >= om.offset for tp, om in batch.offsets().items())
        except KafkaError as exc:
            raise SinkUnavailable(f"committed offsets unknown: {exc!r}") from exc

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=10)


class _TransactionStuck(KafkaError):
    """A transactional request that the coordinator never answered."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.revoked: set[TopicPartition] = set()
        self.joined = False  # holds an assignment (False before the first join and during a rebalance)

    def on_partitions_revoked(self, revoked):
        # Called inside poll(), i.e. between batches or while a batch waits on back-pressure.
        # Everything delivered before has been committed already (deliver commits), so the only
        # work to give up is the pending batch's records of these partitions (and the batch
        # ahead's, for a two-phase stage): the new owner re-reads them from the committed offset.
        self.revoked |= set(revoked)
        self.joined = False
        log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))

    def on_partitions_assigned(self, assigned):
        self.joined = True
        log.info("partitions assigned: %s", sorted(str(tp) for tp in assigned))


class StageRunner:
    """Runs one stage until ``stop()`` or SIGTERM/SIGINT. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        stage: Stage,
        *,
        source: str,
        group: str,
        sink: Sink,
        consumer: KafkaConsumer | None = None,
        max_records: Callable[[], int] | None = None,
    ):
        self.settings = settings
        # Records the next poll may take (at most batch_size; 0 = do not poll): a job that must not
        # consume past a limit (``newsflow reprocess --limit``) says how many it still wants.
        self.max_records = max_records
        self.stage = stage
        self.source = source
        self.sink = sink
        self._stop = threading.Event()
        self._rebalance = _Rebalance()
        self.group = group
        self.consumer = consumer or make_consumer(settings, group)
        await_partitions(self.consumer, source)  # join with the topic's partitions known, never before
        self.consumer.subscribe([source], listener=self._rebalance)
        self.paused = False
        self.last_progress = time.monotonic()  # main-loop heartbeat, read by /healthz
        self._two_phase = callable(getattr(stage, "submit", None))  # one batch ahead: module docstring
        self._ahead: _Ahead | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def progress_age(self) -> float:
        """Seconds since the main loop (or the sink, if it keeps a ``last_progress`` heartbeat) last
        made progress; /healthz compares it with ``newsflow.liveness.stall_after_s``."""
        sink_beat = getattr(self.sink, "last_progress", None)
        latest = self.last_progress if sink_beat is None else max(self.last_progress, sink_beat)
        return time.monotonic() - latest

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def pending(self) -> bool:
        """A batch was polled and submitted but not delivered yet (two-phase stages)."""
        return self._ahead is not None

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def serve(self, *, idle_exit_s: float | None = None) -> int:
        """CLI entry: handle SIGTERM/SIGINT, serve /metrics /healthz /readyz, run until stopped."""
        from newsflow.ops import stage_ops

        self.install_signal_handlers()
        with stage_ops(self.settings, self.stage.name, group=self.group, topics=[self.source],
                       progress_age=self.progress_age, stall_after_s=stall_after_s(self.settings, self.stage.name)):
            self.run(idle_exit_s=idle_exit_s)
        return 0

    def run(self, *, max_batches: int | None = None, idle_exit_s: float | None = None) -> None:
        """Loop until stopped. ``max_batches``/``idle_exit_s`` bound the loop (tests, reindex). Idle time
        counts only while the group has given this consumer its assignment: joining can take seconds."""
        done = 0
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                n = self.step()
                if n or self._ahead is not None or not self._rebalance.joined:
                    done += bool(n)
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                if max_batches is not None and done >= max_batches:
                    break
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._abandon_ahead()
            self.sink.close()
        finally:
            try:
                self.consumer.close(autocommit=False)
            finally:
                stage_close = getattr(self.stage, "close", None)
                if stage_close is not None:
                    stage_close()

    # --- one batch ---------------------------------------------------------------------------
    def poll(self) -> list[ConsumerRecord]:
        size = self.settings.batch_size
        if self.max_records is not None:
            size = min(size, self.max_records())
            if size <= 0:
                return []
        polled = self.consumer.poll(timeout_ms=self.settings.batch_wait_ms, max_records=size)
        return [r for recs in polled.values() for r in recs]

    def step(self) -> int:
        """Poll one batch, transform it, deliver it. Returns the number of records consumed.
        A two-phase stage delivers the batch polled the step before (``_step_ahead``)."""
        self.last_progress = time.monotonic()
        # A sink that writes in the background commits what became durable before each poll
        # (where partitions can be revoked) and when the stream is idle (optional sink hook).
        commit_ready = getattr(self.sink, "commit_ready", None)
        if commit_ready is not None:
            commit_ready(self.consumer)
        records = self.poll()
        if self._two_phase:
            return self._step_ahead(records)
        if not records:
            return 0
        self._rebalance.revoked.clear()
        started = time.monotonic()
        metrics.RECORDS_IN.labels(self.stage.name).inc(len(records))
        batch = self.transform(records)
        self.deliver(batch)
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)
        return len(records)

    def _step_ahead(self, records: list[ConsumerRecord]) -> int:
        """Submit the batch just polled, then collect and deliver the one submitted the step before.
        Returns the number of records of the batch delivered (0 when none was in flight)."""
        current, self._ahead = self._ahead, None
        revoked = self._take_revoked([*(current.records if current else ()), *records])
        if revoked:  # the poll revoked partitions: their records, in both batches, are read again
            records = [r for r in records if TopicPartition(r.topic, r.partition) not in revoked]
            if current is not None:
                current.revoked |= revoked
        if records:
            metrics.RECORDS_IN.labels(self.stage.name).inc(len(records))
            self._ahead = _Ahead(records, self.stage.submit(records))
        if current is None:
            return 0
        started = time.monotonic()
        batch = self.transform(current.records, self.stage.collect(current.handle)).without(current.revoked)
        if not self.deliver(batch):
            self._abandon_ahead()  # never commit batch N+1's offsets past an undelivered batch N
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)
        return len(current.records)

    def _take_revoked(self, undelivered: Sequence[ConsumerRecord]) -> set[TopicPartition]:
        """Right after a poll: the partitions it revoked. The caller gives up their records that are
        not delivered yet. A partition assigned to this consumer again keeps its position (kafka-python
        keeps it across a rebalance), so it is rewound to its first record given up and nothing of it
        is skipped. That can be below the committed offset when the sink committed a durable prefix
        (``commit_durable``); such a sink skips the records it already made durable."""
        revoked = set(self._rebalance.revoked)
        self._rebalance.revoked.clear()
        first: dict[TopicPartition, int] = {}
        for r in undelivered:
            tp = TopicPartition(r.topic, r.partition)
            if tp in revoked and r.offset < first.get(tp, r.offset + 1):
                first[tp] = r.offset
        held = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in held:
                self.consumer.seek(tp, offset)
        return revoked

    def _abandon_ahead(self) -> None:
        if self._ahead is None:
            return
        ahead, self._ahead = self._ahead, None
        self.stage.abandon(ahead.handle)
        log.info("%s: abandoned the batch ahead (%d records, not committed: read again by the next owner)",
                 self.stage.name, len(ahead.records))

    def transform(self, records: list[ConsumerRecord], first: Sequence[Any] | None = None) -> Batch:
        """Route each record's outcome; ``first`` is a batch's first outcomes, computed elsewhere (a
        two-phase stage's ``collect``). Failed ones are attempted again here."""
        batch = Batch(records=records)
        for i, rec in enumerate(records):
            with article_context(record_article_id(rec)):  # every log line about it carries article_id
                result = first[i] if first is not None else self._attempt(rec)
                if isinstance(result, BaseException) and not isinstance(result, (Drop, Quarantine)):
                    result = self._attempt(rec, already=1, last=result)
                self._route(batch, rec, result)
        return batch

    def _attempt(self, rec: ConsumerRecord, already: int = 0, last: BaseException | None = None):
        """Call ``process`` until it returns, drops, quarantines, or uses up its attempts."""
        previous = attempts_so_far(rec)
        tries = already
        while tries < self.settings.max_attempts:
            if tries:
                metrics.RETRIES.labels(self.stage.name).inc()
                time.sleep(min(0.1 * 2 ** (tries - 1), 2.0))
            tries += 1
            try:
                return self.stage.process(rec)
            except (Drop, Quarantine) as exc:
                return exc
            except Exception as exc:  # noqa: BLE001 - the third way out: retry, then dead-letter
                last = exc
                log.warning("%s failed on %s/%s@%s (attempt %d): %r",
                            self.stage.name, rec.topic, rec.partition, rec.offset, tries, exc)
        return _Exhausted(last, previous + tries)

    def _route(self, batch: Batch, rec: ConsumerRecord, result: Any) -> None:
        name = self.stage.name
        if isinstance(result, Out):
            batch.outputs.append((rec, result))
        elif result is None:
            batch.dropped += 1
            metrics.RECORDS_DROPPED.labels(name, "filtered").inc()
        elif isinstance(result, Drop):
            batch.dropped += 1
            metrics.RECORDS_DROPPED.labels(name, result.reason).inc()
            log.info("dropped %s@%s: %s", rec.topic, rec.offset, result.reason)
        elif isinstance(result, Quarantine):
            batch.dead.append(DeadLetter(rec, result.reason, result.message, attempts_so_far(rec) + 1))
        elif isinstance(result, _Exhausted):
            exc = result.error
            batch.dead.append(DeadLetter(rec, type(exc).__name__, str(exc) or repr(exc), result.attempts))
        else:  # pragma: no cover - a stage bug: process() returned something else
            batch.dead.append(DeadLetter(rec, "bad_stage_output", repr(result)[:200], attempts_so_far(rec) + 1))

    def deliver(self, batch: Batch) -> bool:
        """Hand the batch to the sink; on SinkUnavailable pause, back off, retry. Never spins.
        Returns False when it gave the batch up on shutdown (nothing of it committed)."""
        delay = 0.5
        waited = 0.0
        while True:
            self.last_progress = time.monotonic()  # waiting on back-pressure is alive, not stuck
            if not batch.records:
                break
            try:
                self.sink.deliver(self.consumer, batch)
                break
            except SinkUnavailable as exc:
                metrics.SINK_UNAVAILABLE.labels(self.stage.name).inc()
                if self._stop.is_set() and waited >= self.settings.shutdown_timeout_s:
                    log.warning("%s: giving up the in-flight batch on shutdown (not committed): %s",
                                self.stage.name, exc)
                    return False
                # Rebalance safety: a revocation can only happen inside poll(), so commit what the
                # sink already made durable of this batch before polling (optional sink hook).
                commit_durable = getattr(self.sink, "commit_durable", None)
                if commit_durable is not None:
                    commit_durable(self.consumer, batch)
                if not self.paused:
                    log.warning("%s: sink unavailable, pausing partitions: %s", self.stage.name, exc)
                    self.consumer.pause(*self.consumer.assignment())
                    self.paused = True
                    metrics.PAUSED.labels(self.stage.name).set(1)
                # poll() on paused partitions returns nothing but keeps the group membership alive.
                # Partitions assigned meanwhile are not paused yet: rewind what they returned.
                for tp, recs in self.consumer.poll(timeout_ms=int(delay * 1000)).items():
                    self.consumer.seek(tp, recs[0].offset)
                ahead = self._ahead.records if self._ahead is not None else []
                revoked = self._take_revoked([*batch.records, *ahead])
                if revoked:  # given up, in this batch and the one ahead: read again by their owner
                    batch = batch.without(revoked)
                    if self._ahead is not None:
                        self._ahead.revoked |= revoked
                self.consumer.pause(*self.consumer.assignment())
                waited += delay
                delay = min(delay * 2, 30.0)
        out = len(batch.outputs)
        metrics.RECORDS_OUT.labels(self.stage.name).inc(out)
        if self.paused:
            self.consumer.resume(*self.consumer.paused())
            self.paused = False
            metrics.PAUSED.labels(self.stage.name).set(0)
            log.info("%s: sink is back, partitions resumed", self.stage.name)
        return True


@dataclass
class _Ahead:
    """A batch submitted to a two-phase stage, not collected yet."""

    records: list[ConsumerRecord]
    handle: Any
    revoked: set[TopicPartition] = field(default_factory=set)  # since it was polled: not to deliver


@dataclass
class _Exhausted:
    error: BaseException
    attempts: int
