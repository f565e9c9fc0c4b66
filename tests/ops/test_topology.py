"""The topology on the real broker: the topics' configs as the broker reports them."""

from __future__ import annotations

import time

from kafka.admin import ConfigResource, NewTopic
from kafka.errors import TopicAlreadyExistsError

from newsflow.kafka_io import make_admin
from newsflow.topology import ensure_topics, topics

DATA_TOPICS = ("topic_raw", "topic_enriched", "topic_dlq")


def described(settings, names: list[str]) -> dict[str, dict[str, str]]:
    admin = make_admin(settings)
    try:
        got = admin.describe_configs([ConfigResource("TOPIC", n) for n in names], config_filter="all")["topic"]
    finally:
        admin.close()
    return {n: {k: v["value"] for k, v in got[n].items()} for n in names}


def test_data_topics_keep_the_producers_compression(settings):
    """No broker-side recompression: the topics store what the (zstd) producers send."""
    names = [getattr(settings, t) for t in DATA_TOPICS]
    configs = described(settings, names)
    for name in names:
        assert configs[name]["compression.type"] == "producer", name
    declared = {t.name: t.config for t in topics(settings)}
    for name in names:  # and every other declared config made it to the broker
        assert {k: configs[name][k] for k in declared[name]} == declared[name]


def test_existing_topic_with_another_codec_is_brought_in_line(make_settings):
    """A topic created by an older topology (gzip) gets the declared config; its data stays."""
    s = make_settings()
    admin = make_admin(s)
    try:
        admin.delete_topics([s.topic_raw])
        for _ in range(50):
            try:
                admin.create_topics([NewTopic(s.topic_raw, s.topic_partitions, s.topic_replication,
                                              topic_configs={"compression.type": "gzip", "retention.ms": "1000000"})])
                break
            except TopicAlreadyExistsError:  # the deletion is asynchronous on the broker
                time.sleep(0.2)
    finally:
        admin.close()
    assert described(s, [s.topic_raw])[s.topic_raw]["compression.type"] == "gzip"

    assert ensure_topics(s) == []  # nothing created: the topic exists

    got = described(s, [s.topic_raw])[s.topic_raw]
    assert got["compression.type"] == "producer"
    assert got["retention.ms"] == next(t.config for t in topics(s) if t.name == s.topic_raw)["retention.ms"]
