"""Elasticsearch sink of the indexer stage (``Indexer`` in ``processors/index/indexer.py``).

Commit order (``ElasticsearchSink.write``), for one batch:

1. dead letters of the transform (records that are not valid Articles) are sent to
   ``articles.dlq`` and acknowledged by Kafka;
2. the documents are bulk-written with ``streaming_bulk``, chunked by count (``batch_size``) and
   bytes (``batch_bytes``). Per item: success or version conflict (duplicate) is durable; a mapping
   or parsing error is sent to ``articles.dlq`` with Elasticsearch's reason (and acknowledged) while
   the rest of the batch is indexed; rejections (429, 503, ...) are retried, only those items, with
   capped exponential backoff;
3. only then are the batch's offsets committed.

If step 2 cannot finish (Elasticsearch down, or still pushing back after ``es_bulk_max_retries``),
``SinkUnavailable`` goes to the shared runner, which calls ``commit_durable`` (per partition, the
offsets up to the first record that is neither acknowledged by Elasticsearch nor in the DLQ), then
pauses the partitions, backs off while polling (no busy loop, group membership kept) and writes
again; the sink remembers what is durable and re-sends only the rest. So committed offsets never
pass an unacknowledged record, nothing is lost, and since a revocation can only happen inside a
poll, which always follows ``commit_durable``, a rebalance hands the new owner exactly the records
that are not durable yet (rebalance-safe).

Under load (a full batch), steps 1-2 run in a background thread while the runner polls and
validates the next batch; step 3 for that batch happens when the next batch arrives (after its
write was started) or, at the latest, before the runner's next poll once the write is done
(``commit_ready``). The order per batch is unchanged: durable first, committed after. One batch at
most is pending; a write that failed in the background surfaces on the next write as
``SinkUnavailable`` (pause, commit its durable prefix, retry). A rebalance during that window can hand
the new owner the pending batch again: re-written as counted duplicates, never lost.

This is the sink's own "one batch ahead", beside the runner's (``TwoPhaseStage``, the processor's):
there the *transform* runs ahead and each batch is written and committed in order, one transaction
each; here the *write* runs ahead and a batch's commit follows it (``commit_ready``, ``flush``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Histogram

from newsflow import metrics
from newsflow.elastic import check_generation, current_generation, ensure_index, make_es
from newsflow.kafka_io import make_producer
from newsflow.liveness import DLQ_ACK_TIMEOUT_S
from newsflow.settings import Settings
from newsflow.stage.deadletters import attempts_so_far, send_dead_letters
from newsflow.stage.outcomes import Batch, DeadLetter, SinkUnavailable
from newsflow.stage.sinks import Sink
from processors.index.bulk import (
    INITIAL_BACKOFF_S, BulkItem, RecordKey, classify, durable_offsets, error_text, record_key,
)

log = logging.getLogger(__name__)

BULK_SECONDS = Histogram("newsflow_es_bulk_seconds", "Elasticsearch bulk call latency")
BULK_ITEMS = Counter("newsflow_es_items_total", "Bulk item outcomes", ["outcome"])
_ITEM_OUTCOMES = {o: BULK_ITEMS.labels(o) for o in ("ok", "duplicate", "permanent", "retry")}
# Of each bulk answer only what ``_account`` reads: a third of the JSON to decode per document.
_BULK_ANSWER = "items.*._id,items.*.status,items.*.error"

class ElasticsearchSink(Sink):
    """Elasticsearch bulk writer. Commit order and failure handling: see the module docstring.

    ``generation=None`` (the live indexer) writes to the generation the read alias points at and
    creates new monthly indices with the alias; a fixed ``generation`` (``newsflow reindex``)
    writes there and never touches the alias.
    """

    def __init__(
        self,
        settings: Settings,
        es: Elasticsearch | None = None,
        *,
        stage: str = "indexer",
        generation: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pipeline: bool = True,
    ):
        self.settings = settings
        self.es = es or make_es(settings)
        self.stage = stage
        self.generation = check_generation(settings.es_index, generation) if generation else None
        self._sleep = sleep
        self._producer = None
        self._known_indices: set[str] = set()
        self._done: set[RecordKey] = set()  # durable records of the batch being written
        self.counts: Tally[str] = Tally()  # indexed, duplicate, dead_letter, retried, commits, background
        # Pipelining: a full batch is written in the background while the runner polls and
        # validates the next one; it is committed when that next batch arrives, or before the
        # next poll once it is done (commit_ready). One batch at most is ever pending.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{stage}-bulk") if pipeline else None
        self._pending: Batch | None = None
        self._future: Future | None = None
        self._retry_at = 0.0
        self._retry_delay = 0.5
        self._consumer: KafkaConsumer | None = None
        # Progress heartbeat (monotonic), set on every Elasticsearch answer, also from the background
        # writer: a long batch of slow but answering bulk requests is progress (newsflow/liveness.py).
        self.last_progress = time.monotonic()

    @property
    def producer(self):
        if self._producer is None:
            self._producer = make_producer(self.settings)
        return self._producer

    # --- the Sink protocol ------------------------------------------------------------------
    def write(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Make ``batch`` durable and commit it; a full batch (the stream is behind) is written in
        the background and committed later, see ``finish_pending``. Raises SinkUnavailable, with nothing
        committed beyond what is durable, if this batch or the one before cannot be written."""
        self._consumer = consumer
        if self._writer is not None and len(batch.records) >= self.settings.batch_size:
            previous = self._pending
            self.finish_pending(consumer, commit=False)
            # Elasticsearch starts on this batch while the previous one is committed.
            self._pending, self._future = batch, self._writer.submit(self._make_durable, batch)
            self.counts["background"] += 1
            if previous is not None:
                assigned = consumer.assignment()
                try:
                    self._commit(consumer, {tp: o for tp, o in previous.offsets().items() if tp in assigned})
                except SinkUnavailable as exc:  # durable anyway; the next commit covers these partitions
                    log.warning("offset commit of a durable batch failed: %s", exc)
            return
        self.finish_pending(consumer)
        self._make_durable(batch)
        self._commit(consumer, batch.offsets())
        self._done.clear()

    def finish_pending(self, consumer: KafkaConsumer, *, commit: bool = True) -> None:
        """Wait for the batch written in the background (or write again what is not durable of it
        after a failure), then commit it (unless the caller does). Raises SinkUnavailable if it
        cannot be made durable."""
        if self._pending is None:
            return
        batch, future = self._pending, self._future
        self._future = None
        if future is not None:
            future.result()  # re-raises the write's SinkUnavailable; _pending stays for a retry
        else:
            self._make_durable(batch)
        if commit:
            assigned = consumer.assignment()  # a revoked partition's records are re-read by its new owner
            self._commit(consumer, {tp: o for tp, o in batch.offsets().items() if tp in assigned})
        self._pending = None
        self._done.clear()
        self._retry_delay = 0.5

    def commit_ready(self, consumer: KafkaConsumer) -> None:
        """Runner hook, before every poll (where partitions can be revoked): commit the background
        batch if its write is done, without waiting. A failed write is retried here too, with
        back-off, so that an idle stream does not leave it uncommitted; meanwhile its durable
        prefix is committed."""
        if self._pending is None or (self._future is not None and not self._future.done()):
            return
        if self._future is None and time.monotonic() < self._retry_at:
            return
        try:
            self.finish_pending(consumer)
        except SinkUnavailable as exc:
            log.warning("background batch not durable yet, retrying in %.1fs: %s", self._retry_delay, exc)
            self.commit_durable(consumer, self._pending)
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 30.0)

    def commit_durable(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Commit what is durable of a batch that could not be delivered whole (runner hook). With a
        background batch pending, only its durable part: the later batch has not been written."""
        offsets = durable_offsets(self._pending or batch, self._done)
        if offsets:
            try:
                self._commit(consumer, offsets)
            except SinkUnavailable as exc:  # the whole batch is retried anyway
                log.warning("could not commit the durable part of the batch: %s", exc)

    def flush(self, consumer: KafkaConsumer) -> None:
        """Make everything delivered so far durable and committed (reindex before its alias swap)."""
        self.finish_pending(consumer)

    def close(self) -> None:
        try:
            if self._pending is not None and self._consumer is not None:
                try:
                    self.finish_pending(self._consumer)
                except SinkUnavailable as exc:
                    log.warning("closing with a batch not durable, not committed (it will be re-read): %s", exc)
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            if self._producer is not None:
                self._producer.close(timeout=10)
            self.es.close()

    # --- internals ------------------------------------------------------------------------------
    def _make_durable(self, batch: Batch) -> None:
        """Dead letters of the transform, then the bulk write, then the DLQ for what Elasticsearch
        refused for good. Skips what is already durable; fills ``_done``."""
        self._dead_letter([d for d in batch.dead if record_key(d.record) not in self._done])
        items = [(r, o) for r, o in batch.outputs if record_key(r) not in self._done]
        if items:
            rejected: list[DeadLetter] = []
            try:
                self._write(items, rejected)
            finally:  # even if Elasticsearch went away mid-batch: these verdicts are final
                self._dead_letter(rejected)

    def _commit(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            consumer.commit(offsets)
            self.counts["commits"] += 1
        except CommitFailedError as exc:
            # Rebalanced away: the new owner re-reads from the last commit; writes are idempotent.
            log.warning("offset commit failed after a rebalance: %s", exc)
        except KafkaError as exc:
            raise SinkUnavailable(f"offset commit failed: {exc!r}") from exc

    def _dead_letter(self, dead: Sequence[DeadLetter]) -> None:
        """Send and wait for Kafka's acknowledgement; only then is a dead letter durable."""
        if not dead:
            return
        try:
            futures = send_dead_letters(self.producer, self.settings.topic_dlq, self.stage, dead)
            self.producer.flush(timeout=DLQ_ACK_TIMEOUT_S)
            for f in futures:
                f.get(timeout=DLQ_ACK_TIMEOUT_S)
        except KafkaError as exc:
            raise SinkUnavailable(f"dead-letter topic unavailable: {exc!r}") from exc
        self._done.update(record_key(d.record) for d in dead)
        self.counts["dead_letter"] += len(dead)

    def _prepare(self, items: Iterable[tuple[ConsumerRecord, BulkItem]]) -> str:
        """The generation to write to, with every monthly index the items need created."""
        alias = self.settings.es_index
        generation = self.generation or current_generation(self.es, alias)
        for index in sorted({f"{generation}-{it.month}" for _r, it in items} - self._known_indices):
            ensure_index(self.es, index, None if self.generation else alias)
            self._known_indices.add(index)
        return generation

    def _write(self, items: list[tuple[ConsumerRecord, BulkItem]], rejected: list[DeadLetter]) -> None:
        """Bulk-write ``items``; durable ones go to ``_done``, permanent failures to ``rejected``."""
        try:
            generation = self._prepare(items)
        except (TransportError, ApiError) as exc:
            raise SinkUnavailable(f"elasticsearch: {exc!r}") from exc
        pending = items
        last_error = ""
        for attempt in range(self.settings.es_bulk_max_retries + 1):
            if attempt:
                metrics.ES_BULK_RETRIES.inc(len(pending))
                self.counts["retried"] += len(pending)
                self._sleep(min(self.settings.es_bulk_max_backoff_s, INITIAL_BACKOFF_S * 2 ** (attempt - 1)))
            retry: list[tuple[ConsumerRecord, BulkItem]] = []
            stamp = datetime.now(UTC).isoformat().encode()
            started = time.monotonic()
            try:
                results = streaming_bulk(
                    self.es,
                    (it.action(generation, stamp) for _r, it in pending),
                    chunk_size=self.settings.batch_size,
                    max_chunk_bytes=self.settings.batch_bytes,
                    expand_action_callback=lambda action: action,
                    raise_on_error=False,
                    raise_on_exception=False,
                    max_retries=0,  # retries are ours: only the failed items, counted, capped backoff
                    filter_path=_BULK_ANSWER,
                )
                for (rec, it), (_ok, result) in zip(pending, results, strict=True):
                    self.last_progress = time.monotonic()
                    info = next(iter(result.values()))
                    if str(info.get("_id")) != it.doc_id:  # pragma: no cover - streaming_bulk keeps order
                        raise RuntimeError(f"bulk answer for {info.get('_id')} where {it.doc_id} was expected")
                    if self._account(rec, it, int(info.get("status", 500)), info.get("error"), generation, rejected):
                        retry.append((rec, it))
                        last_error = f"{info.get('status')} {error_text(info.get('error'))[1][:200]}"
            except (TransportError, ApiError) as exc:  # connection refused/timeout: ES is away
                raise SinkUnavailable(f"elasticsearch: {exc!r}") from exc
            finally:
                BULK_SECONDS.observe(time.monotonic() - started)
            if not retry:
                return
            pending = retry
        raise SinkUnavailable(f"elasticsearch still rejects {len(pending)} items after "
                              f"{self.settings.es_bulk_max_retries} retries (last: {last_error})")

    def _account(self, rec: ConsumerRecord, it: BulkItem, status: int, error: Any, generation: str,
                 rejected: list[DeadLetter]) -> bool:
        """Record one item's outcome; True if it must be retried."""
        outcome = classify(status, error)
        _ITEM_OUTCOMES[outcome].inc()
        if outcome == "ok":
            self._done.add(record_key(rec))
            self.counts["indexed"] += 1
            metrics.END_TO_END_SECONDS.observe(max(0.0, time.time() - it.fetched_at))
        elif outcome == "duplicate":
            self._done.add(record_key(rec))
            self.counts["duplicate"] += 1
        elif outcome == "permanent":
            reason, message = error_text(error)
            rejected.append(DeadLetter(rec, reason, message, attempts_so_far(rec) + 1))
        else:
            if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                self._known_indices.discard(f"{generation}-{it.month}")  # deleted under us: recreate
            return True
        return False
