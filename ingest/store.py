"""The feed tables in Kafka: compacted ``topic_feeds`` (definitions) and ``topic_feed_state`` (state).

Both are keyed by feed id and read as tables: the latest value per key wins, ``None`` (a tombstone)
deletes. A feed's state record goes to the *same partition number* as its definition record (the
poller sends it there explicitly), so the instance that owns partition ``p`` of the feeds topic finds
the state of all its feeds in partition ``p`` of the state topic, whatever the partitioner.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.state import FeedDefinition, FeedState, utcnow
from ingest.urls import check_http_url, feed_id
from newsflow.kafka_io import make_consumer
from newsflow.settings import Settings

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0


class TableReadTimeout(Exception):
    pass


def table_consumer(settings: Settings) -> KafkaConsumer:
    """A group-less consumer for reading tables (no offsets are ever committed)."""
    return make_consumer(settings, None, max_poll_records=5000, allow_auto_create_topics=False)


def partitions_of(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise TableReadTimeout(f"topic {topic!r} has no partitions (does it exist? run `newsflow topology`)")
        time.sleep(0.2)


def read_table(consumer: KafkaConsumer, topic: str, partitions: list[int] | None = None,
               timeout_s: float = READ_TIMEOUT_S) -> dict[str, tuple[int, bytes | None]]:
    """key -> (partition, latest value) of ``topic`` (given partitions, else all), read up to the end
    offsets of the moment of the call."""
    parts = partitions if partitions is not None else partitions_of(consumer, topic)
    tps = [TopicPartition(topic, p) for p in parts]
    table: dict[str, tuple[int, bytes | None]] = {}
    if not tps:
        return table
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    remaining = {tp for tp in tps if consumer.position(tp) < end[tp]}
    deadline = time.monotonic() + timeout_s
    while remaining:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                if r.key is not None:
                    table[r.key.decode("utf-8", "replace")] = (tp.partition, r.value)
        remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        if remaining and time.monotonic() > deadline:
            raise TableReadTimeout(f"reading {topic} did not reach the end offsets in {timeout_s:.0f}s")
    consumer.assign([])
    return table


def topic_is_empty(consumer: KafkaConsumer, topic: str) -> bool:
    """True when nothing was ever written to ``topic`` (all end offsets are 0)."""
    tps = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
    return all(v == 0 for v in consumer.end_offsets(tps).values())


def _decoded(table: dict[str, tuple[int, bytes | None]], model, topic: str) -> dict[str, tuple[int, object]]:
    out = {}
    for k, (p, v) in table.items():
        if v is None:
            continue
        try:
            out[k] = (p, model.from_bytes(v))
        except ValueError as exc:  # pydantic's ValidationError included: skipped, loudly, never fatal
            log.error("%s: record %r in partition %d is not a %s: %s", topic, k, p, model.__name__, exc)
    return out


def definitions(table: dict[str, tuple[int, bytes | None]]) -> dict[str, tuple[int, FeedDefinition]]:
    """Feed id -> (partition, definition). Records that are not definitions are logged and skipped."""
    return _decoded(table, FeedDefinition, "feeds topic")


def states(table: dict[str, tuple[int, bytes | None]]) -> dict[str, FeedState]:
    """Feed id -> state. A record that is not a state is logged and skipped: the feed starts afresh."""
    return {k: st for k, (_p, st) in _decoded(table, FeedState, "feed-state topic").items()}


def load_catalog(settings: Settings) -> tuple[dict[str, tuple[int, FeedDefinition]], dict[str, FeedState]]:
    """All definitions (with their partition) and all states: for the ``feeds`` commands."""
    consumer = table_consumer(settings)
    try:
        defs = definitions(read_table(consumer, settings.topic_feeds))
        sts = states(read_table(consumer, settings.topic_feed_state))
    finally:
        consumer.close(autocommit=False)
    return defs, sts


def definition_for(url: str, *, title: str | None = None, category: str | None = None) -> FeedDefinition:
    url = check_http_url(url)
    return FeedDefinition(id=feed_id(url), url=url, added_url=url, title=title, category=category, added_at=utcnow())


def put_definition(producer: KafkaProducer, settings: Settings, definition: FeedDefinition,
                   partition: int | None = None):
    return producer.send(settings.topic_feeds, key=definition.id.encode(), value=definition.to_bytes(),
                         partition=partition)


def put_state(producer: KafkaProducer, settings: Settings, state: FeedState, partition: int):
    return producer.send(settings.topic_feed_state, key=state.feed_id.encode(), value=state.to_bytes(),
                         partition=partition)


def delete_feed(producer: KafkaProducer, settings: Settings, fid: str, partition: int) -> None:
    """Tombstones for the definition and the state (same partition number in both topics)."""
    producer.send(settings.topic_feeds, key=fid.encode(), value=None, partition=partition)
    producer.send(settings.topic_feed_state, key=fid.encode(), value=None, partition=partition)


def load_feeds_file(path: Path) -> list[FeedDefinition]:
    """The seed list: YAML ``feeds: [{url, title?, category?} | url, ...]`` (or a bare list)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    items = data.get("feeds", []) if isinstance(data, dict) else data
    out = []
    for item in items or []:
        if isinstance(item, str):
            out.append(definition_for(item))
        elif isinstance(item, dict) and item.get("url"):
            out.append(definition_for(item["url"], title=item.get("title"), category=item.get("category")))
        else:
            raise ValueError(f"{path}: a feed must be a URL or a mapping with 'url', got {item!r}")
    return out
