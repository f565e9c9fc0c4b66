"""The indexer stage: ``articles.enriched`` -> Elasticsearch (monthly indices behind the read alias).

Writes are idempotent forever, without a search before a write:

* ``_id`` is sha256 of the canonical URL (``newsflow.schema.article_id``; a record whose id does
  not match its URL is dead-lettered);
* the index is ``<generation>-YYYY.MM`` of ``first_seen_at``, which never changes for a URL, so
  a re-delivery (even with an edited ``published_at`` in another month) hits the same document;
* ``version_type=external`` with ``processed_at`` in ms as the version: a re-processed article
  replaces the old one, an identical or older re-delivery is a 409, counted as a duplicate.

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
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Histogram

from newsflow import metrics
from newsflow.elastic import check_generation, current_generation, ensure_index, make_es, month_of
from newsflow.kafka_io import make_member_consumer, make_producer
from newsflow.liveness import DLQ_ACK_TIMEOUT_S
from newsflow.schema import Article, article_id
from newsflow.settings import Settings
from newsflow.stage.deadletters import attempts_so_far, send_dead_letters
from newsflow.stage.outcomes import Batch, DeadLetter, Drop, Out, Quarantine, SinkUnavailable, Stage
from newsflow.stage.runner import StageRunner
from newsflow.stage.sinks import Sink

log = logging.getLogger(__name__)

BULK_SECONDS = Histogram("newsflow_es_bulk_seconds", "Elasticsearch bulk call latency")
BULK_ITEMS = Counter("newsflow_es_items_total", "Bulk item outcomes", ["outcome"])

# Item errors that no retry will fix: the document goes to the dead-letter topic.
PERMANENT_ERRORS = frozenset({
    "mapper_parsing_exception", "document_parsing_exception", "strict_dynamic_mapping_exception",
    "illegal_argument_exception", "parse_exception", "mapper_exception", "x_content_parse_exception",
    "json_parse_exception",
})
INITIAL_BACKOFF_S = 0.25

RecordKey = tuple[str, int, int]


def record_key(rec: ConsumerRecord) -> RecordKey:
    return (rec.topic, rec.partition, rec.offset)


def version_of(article: Article) -> int:
    """External version: ``processed_at`` in ms. Newer processing wins; a re-delivery is a 409."""
    return int(article.processed_at.timestamp() * 1000)


class Indexer(Stage):
    """Pure transform: validate the enriched record and turn it into one bulk item."""

    name = "indexer"

    def process(self, record: ConsumerRecord) -> Out:
        if record.value is None:
            raise Drop("tombstone")
        try:
            article = Article.from_bytes(record.value)
        except ValueError as exc:  # pydantic's ValidationError included (invalid JSON too)
            raise Quarantine("invalid_article", str(exc)[:1000]) from exc
        if article.id != article_id(article.canonical_url):
            raise Quarantine("id_mismatch", f"id {article.id} is not sha256 of {article.canonical_url!r}")
        head = {
            "id": article.id,
            "month": month_of(article.first_seen_at),
            "version": version_of(article),
            "fetched_at": article.fetched_at.timestamp(),
        }
        # The validated record is the document as it came, when it is one compact JSON line
        # (what Article.to_bytes() produces); anything else is re-serialised from the model.
        body = record.value.strip()
        if b"\n" in body or not body.endswith(b"}"):
            body = article.to_bytes()
        return Out(key=article.id.encode(), value=json.dumps(head).encode() + b"\n" + body)


@dataclass(frozen=True)
class BulkItem:
    record: ConsumerRecord
    doc_id: str
    month: str
    version: int
    fetched_at: float
    body: bytes  # the Article as JSON, exactly as validated

    @classmethod
    def from_output(cls, record: ConsumerRecord, out: Out) -> BulkItem:
        head, _, body = out.value.partition(b"\n")
        h = json.loads(head)
        return cls(record, h["id"], h["month"], int(h["version"]), float(h["fetched_at"]), body)

    @property
    def key(self) -> RecordKey:
        return record_key(self.record)

    def action(self, generation: str, indexed_at: bytes) -> tuple[dict[str, Any], bytes]:
        """Bulk header and body. ``indexed_at`` is spliced into the JSON object as bytes (the body
        came from ``Article.to_bytes()``, an object that never has that field), so the document is
        not parsed and serialised a second time."""
        header = {"index": {"_index": f"{generation}-{self.month}", "_id": self.doc_id,
                            "version": self.version, "version_type": "external"}}
        return header, self.body[:-1] + b',"indexed_at":"' + indexed_at + b'"}'


def classify(status: int, error: Any) -> str:
    """One bulk item outcome: ``ok`` | ``duplicate`` | ``permanent`` | ``retry``.

    Only an item-level error (a dict from Elasticsearch) can be permanent. A whole-request failure
    (``error`` is a string) and anything unrecognised is retried: waiting never loses a record.
    """
    if 200 <= status < 300:
        return "ok"
    if status == 409:
        return "duplicate"
    if isinstance(error, dict) and (status == 400 or error.get("type") in PERMANENT_ERRORS):
        return "permanent"
    return "retry"


def error_text(error: Any) -> tuple[str, str]:
    """(reason class, message) of a bulk item error, caused_by chain included."""
    if not isinstance(error, dict):
        return "es_error", str(error)
    parts = [str(error.get("reason", ""))]
    cause = error.get("caused_by")
    while isinstance(cause, dict):
        parts.append(f"{cause.get('type', '')}: {cause.get('reason', '')}")
        cause = cause.get("caused_by")
    return str(error.get("type") or "es_error"), " / caused by ".join(p for p in parts if p)[:2000]


def durable_offsets(batch: Batch, done: set[RecordKey]) -> dict[TopicPartition, OffsetAndMetadata]:
    """Per partition, the offset after the longest prefix of the batch that is durable.

    A record is durable when it needed nothing (dropped) or its work is in ``done`` (acknowledged
    by Elasticsearch, or sent to the DLQ). Partitions whose first record is not durable are absent.
    """
    waiting = {record_key(r) for r, _ in batch.outputs} | {record_key(d.record) for d in batch.dead}
    waiting -= done
    by_tp: dict[TopicPartition, list[ConsumerRecord]] = defaultdict(list)
    for r in batch.records:
        by_tp[TopicPartition(r.topic, r.partition)].append(r)
    out: dict[TopicPartition, OffsetAndMetadata] = {}
    for tp, recs in by_tp.items():
        next_offset = None
        for r in sorted(recs, key=lambda r: r.offset):
            if record_key(r) in waiting:
                break
            next_offset = r.offset + 1
        if next_offset is not None:
            out[tp] = OffsetAndMetadata(next_offset, "", -1)
    return out


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
        items = [BulkItem.from_output(r, o) for r, o in batch.outputs if record_key(r) not in self._done]
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

    def _prepare(self, items: Iterable[BulkItem]) -> str:
        """The generation to write to, with every monthly index the items need created."""
        alias = self.settings.es_index
        generation = self.generation or current_generation(self.es, alias)
        for index in sorted({f"{generation}-{it.month}" for it in items} - self._known_indices):
            ensure_index(self.es, index, None if self.generation else alias)
            self._known_indices.add(index)
        return generation

    def _write(self, items: list[BulkItem], rejected: list[DeadLetter]) -> None:
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
            retry: list[BulkItem] = []
            stamp = datetime.now(UTC).isoformat().encode()
            started = time.monotonic()
            try:
                results = streaming_bulk(
                    self.es,
                    (it.action(generation, stamp) for it in pending),
                    chunk_size=self.settings.batch_size,
                    max_chunk_bytes=self.settings.batch_bytes,
                    expand_action_callback=lambda action: action,
                    raise_on_error=False,
                    raise_on_exception=False,
                    max_retries=0,  # retries are ours: only the failed items, counted, capped backoff
                )
                for it, (_ok, result) in zip(pending, results, strict=True):
                    self.last_progress = time.monotonic()
                    info = next(iter(result.values()))
                    if str(info.get("_id")) != it.doc_id:  # pragma: no cover - streaming_bulk keeps order
                        raise RuntimeError(f"bulk answer for {info.get('_id')} where {it.doc_id} was expected")
                    if self._account(it, int(info.get("status", 500)), info.get("error"), generation, rejected):
                        retry.append(it)
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

    def _account(self, it: BulkItem, status: int, error: Any, generation: str, rejected: list[DeadLetter]) -> bool:
        """Record one item's outcome; True if it must be retried."""
        outcome = classify(status, error)
        BULK_ITEMS.labels(outcome).inc()
        if outcome == "ok":
            self._done.add(it.key)
            self.counts["indexed"] += 1
            metrics.END_TO_END_SECONDS.observe(max(0.0, time.time() - it.fetched_at))
        elif outcome == "duplicate":
            self._done.add(it.key)
            self.counts["duplicate"] += 1
        elif outcome == "permanent":
            reason, message = error_text(error)
            rejected.append(DeadLetter(it.record, reason, message, attempts_so_far(it.record) + 1))
        else:
            if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                self._known_indices.discard(f"{generation}-{it.month}")  # deleted under us: recreate
            return True
        return False


def make_runner(settings: Settings) -> StageRunner:
    return StageRunner(
        settings,
        Indexer(),
        source=settings.topic_enriched,
        group=settings.group("indexer"),
        sink=ElasticsearchSink(settings),
        consumer=make_member_consumer(settings, "indexer"),
    )
