"""Reading a partition range to its end offsets (``newsflow.partitions``) on the real local Kafka."""

from __future__ import annotations

import re

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from newsflow.kafka_io import make_consumer, make_producer
from newsflow.partitions import (
    RangeReadTimeout, committed_or_beginning, end_offsets, read_from_beginning, read_range, topic_partitions,
    unfinished,
)

pytestmark = pytest.mark.integration


def write(settings, topic: str, per_partition: int) -> None:
    producer = make_producer(settings)
    try:
        for p in range(settings.topic_partitions):
            for i in range(per_partition):
                producer.send(topic, key=f"{p}-{i}".encode(), value=f"{i}".encode(), partition=p)
        producer.flush()
    finally:
        producer.close(timeout=10)


@pytest.fixture
def reader(settings):
    consumer = make_consumer(settings, None)
    yield consumer
    consumer.close(autocommit=False)


def keys(batches) -> list[str]:
    return sorted(r.key.decode() for batch in batches for r in batch)


def test_a_whole_topic_is_read_to_the_end_offsets_of_the_start(settings, reader):
    topic = settings.topic_feeds
    write(settings, topic, 3)
    tps = topic_partitions(reader, topic)
    assert [tp.partition for tp in tps] == [0, 1]
    assert end_offsets(reader, topic) == {tp: 3 for tp in tps}
    got = read_from_beginning(reader, tps, timeout_s=30)
    first = next(got)
    write(settings, topic, 2)  # written after the start: not part of the range
    assert keys([first, *got]) == [f"{p}-{i}" for p in (0, 1) for i in range(3)]
    assert not unfinished(reader, {tp: 3 for tp in tps})


def test_a_range_starts_at_the_given_offsets_and_stops_before_the_given_ends(settings, reader):
    write(settings, settings.topic_feeds, 5)
    tp0, tp1 = topic_partitions(reader, settings.topic_feeds)
    assert keys(read_range(reader, {tp0: 2, tp1: 0}, {tp0: 4, tp1: 1}, timeout_s=30)) == ["0-2", "0-3", "1-0"]


def test_a_range_that_cannot_reach_its_end_times_out_naming_the_partition(settings, reader):
    topic = settings.topic_feeds
    write(settings, topic, 1)
    tp0, _tp1 = topic_partitions(reader, topic)
    with pytest.raises(RangeReadTimeout, match=re.escape(f"{topic}[0] at 1 of 5")):
        keys(read_range(reader, {tp0: 0}, {tp0: 5}, timeout_s=1))
    assert keys(read_range(reader, {tp0: 0}, {tp0: 5}, timeout_s=30, idle_polls=2)) == ["0-0"]  # stops quietly


def test_a_group_starts_where_it_committed_else_at_the_beginning(settings):
    topic = settings.topic_feeds
    write(settings, topic, 4)
    group = settings.group("partitions-test")
    consumer = make_consumer(settings, group)
    try:
        tp0, tp1 = topic_partitions(consumer, topic)
        consumer.assign([tp0, tp1])
        consumer.commit({tp0: OffsetAndMetadata(3, "", -1)})
        assert committed_or_beginning(consumer, [tp0, tp1]) == {tp0: 3, tp1: 0}
        assert keys(read_range(consumer, committed_or_beginning(consumer, [tp0, tp1]), timeout_s=30)) == [
            "0-3", "1-0", "1-1", "1-2", "1-3"]
    finally:
        consumer.close(autocommit=False)


def test_an_unknown_topic_has_no_partitions_and_nothing_to_read(settings):
    consumer = make_consumer(settings, None, allow_auto_create_topics=False)
    try:
        assert topic_partitions(consumer, f"{settings.topic_feeds}-missing") == []
        assert list(read_from_beginning(consumer, [])) == []
        assert list(read_range(consumer, {TopicPartition(settings.topic_feeds, 0): 0})) == []  # empty topic
    finally:
        consumer.close(autocommit=False)
