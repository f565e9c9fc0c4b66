"""Kafka helpers for the processor's integration tests: raw records in, committed records out."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow.kafka_io import make_consumer, make_producer
from newsflow.schema import FeedEntry, RawArticle, article_id
from newsflow.settings import Settings

PEOPLE = ["Anna Berg", "Tom Okafor", "Lena Novak", "Omar Haddad", "Rita Alves"]
TOWNS = ["Harbourtown", "Millbrook", "Eastvale", "Kestrel Bay", "Northwick"]


def synthetic_page(i: int) -> bytes:
    """A small, unique English news page."""
    who, town = PEOPLE[i % len(PEOPLE)], TOWNS[i % len(TOWNS)]
    paras = [
        f"The council of {town} voted on item {i} on Tuesday, after a debate that lasted {i + 2} hours.",
        f"“We owe the people of {town} a decision on item {i},” {who}, the council leader, said after the vote.",
        f"The plan number {i} will cost {i + 1} million euros and work is due to start in the spring of {2024 + i % 3}.",
        f"Residents had collected {100 + i} signatures, and several of them watched the session from the gallery.",
    ]
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (f"<html lang='en'><head><title>Council decides item {i} | {town} Post</title></head>"
            f"<body><article><h1>Council decides item {i}</h1>{body}</article></body></html>").encode()


def raw_record(url: str, body: bytes, *, entry: FeedEntry | None = None) -> RawArticle:
    now = datetime.now(UTC)
    return RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=now,
                      first_seen_at=now, entry=entry or FeedEntry(), content_type="text/html; charset=utf-8",
                      body_b64=RawArticle.encode_body(body))


def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    """(key, value) pairs to ``topic_raw``, flushed."""
    producer = make_producer(settings)
    try:
        for key, value in records:
            producer.send(settings.topic_raw, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def produce_pages(settings: Settings, n: int, *, host: str = "council.example") -> set[str]:
    raws = [raw_record(f"https://{host}/items/{i}", synthetic_page(i)) for i in range(n)]
    produce(settings, [(r.id.encode(), r.to_bytes()) for r in raws])
    return {r.id for r in raws}


def read_topic(settings: Settings, topic: str, *, timeout: float = 60) -> list[ConsumerRecord]:
    """Every committed record of ``topic`` (read_committed, no consumer group)."""
    consumer = make_consumer(settings, None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while not all(consumer.position(tp) >= end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout:.0f}s")
            out.extend(r for recs in consumer.poll(timeout_ms=300).values() for r in recs)
        return out
    finally:
        consumer.close(autocommit=False)


def stable_end(settings: Settings, topic: str) -> int:
    """Sum of the partitions' last stable offsets: grows each time a transaction commits."""
    consumer = make_consumer(settings, None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close(autocommit=False)


def header_map(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
