"""The indexer's bulk rules, without I/O: the typed bulk item, the verdict on one bulk item's
answer, and what of a batch may be committed (``processors.index.sink`` applies them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow.stage.outcomes import Batch, Out

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


@dataclass(frozen=True, kw_only=True)
class BulkItem(Out):
    """What the indexer's transform gives the sink: one document for the bulk API, typed.

    ``key`` is the document id (ASCII), ``value`` the Article as JSON exactly as validated; ``month``
    (of ``first_seen_at``) names the monthly index, ``version`` is the external version and
    ``fetched_at`` (epoch seconds) feeds the end-to-end latency."""

    month: str
    version: int
    fetched_at: float

    @property
    def doc_id(self) -> str:
        return (self.key or b"").decode("ascii")

    def action(self, generation: str, indexed_at: bytes) -> tuple[dict[str, Any], bytes]:
        """Bulk header and body. ``indexed_at`` is spliced into the JSON object as bytes (the body
        came from ``Article.to_bytes()``, an object that never has that field), so the document is
        not parsed and serialised a second time."""
        header = {"index": {"_index": f"{generation}-{self.month}", "_id": self.doc_id,
                            "version": self.version, "version_type": "external"}}
        return header, self.value[:-1] + b',"indexed_at":"' + indexed_at + b'"}'


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
