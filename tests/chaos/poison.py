"""Poison records for every topic a stage consumes: each one must end in the DLQ with a reason.

The records are produced with a plain (non-transactional) producer, as a buggy or foreign writer
would, and the returned ``Poison`` list says where each one landed so the test can find its dead
letter by the ``nf-topic``/``nf-partition``/``nf-offset`` headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from newsflow.kafka_io import make_producer
from newsflow.schema import Article, Provenance, RawArticle, article_id
from newsflow.settings import Settings


@dataclass(frozen=True)
class Poison:
    kind: str
    topic: str
    partition: int
    offset: int


def _raw(url: str, body: bytes, **over) -> dict:
    now = datetime.now(UTC).isoformat()
    d = dict(schema_version=1, id=article_id(url), url=url, canonical_url=url, final_url=url,
             fetched_at=now, first_seen_at=now, body_b64=RawArticle.encode_body(body))
    return d | over


def _article(url: str, **over) -> dict:
    now = datetime.now(UTC)
    a = Article(id=article_id(url), url=url, canonical_url=url, host="poison.invalid", source="poison",
                text="Poison text.", fetched_at=now, first_seen_at=now, processed_at=now,
                provenance=Provenance(extractor="test", extractor_version="0"))
    return json.loads(a.model_dump_json(exclude_none=True)) | over


def raw_poison() -> list[tuple[str, bytes | None]]:
    u = "http://poison.invalid/raw/"
    return [
        ("raw: not json", b"this is not json at all"),
        ("raw: undecodable bytes", b"\xff\xfe\xfd\x00\x81\xc3\x28"),
        ("raw: empty value", b""),
        ("raw: null value", None),
        ("raw: json array", b"[1, 2, 3]"),
        ("raw: wrong shape", json.dumps({"hello": "world"}).encode()),
        ("raw: unknown schema_version", json.dumps(_raw(u + "v", b"<p>x</p>", schema_version=99)).encode()),
        ("raw: bad base64 body", json.dumps(_raw(u + "b64", b"", body_b64="!!! not base64 !!!")).encode()),
        ("raw: page without text", json.dumps(_raw(u + "empty", b"<html><body></body></html>")).encode()),
        ("raw: truncated json", json.dumps(_raw(u + "trunc", b"<p>text</p>")).encode()[:57]),
    ]


def enriched_poison() -> list[tuple[str, bytes | None]]:
    u = "http://poison.invalid/enriched/"
    return [
        ("enriched: not json", b"{{{{"),
        ("enriched: undecodable bytes", b"\x80\x81\x82\xff"),
        ("enriched: empty value", b""),
        ("enriched: wrong shape", json.dumps({"id": "x"}).encode()),
        ("enriched: unknown schema_version", json.dumps(_article(u + "v", schema_version=7)).encode()),
        ("enriched: bad date", json.dumps(_article(u + "date", published_at="the day after tomorrow")).encode()),
        # Valid for the schema, refused by Elasticsearch: word_count is an `integer` in the mapping.
        ("enriched: rejected by the mapping", json.dumps(_article(u + "map", word_count=2**40)).encode()),
    ]


def feed_table_poison(table: str) -> list[tuple[str, bytes | None]]:
    """For the compacted feed tables (definitions, per-feed state), which the poller reads."""
    return [
        (f"{table}: not json", b"<feed>nope</feed>"),
        (f"{table}: undecodable bytes", b"\xfe\xff\x00\x00\x81"),
        (f"{table}: wrong shape", json.dumps({"url": 42, "id": ["x"]}).encode()),
    ]


def inject_poison(s: Settings, *, feed_tables: bool = False) -> list[Poison]:
    """Produce every poison record into its topic; returns where each landed.

    ``feed_tables`` also poisons the feeds and feed-state topics (only once the poller has seeded
    the feeds topic: it seeds a topic that was never written to).
    """
    producer = make_producer(s)
    out: list[Poison] = []
    topics = [(s.topic_raw, raw_poison()), (s.topic_enriched, enriched_poison())]
    if feed_tables:
        topics += [(s.topic_feeds, feed_table_poison("feeds")),
                   (s.topic_feed_state, feed_table_poison("feed-state"))]
    try:
        for topic, records in topics:
            for kind, value in records:
                md = producer.send(topic, key=f"poison-{kind}".encode(), value=value).get(timeout=30)
                out.append(Poison(kind, topic, md.partition, md.offset))
        producer.flush()
    finally:
        producer.close(timeout=10)
    return out
