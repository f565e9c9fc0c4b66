"""The indexer stage: ``articles.enriched`` -> Elasticsearch (monthly indices behind the alias).

Writes are idempotent forever: ``_id`` is sha256 of the canonical URL, the index is chosen by
``first_seen_at`` (which never changes for a URL), and ``version_type=external`` with the
processing time as version means an older or identical re-delivery is a counted duplicate
(409) while a re-processed article replaces the old one.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from elastic_transport import ConnectionError as ESConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from pydantic import ValidationError
from prometheus_client import Counter, Histogram

from newsflow import metrics
from newsflow.elastic import index_name, make_es
from newsflow.kafka_io import make_producer
from newsflow.runner import Batch, DeadLetter, Out, Quarantine, SinkUnavailable, StageRunner, send_dead_letters
from newsflow.schema import Article
from newsflow.settings import Settings

log = logging.getLogger(__name__)

BULK_SECONDS = Histogram("newsflow_es_bulk_seconds", "Elasticsearch bulk call latency")
BULK_ITEMS = Counter("newsflow_es_items_total", "Bulk item outcomes", ["outcome"])

# Item errors that no retry will fix: the document goes to the dead-letter topic.
_PERMANENT = {
    "mapper_parsing_exception", "document_parsing_exception", "strict_dynamic_mapping_exception",
    "illegal_argument_exception", "parse_exception", "mapper_exception", "x_content_parse_exception",
}
_RETRY_STATUS = (429, 502, 503, 504)


class Indexer:
    """Pure transform: validate the enriched record and turn it into one bulk action."""

    name = "indexer"

    def __init__(self, alias: str):
        self.alias = alias

    def process(self, record: ConsumerRecord) -> Out:
        try:
            article = Article.from_bytes(record.value)
        except (ValidationError, ValueError) as exc:
            raise Quarantine("invalid_article", str(exc)[:500]) from exc
        action = {
            "_op_type": "index",
            "_index": index_name(self.alias, article.first_seen_at),
            "_id": article.id,
            "version": int(article.processed_at.timestamp() * 1000),
            "version_type": "external",
        }
        return Out(key=article.id.encode(), value=json.dumps(action).encode() + b"\n" + record.value)


def to_action(out: Out, indexed_at: str) -> dict[str, Any]:
    head, _, body = out.value.partition(b"\n")
    action = json.loads(head)
    source = json.loads(body)
    source["indexed_at"] = indexed_at
    action["_source"] = source
    return action


def classify(status: int, error: Any) -> str:
    """One bulk item outcome: ok | duplicate | retry | permanent."""
    if 200 <= status < 300:
        return "ok"
    if status == 409:
        return "duplicate"
    if status in _RETRY_STATUS:
        return "retry"
    etype = error.get("type", "") if isinstance(error, dict) else ""
    if status == 400 or etype in _PERMANENT:
        return "permanent"
    return "retry"


class ElasticsearchSink:
    """Elasticsearch bulk writer.

    Commit order: (1) bulk-write the batch and wait for every item's acknowledgement (429/503 items
    are retried with capped exponential backoff; a duplicate counts as done); (2) send the batch's
    dead letters (invalid records, mapping errors) and flush the producer; (3) commit the consumed
    offsets. If (1) cannot finish, nothing is committed and ``SinkUnavailable`` makes the runner
    pause and retry the whole batch, which is harmless because every write is idempotent.
    """

    def __init__(self, settings: Settings, es: Elasticsearch | None = None):
        self.settings = settings
        self.es = es or make_es(settings)
        self._producer = None

    @property
    def producer(self):
        if self._producer is None:
            self._producer = make_producer(self.settings)
        return self._producer

    def deliver(self, consumer: KafkaConsumer, batch: Batch) -> None:
        dead = list(batch.dead)
        if batch.outputs:
            dead += self._write(batch)
        if dead:
            send_dead_letters(self.producer, self.settings.topic_dlq, "indexer", dead)
            self.producer.flush()
        try:
            consumer.commit(batch.offsets())
        except CommitFailedError as exc:
            # Rebalanced away mid-batch: the new owner re-reads these records and the writes are
            # idempotent, so nothing is lost or duplicated.
            log.warning("offset commit failed after a rebalance: %s", exc)

    def _write(self, batch: Batch) -> list[DeadLetter]:
        now = datetime.now(UTC)
        by_id: dict[str, list[ConsumerRecord]] = defaultdict(list)
        actions = []
        for rec, out in batch.outputs:
            by_id[out.key.decode()].append(rec)
            actions.append(to_action(out, now.isoformat()))
        dead: list[DeadLetter] = []
        retry: list[str] = []
        started = time.monotonic()
        try:
            for ok, item in streaming_bulk(
                self.es,
                actions,
                chunk_size=self.settings.batch_size,
                max_chunk_bytes=self.settings.batch_bytes,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=5,
                initial_backoff=0.5,
                max_backoff=8,
                retry_on_status=_RETRY_STATUS,
            ):
                _op, info = next(iter(item.items()))
                status = int(info.get("status", 500))
                outcome = classify(status, info.get("error"))
                BULK_ITEMS.labels(outcome).inc()
                doc_id = str(info.get("_id"))
                if outcome == "permanent":
                    err = info.get("error") or {}
                    for rec in by_id.get(doc_id, []):
                        dead.append(DeadLetter(rec, err.get("type", f"http_{status}"),
                                               str(err.get("reason", err))[:1000], 1))
                elif outcome == "retry":
                    retry.append(doc_id)
        except (ESConnectionError, ConnectionTimeout, TransportError, ApiError) as exc:
            raise SinkUnavailable(f"elasticsearch: {exc!r}") from exc
        finally:
            BULK_SECONDS.observe(time.monotonic() - started)
        if retry:
            raise SinkUnavailable(f"elasticsearch rejected {len(retry)} items after retries")
        for action in actions:
            fetched = datetime.fromisoformat(action["_source"]["fetched_at"])
            metrics.END_TO_END_SECONDS.observe(max(0.0, (now - fetched).total_seconds()))
        return dead

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
        self.es.close()


def make_runner(settings: Settings) -> StageRunner:
    return StageRunner(
        settings,
        Indexer(settings.es_index),
        source=settings.topic_enriched,
        group=settings.group("indexer"),
        sink=ElasticsearchSink(settings),
    )
