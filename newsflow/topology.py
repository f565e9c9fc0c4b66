"""The whole river in one place.

    feeds.yaml ─▶ [poller] ─▶ articles.raw ─▶ [processor] ─▶ articles.enriched ─▶ [indexer] ─▶ ES alias `articles`
                     │                           │                                   │
                     └──────────────────────────▶ articles.dlq ◀──────────────────────┘

    newsflow.feeds       compacted: feed definitions (key = feed id)
    newsflow.feed-state  compacted: per-feed validators, schedule, errors, seen entries

Names come from Settings so tests can give each test its own topics, group and index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from newsflow.settings import Settings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    name: str
    source: str | None
    group: str


# The broker keeps each batch as the producer compressed it (``kafka_compression``): a topic codec
# that differs from the producer's makes the broker decompress and recompress every batch.
KEEP_PRODUCER_COMPRESSION = {"compression.type": "producer"}


def retention_ms(days: float) -> str:
    """``retention.ms`` for a number of days; -1 (keep forever) stays -1."""
    return "-1" if days == -1 else str(int(days * DAY_MS))


def topics(s: Settings) -> list[TopicSpec]:
    """Every topic, replicated ``topic_replication`` times; a write (all producers use acks=all) is
    acknowledged once ``topic_min_insync`` replicas have it."""
    big = str(s.max_message_bytes + 64 * 1024)
    isr = {"min.insync.replicas": str(s.topic_min_insync)}
    return [
        # Fetched pages, kept ``raw_retention_days`` from when they were produced, so that
        # `newsflow reprocess` can run them through a newer processor without fetching them again.
        TopicSpec(s.topic_raw, s.topic_partitions, isr | KEEP_PRODUCER_COMPRESSION | {
            "max.message.bytes": big, "retention.ms": retention_ms(s.raw_retention_days),
        }),
        # Compacted by article id: the topic keeps the latest version of every article forever,
        # which is what `newsflow reindex` replays from.
        TopicSpec(s.topic_enriched, s.topic_partitions, isr | KEEP_PRODUCER_COMPRESSION | {
            "max.message.bytes": big, "cleanup.policy": "compact",
        }),
        TopicSpec(s.topic_dlq, 1, isr | KEEP_PRODUCER_COMPRESSION | {
            "max.message.bytes": big, "retention.ms": str(30 * DAY_MS),
        }),
        TopicSpec(s.topic_feeds, s.topic_partitions, isr | {"cleanup.policy": "compact"}),
        TopicSpec(s.topic_feed_state, s.topic_partitions, isr | {"cleanup.policy": "compact"}),
    ]


def stages(s: Settings) -> list[StageSpec]:
    return [
        StageSpec("poller", s.topic_feeds, s.group("poller")),
        StageSpec("processor", s.topic_raw, s.group("processor")),
        StageSpec("indexer", s.topic_enriched, s.group("indexer")),
    ]


def ensure_topics(s: Settings) -> list[str]:
    """Create missing topics with their partitions and configs, and set the declared configs an
    existing topic has different values for (e.g. a changed ``raw_retention_days``, or a
    ``compression.type`` from an older topology). Returns the names created."""
    from newsflow.kafka_io import make_admin

    admin = make_admin(s)
    try:
        existing = set(admin.list_topics())
        created = []
        for spec in topics(s):
            if spec.name in existing:
                continue
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, s.topic_replication, topic_configs=spec.config)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                existing.add(spec.name)
        align_configs(admin, [t for t in topics(s) if t.name in existing])
        return created
    finally:
        admin.close()


def config_drift(declared: dict[str, str], actual: dict[str, str | None]) -> dict[str, str]:
    """The declared configs whose value on the broker differs (pure)."""
    return {k: v for k, v in declared.items() if actual.get(k) != v}


def topic_configs(admin, names: list[str]) -> dict[str, dict[str, str | None]]:
    """Per topic, its configs as the broker holds them (name -> value)."""
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    return {name: {k: e.get("value") for k, e in entries.items()}
            for name, entries in described.get("topic", {}).items()}


def align_configs(admin, specs: list[TopicSpec]) -> dict[str, dict[str, str]]:
    """Set, on existing topics, the declared configs the broker holds another value for
    (incremental: the topic's other configs are untouched). Returns what changed per topic."""
    if not specs:
        return {}
    actual = topic_configs(admin, [t.name for t in specs])
    changed: dict[str, dict[str, str]] = {}
    for spec in specs:
        drift = config_drift(spec.config, actual.get(spec.name, {}))
        if drift:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=drift)])
            changed[spec.name] = drift
            log.info("topic %s: configs set to the declared values %s", spec.name, drift)
    return changed


def ensure_index(s: Settings) -> None:
    from newsflow.elastic import apply_template, make_es

    es = make_es(s)
    try:
        apply_template(es, s)
    finally:
        es.close()


def apply(s: Settings) -> None:
    """Apply the whole topology: Kafka topics and the Elasticsearch template. Harmless twice."""
    created = ensure_topics(s)
    ensure_index(s)
    log.info("topology applied", extra={"topics_created": created})


def namespaced(s: Settings, tag: str, **overrides: object) -> Settings:
    """``s`` with every topic, consumer group, index alias and instance id under ``tag``: a river of
    its own on shared Kafka and Elasticsearch (each test and benchmark run gets one). Validated."""
    names = {
        "topic_raw": f"{tag}.articles.raw", "topic_enriched": f"{tag}.articles.enriched",
        "topic_dlq": f"{tag}.articles.dlq", "topic_feeds": f"{tag}.feeds", "topic_feed_state": f"{tag}.feed-state",
        "group_prefix": tag, "es_index": f"{tag}-articles", "instance_id": tag,
    }
    return Settings(**({k: getattr(s, k) for k in Settings.model_fields} | names | overrides))


def teardown(s: Settings) -> list[str]:
    """Delete what ``apply`` and the stages made for ``s``: its topics, the consumer groups under its
    ``group_prefix``, its indices and template. Best effort: returns what could not be deleted."""
    from newsflow.elastic import make_es
    from newsflow.kafka_io import make_admin

    problems: list[str] = []
    admin = make_admin(s)
    try:
        names = sorted({t.name for t in topics(s)} & set(admin.list_topics()))
        if names:
            admin.delete_topics(names)
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(f"{s.group_prefix}-")]
        if groups:
            admin.delete_groups(groups)
    except Exception as exc:  # noqa: BLE001 - best effort, reported
        problems.append(f"kafka: {exc!r}")
    finally:
        admin.close()
    es = make_es(s)
    try:
        es.indices.delete(index=f"{s.es_index}-*", ignore_unavailable=True, allow_no_indices=True)
        es.options(ignore_status=404).indices.delete_index_template(name=s.es_index)
    except Exception as exc:  # noqa: BLE001 - best effort, reported
        problems.append(f"elasticsearch: {exc!r}")
    finally:
        es.close()
    return problems
