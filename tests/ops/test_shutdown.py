"""SIGTERM in the middle of a stream loses and duplicates nothing (checked against Elasticsearch)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest
from elasticsearch import NotFoundError
from kafka import TopicPartition

from newsflow.demo import SITE_DIR
from newsflow.elastic import make_es
from newsflow.kafka_io import make_consumer, make_producer
from newsflow.schema import RawArticle, article_id
from tests.ops.helpers import newsflow, wait_until

pytestmark = pytest.mark.integration

N = 60


def produce_raw(settings, n: int) -> set[str]:
    pages = sorted(SITE_DIR.glob("*.html"))
    pages = [p for p in pages if p.name != "index.html"]
    producer = make_producer(settings)
    ids = set()
    now = datetime.now(UTC)
    for i in range(n):
        url = f"https://kestrel.example/{i}/{pages[i % len(pages)].name}"
        raw = RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=now,
                         first_seen_at=now, content_type="text/html; charset=utf-8",
                         body_b64=RawArticle.encode_body(pages[i % len(pages)].read_bytes()))
        producer.send(settings.topic_raw, key=raw.id.encode(), value=raw.to_bytes())
        ids.add(raw.id)
    producer.flush()
    producer.close()
    return ids


def read_all(settings, topic: str) -> list:
    """Every committed record of ``topic`` (read_committed, group-less)."""
    consumer = make_consumer(settings, None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        wait_until(lambda: (out.extend(r for rs in consumer.poll(timeout_ms=200).values() for r in rs)
                            or all(consumer.position(tp) >= end[tp] for tp in tps)),
                   timeout=60, what=f"reading {topic} to its end", every=0)
        return out
    finally:
        consumer.close(autocommit=False)


def es_ids(settings) -> list[str]:
    es = make_es(settings)
    try:
        es.indices.refresh(index=settings.es_index)
        resp = es.search(index=settings.es_index, query={"match_all": {}}, size=10_000, source=False)
        return [h["_id"] for h in resp["hits"]["hits"]]
    except NotFoundError:  # the indexer creates the alias with its first document
        return []
    finally:
        es.close()


def test_sigterm_mid_stream_loses_and_duplicates_nothing(make_settings, tmp_path):
    s = make_settings(batch_size=5, batch_wait_ms=100, state_dir=tmp_path, log_format="json")
    expected = produce_raw(s, N)
    log = tmp_path / "stages.log"
    processor = newsflow(s, "process", stderr=log)
    indexer = newsflow(s, "index", stderr=log)
    # Stop both as soon as the first batches are in Elasticsearch: the processor is mid-stream then.
    wait_until(lambda: len(es_ids(s)) >= 5, timeout=240, what="the first indexed batch")
    processor.send_signal(signal.SIGTERM)
    indexer.send_signal(signal.SIGTERM)
    bound = s.shutdown_timeout_s + 30
    assert processor.wait(timeout=bound) == 0
    assert indexer.wait(timeout=bound) == 0
    at_stop = len(es_ids(s))

    # Restart both; they finish the stream from the committed offsets.
    for stage in ("process", "index"):
        assert newsflow(s, stage, "--idle-exit", "5", stderr=log).wait(timeout=300) == 0

    enriched = read_all(s, s.topic_enriched)
    keys = [r.key.decode() for r in enriched]
    assert len(keys) == len(set(keys)), "the processor wrote an article twice"
    assert set(keys) == expected, "the processor lost articles"
    ids = es_ids(s)
    assert len(ids) == len(set(ids)) == N and set(ids) == expected
    assert read_all(s, s.topic_dlq) == []
    # Not an assertion of speed, a record of what was tested: how far the first run had got.
    print(f"indexed when SIGTERM took effect: {at_stop}/{N}")
    assert '"event": "stage stopped"' in log.read_text()
