"""What actually landed: Elasticsearch documents, Kafka topic contents, dead letters, consumer lag.

Every reader here is independent of the stages under test: plain ``read_committed`` consumers
without a group (they never commit) and ``scan`` over the Elasticsearch alias.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from elasticsearch import NotFoundError
from elasticsearch.helpers import scan
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from newsflow.elastic import make_es
from newsflow.kafka_io import make_admin, make_consumer
from newsflow.schema import article_id
from newsflow.settings import Settings


def es_urls(s: Settings) -> Counter[str]:
    """canonical_url -> number of documents carrying it, over every index behind the alias."""
    es = make_es(s, request_timeout=60)
    try:
        es.indices.refresh(index=s.es_index, ignore_unavailable=True, allow_no_indices=True)
        hits = scan(es, index=s.es_index, query={"query": {"match_all": {}}}, _source=["canonical_url"],
                    size=2000, scroll="2m")
        return Counter(h["_source"]["canonical_url"] for h in hits)
    except NotFoundError:
        return Counter()
    finally:
        es.close()


def es_count(s: Settings) -> int:
    es = make_es(s, request_timeout=10)
    try:
        es.indices.refresh(index=s.es_index, ignore_unavailable=True, allow_no_indices=True)
        return int(es.count(index=s.es_index, ignore_unavailable=True, allow_no_indices=True)["count"])
    finally:
        es.close()


def read_topic(s: Settings, topic: str, *, since: dict[int, int] | None = None,
               timeout_s: float = 120.0) -> list:
    """Every committed record of ``topic`` (from ``since`` offsets per partition, else the start)."""
    consumer = make_consumer(s, None, consumer_timeout_ms=2000)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, (since or {}).get(tp.partition, 0))
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= end[tp] for tp in tps):
                break
            for recs in consumer.poll(timeout_ms=1000, max_records=5000).values():
                out.extend(recs)
        else:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:.0f}s")
        return out
    finally:
        consumer.close(autocommit=False)


def end_offsets(s: Settings, topic: str) -> dict[int, int]:
    consumer = make_consumer(s, None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close(autocommit=False)


def lag(s: Settings, group: str, topic: str) -> int:
    """Committed records of ``topic`` that ``group`` has not committed past.

    Counted by reading, not by subtracting offsets: a transactional topic ends with commit
    markers, which occupy offsets but are not records.
    """
    consumer = make_consumer(s, group)  # group only for committed(); never subscribes or commits
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        committed = {tp.partition: (consumer.committed(tp) or 0) for tp in tps}
    finally:
        consumer.close(autocommit=False)
    return len(read_topic(s, topic, since=committed))


@dataclass(frozen=True)
class PartitionReplicas:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def replicas(s: Settings, topics: list[str]) -> list[PartitionReplicas]:
    """The cluster's view of ``topics``: each partition's leader, replicas and in-sync replicas."""
    admin = make_admin(s)
    try:
        return [PartitionReplicas(t["name"], p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]),
                                  tuple(p["isr_nodes"]))
                for t in admin.describe_topics(topics) for p in t["partitions"]]
    finally:
        admin.close()


def topic_config(s: Settings, topics: list[str], key: str) -> dict[str, str]:
    """``key``'s effective value for each of ``topics``."""
    admin = make_admin(s)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, [key]) for t in topics],
                                       config_filter="all")
    finally:
        admin.close()
    return {t: cfg[key]["value"] for t, cfg in found["topic"].items()}


def headers(record) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers or ())}


@dataclass
class Audit:
    """The verdict of one case: the columns of the chaos table, and the evidence behind them."""

    case: str
    sent: int
    indexed: int
    lost: int
    duplicated: int
    dlq: int
    seconds: float
    lost_examples: list[str] = field(default_factory=list)
    dup_examples: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.case}, {self.sent}, {self.indexed}, {self.lost}, {self.duplicated}, "
                f"{self.dlq}, {self.seconds:.1f}")


HEADER = "case, sent, indexed, lost, duplicated, dlq, seconds"


def audit(case: str, s: Settings, expected: set[str], seconds: float) -> Audit:
    """Compare Elasticsearch with the expected canonical URLs and ``articles.enriched`` with itself.

    duplicated = extra Elasticsearch documents for one URL (across every index behind the alias)
               + extra records of one expected article in ``articles.enriched`` (read_committed), i.e. a
                 broken exactly-once hand-off that idempotent indexing would otherwise hide.
    """
    urls = es_urls(s)
    lost = sorted(expected - set(urls))
    es_dups = {u: n for u, n in urls.items() if n > 1}
    ids = {article_id(u).encode() for u in expected}
    enriched = Counter(r.key for r in read_topic(s, s.topic_enriched) if r.key in ids)  # poison aside
    topic_dups = {k: n for k, n in enriched.items() if n > 1}
    dlq = read_topic(s, s.topic_dlq)
    a = Audit(
        case=case,
        sent=len(expected),
        indexed=len(set(urls) & expected),
        lost=len(lost),
        duplicated=sum(n - 1 for n in es_dups.values()) + sum(n - 1 for n in topic_dups.values()),
        dlq=len(dlq),
        seconds=seconds,
        lost_examples=lost[:5],
        dup_examples=[*list(es_dups)[:3], *[k.decode(errors="replace") for k in list(topic_dups)[:3]]],
    )
    a.notes["unexpected_docs"] = len(set(urls) - expected)
    a.notes["es_duplicates"] = sum(n - 1 for n in es_dups.values())
    a.notes["enriched_duplicates"] = sum(n - 1 for n in topic_dups.values())
    a.notes["enriched_records"] = sum(enriched.values())
    return a
