"""The processor runs one batch ahead (``newsflow/stage/runner.py``, two-phase stages): on the real local
Kafka, a stop or a rebalance while a batch is ahead still gives every input exactly once."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from kafka import TopicPartition

from newsflow.kafka_io import make_consumer
from newsflow.stage.runner import StageRunner
from newsflow.stage.sinks import Sink, TransactionalKafkaSink, _TransactionStuck
from processors.pool import ExtractionPool
from processors.processor import Processor, make_runner
from tests.processors.kafka_helpers import produce, raw_record, read_topic, synthetic_page

pytestmark = pytest.mark.integration

N = 20


def produce_raws(s) -> list[str]:
    raws = [raw_record(f"https://council.example/items/{i}", synthetic_page(i)) for i in range(N)]
    produce(s, [(r.id.encode(), r.to_bytes()) for r in raws])
    return [r.id for r in raws]


def committed(s) -> int | None:
    """The processor group's committed offset of the one ``articles.raw`` partition."""
    consumer = make_consumer(s, s.group("processor"))
    try:
        return consumer.committed(TopicPartition(s.topic_raw, 0))
    finally:
        consumer.close(autocommit=False)


def step_until_delivered(runner: StageRunner) -> int:
    """Steps until one batch is delivered (the first step only submits); bounded, not timed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        delivered = runner.step()
        if delivered:
            return delivered
    raise AssertionError("no batch delivered within 120 s")


class StopAfterFirstDelivery(Sink):
    """The real sink; asks the runner to stop (as SIGTERM does) once it has delivered one batch."""

    def __init__(self, runner: StageRunner):
        self.sink, self.runner = runner.sink, runner
        self.delivered: list[int] = []

    def write(self, consumer, batch) -> None:
        self.sink.write(consumer, batch)
        self.delivered.append(len(batch.records))
        self.runner.stop()

    def close(self) -> None:
        self.sink.close()


def test_a_stop_with_a_batch_ahead_commits_only_what_was_delivered(make_settings, caplog):
    s = make_settings(topic_partitions=1, batch_size=5, enrich=False)
    ids = produce_raws(s)
    runner = make_runner(s)
    sink = runner.sink = StopAfterFirstDelivery(runner)
    with caplog.at_level(logging.INFO, logger="newsflow.stage.runner"):
        runner.run()
    [delivered] = sink.delivered
    assert "abandoned the batch ahead" in caplog.text  # the stop came with a batch in the pool
    # Only the delivered batch is visible and committed; the batch ahead left no trace.
    assert [r.key.decode() for r in read_topic(s, s.topic_enriched)] == ids[:delivered]
    assert committed(s) == delivered

    make_runner(s).run(idle_exit_s=3)  # the next owner reads the abandoned batch again
    assert Counter(r.key.decode() for r in read_topic(s, s.topic_enriched)) == Counter(ids)
    assert committed(s) == N


class RejoinOnNextPoll:
    """The real consumer; when armed, its next poll rejoins the group (its subscription grows by an
    empty topic): a real rebalance through the broker that revokes the partition, then assigns it
    back to this same consumer, which keeps its fetch position."""

    def __init__(self, consumer, extra_topic: str):
        self._consumer, self._extra = consumer, extra_topic
        self.armed = False
        self.polled: list[int] = []  # records returned by each poll
        self.revoked: list[set] = []  # partitions revoked in each poll (as the runner's listener saw)

    def subscribe(self, topics, listener) -> None:
        self._topics, self._listener = list(topics), listener
        self._consumer.subscribe(self._topics, listener=listener)

    def poll(self, **kwargs):
        if self.armed:
            self.armed = False
            self._consumer.subscribe([*self._topics, self._extra], listener=self._listener)
        out = self._consumer.poll(**kwargs)
        self.polled.append(sum(len(recs) for recs in out.values()))
        self.revoked.append(set(self._listener.revoked))
        return out

    def __getattr__(self, name):
        return getattr(self._consumer, name)


def test_a_rebalance_while_a_batch_is_ahead_loses_nothing_and_duplicates_nothing(make_settings):
    s = make_settings(topic_partitions=1, batch_size=5, enrich=False)
    ids = produce_raws(s)
    group = s.group("processor")
    consumer = RejoinOnNextPoll(make_consumer(s, group), s.topic_feeds)
    pool = ExtractionPool(s)
    pool.start()
    sink = TransactionalKafkaSink(s, "processor", s.topic_enriched, transactional_id=f"{group}-{s.instance_id}")
    runner = StageRunner(s, Processor(s, pool, None), source=s.topic_raw, group=group, sink=sink,
                         consumer=consumer)
    delivered = step_until_delivered(runner)
    assert consumer.polled[-1] > 0  # the delivering step polled a batch ahead: it is in the pool
    consumer.armed = True  # the next poll revokes the partition with that batch still ahead
    armed = len(consumer.polled)
    runner.run(idle_exit_s=3)
    assert TopicPartition(s.topic_raw, 0) in consumer.revoked[armed]
    keys = Counter(r.key.decode() for r in read_topic(s, s.topic_enriched))
    assert {k: n for k, n in keys.items() if n > 1} == {}, "written twice"
    assert set(keys) == set(ids), f"missing: {sorted(set(ids) - set(keys))}"
    assert delivered < N and committed(s) == N


class LoseOneAnswer:
    """Wraps the real sink's ``_await``: the first time ``what`` is awaited, the coordinator's answer
    is lost (after the request really went through when ``after``): what a broker restart did."""

    def __init__(self, sink: TransactionalKafkaSink, what: str, *, after: bool):
        self.sink, self.what, self.after, self.fired = sink, what, after, 0
        self.real = sink._await

    def __call__(self, result, what: str) -> None:
        if what == self.what and not self.fired:
            self.fired += 1
            if self.after:
                self.real(result, what)
            raise _TransactionStuck(f"{what}: answer lost (test)")
        self.real(result, what)


@pytest.mark.parametrize("lost", ["offsets", "commit"])
def test_a_transaction_lost_in_flight_is_replaced_and_nothing_is_written_twice(make_settings, lost):
    s = make_settings(topic_partitions=1, batch_size=5, enrich=False)
    ids = produce_raws(s)
    runner = make_runner(s)
    sink = runner.sink
    first_producer = sink.producer
    sink._await = LoseOneAnswer(sink, lost, after=lost == "commit")
    runner.run(idle_exit_s=3)
    assert sink._await.fired == 1 and sink.producer is not first_producer  # replaced, and it went on
    assert Counter(r.key.decode() for r in read_topic(s, s.topic_enriched)) == Counter(ids)
    assert committed(s) == N
