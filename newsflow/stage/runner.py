"""The one stage runner: consume loop, batching, retries, dead letters, commits and shutdown.

A stage is a small object with a pure transform (``Stage``); what ``process`` may return or raise is
in ``newsflow.stage.outcomes`` (any exception but ``Drop``/``Quarantine`` is retried in-process up to
``max_attempts``, counting the ``nf-attempts`` of replayed records, then dead-lettered). Where the
output goes, and in which order it becomes durable, is the sink's job (``newsflow.stage.sinks``). A
sink that cannot take the batch raises ``SinkUnavailable``: the runner pauses its partitions, keeps
the batch, backs off (still polling, so the consumer stays in its group) and retries.

**One batch ahead (two-phase stages).** A stage whose work runs elsewhere (the processor's
extraction pool) implements ``TwoPhaseStage``: ``submit(records) -> handle``, ``collect(handle) ->
outcomes`` (one per record, in order: an ``Out``, None, or the exception ``process`` would have
raised) and ``abandon(handle)`` (never to be collected: free the workers). Each step, in this order:

1. poll batch N+1;
2. submit batch N+1 (it queues behind batch N's remaining work);
3. collect batch N, route its outcomes (drops, dead letters; a retry queues behind batch N+1);
4. hand over batch N: its outputs and the offsets of its own records only, in one transaction.

Rebalance safety: a poll that revokes partitions (step 1, or a back-pressure poll in step 4) gives
up the records of those partitions in both batches, N and N+1, and rewinds a partition that came
back to this consumer to the first record given up (``_take_revoked``). A one-batch stage does the
same with its batch when a back-pressure poll revokes partitions.

So nothing is committed ahead of its write: batch N+1's offsets are committed only with its own
outputs, after batch N's. If batch N is not written (given up on shutdown, or an error), batch N+1
is abandoned; on stop the runner finishes the step under way and abandons the batch ahead,
uncommitted, so the partitions' next owner reads it again. ``step()`` returns the number of records
it handed over (or gave up). Other stages run one batch at a time: poll, transform, hand over.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow import metrics
from newsflow.kafka_io import make_consumer, subscribe_known
from newsflow.liveness import stall_after_s
from newsflow.logs import article_context, record_article_id
from newsflow.settings import Settings
from newsflow.stage.deadletters import attempts_so_far
from newsflow.stage.outcomes import Batch, DeadLetter, Drop, Out, Quarantine, SinkUnavailable, Stage, TwoPhaseStage
from newsflow.stage.sinks import Sink

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.revoked: set[TopicPartition] = set()
        self.joined = False  # holds an assignment (False before the first join and during a rebalance)

    def on_partitions_revoked(self, revoked):
        # Called inside poll(), i.e. between batches or while a batch waits on back-pressure.
        # Everything delivered before has been committed already (a write commits), so the only
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
        subscribe_known(self.consumer, source, self._rebalance)  # the first join sees the topic's partitions
        self.paused = False
        self.last_progress = time.monotonic()  # main-loop heartbeat, read by /healthz
        self._two_phase = stage if isinstance(stage, TwoPhaseStage) else None  # one batch ahead: module docstring
        self._ahead: _Ahead | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def progress_age(self) -> float:
        """Seconds since the main loop (or the sink, if it keeps a ``last_progress`` heartbeat) last
        made progress; /healthz compares it with ``newsflow.liveness.stall_after_s``."""
        sink_beat = self.sink.last_progress
        latest = self.last_progress if sink_beat is None else max(self.last_progress, sink_beat)
        return time.monotonic() - latest

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def pending(self) -> bool:
        """A batch was polled and submitted but not handed over yet (two-phase stages)."""
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
                self.stage.close()

    # --- one batch ---------------------------------------------------------------------------
    def poll(self) -> list[ConsumerRecord]:
        size = self.settings.batch_size
        if self.max_records is not None:
            size = min(size, self.max_records())
            if size <= 0:
                return []
        polled = self.consumer.poll(timeout_ms=self.settings.batch_wait_ms, max_records=size)
        return [r for recs in polled.values() for r in recs]

    def _mark_progress(self) -> None:
        """Progress only while the consumer holds partitions: one left out of its group (kafka-python 3.0.12
        once polled so for 18 min after a rebalance it never completed) fails /healthz after ``stall_after_s``."""
        if self.consumer.assignment():
            self.last_progress = time.monotonic()

    def step(self) -> int:
        """Poll one batch, transform it, hand it over. Returns the number of records consumed.
        A two-phase stage hands over the batch polled the step before (``_step_ahead``)."""
        self._mark_progress()
        # A sink that writes in the background commits what became durable before each poll
        # (where partitions can be revoked) and when the stream is idle.
        self.sink.commit_ready(self.consumer)
        records = self.poll()
        if self._two_phase is not None:
            return self._step_ahead(self._two_phase, records)
        if not records:
            return 0
        self._rebalance.revoked.clear()
        started = time.monotonic()
        metrics.RECORDS_IN.labels(self.stage.name).inc(len(records))
        batch = self.transform(records)
        self.hand_over(batch)
        metrics.BATCH_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)
        return len(records)

    def _step_ahead(self, stage: TwoPhaseStage, records: list[ConsumerRecord]) -> int:
        """Submit the batch just polled, then collect and hand over the one submitted the step before.
        Returns the number of records of the batch handed over (0 when none was in flight)."""
        current, self._ahead = self._ahead, None
        revoked = self._take_revoked([*(current.records if current else ()), *records])
        if revoked:  # the poll revoked partitions: their records, in both batches, are read again
            records = [r for r in records if TopicPartition(r.topic, r.partition) not in revoked]
            if current is not None:
                current.revoked |= revoked
        if records:
            metrics.RECORDS_IN.labels(self.stage.name).inc(len(records))
            self._ahead = _Ahead(records, stage.submit(records))
        if current is None:
            return 0
        started = time.monotonic()
        batch = self.transform(current.records, stage.collect(current.handle)).without(current.revoked)
        if not self.hand_over(batch):
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
        if self._ahead is None or self._two_phase is None:
            return
        ahead, self._ahead = self._ahead, None
        self._two_phase.abandon(ahead.handle)
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
            metrics.RECORDS_DROPPED.labels(name, "filtered").inc()
        elif isinstance(result, Drop):
            metrics.RECORDS_DROPPED.labels(name, result.reason).inc()
            log.info("dropped %s@%s: %s", rec.topic, rec.offset, result.reason)
        elif isinstance(result, Quarantine):
            batch.dead.append(DeadLetter(rec, result.reason, result.message, attempts_so_far(rec) + 1))
        elif isinstance(result, _Exhausted):
            exc = result.error
            batch.dead.append(DeadLetter(rec, type(exc).__name__, str(exc) or repr(exc), result.attempts))
        else:  # pragma: no cover - a stage bug: process() returned something else
            batch.dead.append(DeadLetter(rec, "bad_stage_output", repr(result)[:200], attempts_so_far(rec) + 1))

    def hand_over(self, batch: Batch) -> bool:
        """Write the batch through the sink; on SinkUnavailable pause, back off, retry. Never spins.
        Returns False when it gave the batch up on shutdown (nothing of it committed)."""
        delay = 0.5
        waited = 0.0
        while True:
            self.last_progress = time.monotonic()  # waiting on back-pressure is alive, not stuck
            if not batch.records:
                break
            try:
                self.sink.write(self.consumer, batch)
                break
            except SinkUnavailable as exc:
                metrics.SINK_UNAVAILABLE.labels(self.stage.name).inc()
                if self._stop.is_set() and waited >= self.settings.shutdown_timeout_s:
                    log.warning("%s: giving up the in-flight batch on shutdown (not committed): %s",
                                self.stage.name, exc)
                    return False
                # Rebalance safety: a revocation can only happen inside poll(), so commit what the
                # sink already made durable of this batch before polling.
                self.sink.commit_durable(self.consumer, batch)
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
    revoked: set[TopicPartition] = field(default_factory=set)  # since it was polled: not to write


@dataclass
class _Exhausted:
    error: BaseException
    attempts: int
