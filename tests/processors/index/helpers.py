"""Article factories and Kafka/Elasticsearch helpers for the indexer tests."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig, ObjectApiResponse
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan
from kafka import TopicPartition

from newsflow.elastic import make_es
from newsflow.kafka_io import make_consumer, make_producer
from newsflow.schema import Article, Provenance, Quote, article_id
from newsflow.settings import Settings
from newsflow.stage.runner import StageRunner
from processors.index.indexer import Indexer
from processors.index.sink import ElasticsearchSink
from tests.conftest import SEED

T0 = datetime(2024, 3, 31, 22, 0, tzinfo=UTC)


def make_article(url: str | None = None, **fields: Any) -> Article:
    """A valid enriched Article; ``fields`` override the defaults."""
    url = url or f"https://news.example.org/{uuid.uuid4().hex[:12]}.html"
    base: dict[str, Any] = {
        "id": article_id(url),
        "url": url,
        "canonical_url": url,
        "final_url": url,
        "feed_url": "https://news.example.org/feed.xml",
        "host": "news.example.org",
        "source": "Example News",
        "site_name": "Example News",
        "title": "Harbour town votes to rebuild its lighthouse",
        "text": "The harbour council voted on Tuesday to rebuild the old lighthouse after a storm.",
        "description": "A vote in the harbour town.",
        "authors": ["Ada Reporter"],
        "published_at": T0,
        "fetched_at": T0 + timedelta(minutes=5),
        "first_seen_at": T0 + timedelta(minutes=5),
        "processed_at": T0 + timedelta(minutes=6),
        "language": "en",
        "word_count": 14,
        "reading_time_s": 4,
        "provenance": Provenance(extractor="test", extractor_version="1"),
    }
    base.update(fields)
    return Article(**base)


def enriched_seed() -> Article | None:
    """The seed article through the real processing chain (``newsflow enrich SEED --json``), once
    the processors provide that command; None before that."""
    import subprocess
    import sys

    from newsflow.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no API
    if "enrich" not in commands:
        return None
    done = subprocess.run([sys.executable, "-m", "newsflow.cli", "enrich", str(SEED), "--json"],
                          capture_output=True, text=True, timeout=300, check=True)
    return Article.model_validate_json(done.stdout)


def seed_article() -> Article:
    """The seed article (../shared/seed) as an enriched document: the real enrichment when
    ``newsflow enrich`` exists, else entities and quotes by hand (what issue 4 expects)."""
    real = enriched_seed()
    if real is not None:
        return real
    raw = SEED.read_text(encoding="utf-8")
    first, _, body = raw.partition("\n")
    date = datetime.fromisoformat(first.split()[1]).replace(tzinfo=UTC)
    text = body.strip()
    url = "https://www.theguardian.com/world/2022/feb/09/russia-ukraine-military-buildup-us-warns"
    quotes = [
        Quote(text="We have continued to see even over the last 24 hours additional capabilities flow from "
                   "elsewhere in Russia to that border with Ukraine and Belarus,", speaker="John Kirby",
              speaker_raw="John Kirby, the Pentagon spokesperson"),
        Quote(text="The numbers continue to grow.", speaker="John Kirby", speaker_raw="Kirby"),
        Quote(text="What we’re looking at here [is] whether or not Russia is taking de escalatory steps.",
              speaker="Jen Psaki", speaker_raw="Jen Psaki, the White House press secretary"),
        Quote(text="arranging things to prevent an escalation and open up new avenues", speaker="Emmanuel Macron",
              speaker_raw="Macron"),
    ]
    return make_article(
        url,
        host="www.theguardian.com",
        source="The Guardian",
        site_name="the Guardian",
        title="Russia continues military buildup around Ukraine, US says",
        text=text,
        description="Pentagon and White House say Russia is adding to its forces despite diplomatic efforts.",
        authors=["Guardian staff"],
        published_at=date,
        fetched_at=date + timedelta(hours=1),
        first_seen_at=date + timedelta(hours=1),
        processed_at=date + timedelta(hours=1, seconds=3),
        persons=["John Kirby", "Jen Psaki", "Emmanuel Macron", "Vladimir Putin", "Volodymyr Zelensky",
                 "Olaf Scholz", "Joe Biden"],
        organizations=["Pentagon", "White House", "Nato", "Wall Street Journal"],
        places=["Russia", "Ukraine", "Moscow", "Kyiv", "Poland", "Belarus", "Washington", "Berlin"],
        quotes=quotes,
        keywords=["Russia", "Ukraine", "Pentagon", "troops"],
        categories=["World news"],
        tags=["Ukraine", "Russia"],
        image="https://i.guim.co.uk/img/media/kirby.jpg",
        word_count=len(text.split()),
        reading_time_s=len(text.split()) * 60 // 230,
        content_hash="c" * 64,
        story_id="story-ukraine-buildup",
        provenance=Provenance(extractor="trafilatura", extractor_version="2.3.1",
                              fields={"title": "page", "published_at": "page"}, steps={"ner": "spacy"}),
    )


def produce(settings: Settings, values: Sequence[Article | bytes | None], keys: Sequence[bytes] | None = None,
            partition: int | None = None) -> list[tuple[int, int]]:
    """Produce to ``topic_enriched``; returns (partition, offset) of each record, in order. The
    records of one call are sent together at ``flush`` (one record batch per partition while they
    fit), so a consumer never sees only the first few of them in a fetch."""
    producer = make_producer(settings, linger_ms=60_000)
    try:
        futures = []
        for i, v in enumerate(values):
            key = keys[i] if keys else (v.id.encode() if isinstance(v, Article) else f"k{i}".encode())
            value = v.to_bytes() if isinstance(v, Article) else v
            futures.append(producer.send(settings.topic_enriched, key=key, value=value, partition=partition))
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list:
    """Every committed record of a topic, read without a consumer group."""
    consumer = make_consumer(settings, None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def header(record, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return v.decode()
    return None


def make_runner(settings: Settings, *, es: Elasticsearch | None = None, sink: ElasticsearchSink | None = None,
                consumer=None) -> StageRunner:
    sink = sink or ElasticsearchSink(settings, es=es)
    return StageRunner(settings, Indexer(), source=settings.topic_enriched, group=settings.group("indexer"),
                       sink=sink, consumer=consumer)


def all_docs(settings: Settings, index: str | None = None) -> list[dict[str, Any]]:
    """Every document behind the alias (or ``index``), with ``_index`` and ``_id``."""
    target = index or f"{settings.es_index}-*"
    es = make_es(settings)
    try:
        es.indices.refresh(index=target, ignore_unavailable=True, allow_no_indices=True)
        return [{"_index": h["_index"], "_id": h["_id"], **h["_source"]}
                for h in scan(es, index=target, query={"query": {"match_all": {}}})]
    finally:
        es.close()


_OP = re.compile(rb'"_id"\s*:\s*"([0-9a-f]+)"')


def bulk_ids(operations: Sequence[bytes]) -> list[str]:
    """The _ids of a serialized bulk request (header lines only)."""
    return [m.group(1).decode() for line in operations[::2] if (m := _OP.search(line))]


class BulkFaults:
    """Which bulk items the wrapped client answers with 429 (es_rejected_execution_exception),
    as Elasticsearch does under indexing pressure. ``reject(ids) -> set of positions``."""

    def __init__(self, reject):
        self.reject = reject
        self.calls: list[list[str]] = []  # ids sent per bulk call, in order
        self.lock = threading.Lock()


class _FaultyES(Elasticsearch):
    faults: BulkFaults

    def bulk(self, *, operations, **kw):  # noqa: D102 - the real bulk, minus the rejected items
        ids = bulk_ids(operations)
        with self.faults.lock:
            self.faults.calls.append(ids)
            rejected = set(self.faults.reject(ids))
        keep = [line for i in range(len(ids)) if i not in rejected for line in operations[2 * i: 2 * i + 2]]
        if keep:
            resp = super().bulk(operations=keep, **kw)
            body, meta = resp.body, resp.meta
        else:  # everything rejected: answer like Elasticsearch would, without a request
            body = {"took": 0, "errors": True, "items": []}
            meta = ApiResponseMeta(status=200, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                                   node=NodeConfig("http", "127.0.0.1", 0))
        real = iter(body["items"])
        items = []
        for i, doc_id in enumerate(ids):
            if i in rejected:
                items.append({"index": {"_id": doc_id, "status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "rejected by the test's fault plan"}}})
            else:
                items.append(next(real))
        return ObjectApiResponse(body={**body, "errors": True, "items": items}, meta=meta)


def faulty_es(settings: Settings, faults: BulkFaults) -> Elasticsearch:
    """The real client with injected per-item 429s (``options()`` keeps the subclass)."""
    cls = type("FaultyES", (_FaultyES,), {"faults": faults})
    return cls(settings.es_url, request_timeout=30, max_retries=0, retry_on_timeout=False)


def wait_assigned(runner: StageRunner, timeout_s: float = 60.0, settle_s: float = 1.5) -> None:
    """Wait until a runner (polling in another thread) owns partitions, plus a moment: with a
    freshly created topic kafka-python's first assignment is often followed by a second one."""
    deadline = time.monotonic() + timeout_s
    while not runner.consumer.assignment() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.consumer.assignment(), "the runner never joined its group"
    time.sleep(settle_s)
