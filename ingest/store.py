"""The feed tables in Kafka: compacted ``topic_feeds`` (definitions) and ``topic_feed_state`` (state).

Both are keyed by feed id and read as tables: the latest value per key wins, ``None`` (a tombstone)
deletes. A feed's state record goes to the *same partition number* as its definition record (the
poller sends it there explicitly), so the instance that owns partition ``p`` of the feeds topic finds
the state of all its feeds in partition ``p`` of the state topic. A new definition goes to its site's
partition (``home_partition``: all feeds of one registrable domain together), so one poller instance
sees every article of a site and fetches each once, whichever of the site's feeds list it.

Poison. A record whose latest value is not a definition (or not a state) is dead-lettered to
``articles.dlq`` with its reason by the poller that owns its partition, then deleted from the table
with a tombstone, so it is dead-lettered once, not on every re-read (``FeedTable.quarantine``).
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import TypeVar

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from tld import get_fld

from ingest.state import FeedDefinition, FeedState, utcnow
from ingest.urls import bare_host, check_http_url, feed_id, host_of
from newsflow.kafka_io import make_reader
from newsflow.partitions import RangeReadTimeout, end_offsets, read_range
from newsflow.settings import Settings
from newsflow.stage.outcomes import DeadLetter

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0
M = TypeVar("M", FeedDefinition, FeedState)


class TableReadTimeout(Exception):
    pass


class TableMissing(LookupError):
    """A feed table's topic does not exist (yet): nothing was ever written, nothing is created by reading."""


def table_consumer(settings: Settings) -> KafkaConsumer:
    """A group-less consumer for reading tables (no offsets are ever committed)."""
    return make_reader(settings, max_poll_records=5000)


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
               timeout_s: float = READ_TIMEOUT_S, since: dict[int, int] | None = None) -> dict[str, ConsumerRecord]:
    """key -> latest record of ``topic`` (given partitions, else all), read up to the end offsets of
    the moment of the call. A tombstone's record has ``value`` None. ``since`` (partition -> offset)
    reads only those partitions' tails, from these offsets."""
    if since is not None:
        partitions = list(since)
    parts = partitions if partitions is not None else partitions_of(consumer, topic)
    tps = [TopicPartition(topic, p) for p in parts]
    table: dict[str, ConsumerRecord] = {}
    if not tps:
        return table
    starts = ({tp: since[tp.partition] for tp in tps} if since is not None else consumer.beginning_offsets(tps))
    try:
        for batch in read_range(consumer, starts, timeout_s=timeout_s):
            for r in batch:
                if r.key is not None:
                    table[r.key.decode("utf-8", "replace")] = r
    except RangeReadTimeout as exc:
        raise TableReadTimeout(f"reading {topic}: {exc}") from exc
    consumer.assign([])
    return table


def topic_is_empty(consumer: KafkaConsumer, topic: str) -> bool:
    """True when nothing was ever written to ``topic`` (all end offsets are 0)."""
    partitions_of(consumer, topic)  # waits for the topic's metadata
    return all(v == 0 for v in end_offsets(consumer, topic).values())


def decode(record: ConsumerRecord, model: type[M]) -> M | DeadLetter:
    """A table record's value as ``model``, or the dead letter saying why it is not one."""
    try:
        return model.from_bytes(record.value)
    except ValueError as exc:  # pydantic's ValidationError included
        what = "feed_definition" if model is FeedDefinition else "feed_state"
        return DeadLetter(record, f"invalid_{what}", f"not a {model.__name__}: {str(exc)[:500]}", 1)


def decode_table(table: dict[str, ConsumerRecord], model: type[M]) -> tuple[dict[str, tuple[int, M]], list[DeadLetter]]:
    """(key -> (partition, value)) of the live keys, and the dead letters of the records that are not a
    ``model`` (poison: the poller dead-letters them, see ``FeedTable.quarantine``)."""
    good: dict[str, tuple[int, M]] = {}
    bad: list[DeadLetter] = []
    for k, r in table.items():
        if r.value is None:
            continue
        got = decode(r, model)
        if isinstance(got, DeadLetter):
            bad.append(got)
        else:
            good[k] = (r.partition, got)
    return good, bad


def _logged(decoded: tuple[dict[str, tuple[int, M]], list[DeadLetter]]) -> dict[str, tuple[int, M]]:
    good, bad = decoded
    for d in bad:  # readers other than the owning poller only report them
        log.error("%s: record %r in partition %d skipped: %s", d.record.topic, d.record.key, d.record.partition,
                  d.message)
    return good


def definitions(table: dict[str, ConsumerRecord]) -> dict[str, tuple[int, FeedDefinition]]:
    """Feed id -> (partition, definition). Records that are not definitions are logged and skipped."""
    return _logged(decode_table(table, FeedDefinition))


def states(table: dict[str, ConsumerRecord]) -> dict[str, FeedState]:
    """Feed id -> state. A record that is not a state is logged and skipped: the feed starts afresh."""
    return {k: st for k, (_p, st) in _logged(decode_table(table, FeedState)).items()}


def load_catalog(settings: Settings) -> tuple[dict[str, tuple[int, FeedDefinition]], dict[str, FeedState]]:
    """All definitions (with their partition) and all states: for the ``feeds`` commands. Reading
    creates nothing: a missing topic raises ``TableMissing`` (the consumer never asks the broker to
    auto-create a topic, ``newsflow.kafka_io``)."""
    consumer = table_consumer(settings)
    try:
        missing = [t for t in (settings.topic_feeds, settings.topic_feed_state) if t not in consumer.topics()]
        if missing:
            raise TableMissing(f"topic {', '.join(missing)} does not exist yet (`newsflow topology` creates it)")
        defs = definitions(read_table(consumer, settings.topic_feeds))
        sts = states(read_table(consumer, settings.topic_feed_state))
    finally:
        consumer.close(autocommit=False)
    return defs, sts


def definition_for(url: str, *, title: str | None = None, category: str | None = None) -> FeedDefinition:
    url = check_http_url(url)
    return FeedDefinition(id=feed_id(url), url=url, added_url=url, title=title, category=category, added_at=utcnow())


def site_of(url: str) -> str:
    """The site a feed belongs to: its registrable domain (``feeds.bbci.co.uk`` -> ``bbci.co.uk``), else
    its host without ``www.``/``m.`` (IP addresses, ``localhost``, unknown suffixes)."""
    return get_fld(url, fail_silently=True) or bare_host(host_of(url))


def home_partition(url: str, partitions: int) -> int:
    """The partition of a new feed's definition (and so of its state): one per site, so the poller that
    owns a site's feeds owns all of them and fetches each of the site's articles once."""
    return zlib.crc32(site_of(url).encode("utf-8")) % partitions


def put_definition(producer: KafkaProducer, settings: Settings, definition: FeedDefinition,
                   partition: int | None = None):
    """Write a definition: to ``partition`` (where the feed already lives), else to its site's partition."""
    if partition is None:
        partition = home_partition(definition.added_url, len(producer.partitions_for(settings.topic_feeds)))
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
