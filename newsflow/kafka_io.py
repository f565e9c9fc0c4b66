"""Kafka client factories: every Newsflow client is configured here and nowhere else.

On a secured connection (SSL, SASL_PLAINTEXT, SASL_SSL) each factory first runs the pre-flight
check (``newsflow.kafka_preflight``, once per process): refused credentials or certificates fail
within seconds with an error naming the settings, instead of kafka-python's 30 s bootstrap timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer

from newsflow.kafka_preflight import check_once
from newsflow.liveness import stall_after_s
from newsflow.settings import Settings

log = logging.getLogger(__name__)

# Headroom for record headers and batch framing on top of the largest value we produce.
_FRAME_OVERHEAD = 64 * 1024


def common_config(settings: Settings) -> dict[str, Any]:
    """Connection settings shared by every client: bootstrap servers, TLS files, SASL login."""
    protocol = settings.kafka_security_protocol
    cfg: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap.split(","), "security_protocol": protocol}
    if protocol.endswith("SSL"):
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(settings, f"kafka_ssl_{name}")
            if path is not None:
                cfg[f"ssl_{name}"] = str(path)
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings model requires it for SASL_*
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return cfg


def client_config(settings: Settings) -> dict[str, Any]:
    """``common_config``, after the pre-flight check of a secured connection."""
    check_once(settings)
    return common_config(settings)


def make_producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> KafkaProducer:
    """An idempotent ``acks=all`` producer; transactional when ``transactional_id`` is given."""
    cfg = client_config(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if settings.kafka_compression == "none" else settings.kafka_compression,
        "linger_ms": 20,
        "batch_size": 262_144,
        "max_request_size": settings.max_message_bytes + _FRAME_OVERHEAD,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
    }
    if transactional_id:
        cfg["transactional_id"] = transactional_id
        cfg["transaction_timeout_ms"] = 60_000
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def make_consumer(settings: Settings, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A manual-commit, ``read_committed`` consumer. Offsets are committed by the runner only."""
    cfg = client_config(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": settings.max_message_bytes + _FRAME_OVERHEAD,
        "fetch_max_bytes": max(52_428_800, settings.max_message_bytes + _FRAME_OVERHEAD),
        "max_poll_records": settings.batch_size,
        "max_poll_interval_ms": 600_000,
        "session_timeout_ms": 30_000,
        "heartbeat_interval_ms": 3_000,
    }
    cfg.update(overrides)
    return KafkaConsumer(*topics, **cfg)


def make_reader(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A group-less consumer that reads topics (feed tables, offsets) for read-only commands. It never
    lets a broker with ``auto.create.topics.enable`` create a topic by asking for its metadata, so
    ``feeds list | status | export`` and ``status`` create nothing."""
    return make_consumer(settings, None, allow_auto_create_topics=False, **overrides)


def make_member_consumer(settings: Settings, stage: str) -> KafkaConsumer:
    """The consumer of a stage's group, as a static member named by ``instance_id``: a restarted
    instance (same id: a StatefulSet pod, a systemd unit) takes its partitions back at once instead of
    waiting out the dead member's session, and the group keeps it through a batch as long as its
    /healthz does (``newsflow.liveness``: the processor's bound covers two batches of timeouts)."""
    group = settings.group(stage)
    return make_consumer(settings, group, group_instance_id=f"{group}-{settings.instance_id}",
                         max_poll_interval_ms=int(stall_after_s(settings, stage) * 1000))


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**(client_config(settings) | {"request_timeout_ms": 30_000} | overrides))


def await_partitions(consumer: KafkaConsumer, topic: str, timeout_s: float = 60.0) -> set[int]:
    """Wait until ``consumer``'s own metadata knows ``topic``'s partitions; call it before subscribing.

    On a cluster a topic just created reaches each broker's metadata a moment after the controller
    accepted it. A consumer that joins its group before its metadata has the topic is assigned no
    partitions, and kafka-python 3.0 was seen to stay so for minutes (the group then empty, the lag
    growing). Past ``timeout_s`` (no such topic?) it logs and returns the empty set."""
    deadline = time.monotonic() + timeout_s
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            log.warning("topic %s has no partitions after %.0f s (does it exist? `newsflow topology` creates it)",
                        topic, timeout_s)
            break
        time.sleep(0.5)
    return parts


def subscribe_known(consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener) -> None:
    """Subscribe ``consumer`` to ``topic`` so that its first join sees the metadata it will later compare with.

    kafka-python 3.0.12 takes the metadata a leader assigned with from a snapshot its metadata listener
    refreshes only on a metadata response received after ``subscribe``. When the first JoinGroup answers
    before that response (the snapshot still empty), the response then looks like a change of the topic's
    partitions and the member rejoins at once; when that rejoin's JoinGroup is still in flight as the poll
    times out, the snapshots agree again, ``need_rejoin()`` is False, and the join's result is never
    applied: no partitions, heartbeats off, the member evicted, and the stage polls empty for good (seen
    in CI for the indexer, the processor and the poller's feed table). So: the partitions are known
    before subscribing (``await_partitions``), and a metadata fetch after it refreshes the snapshot
    (``topics()`` always asks the broker) before the first poll joins the group."""
    await_partitions(consumer, topic)
    consumer.subscribe([topic], listener=listener)
    consumer.topics()
