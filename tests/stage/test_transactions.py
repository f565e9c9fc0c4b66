"""``KafkaTransactions`` (``newsflow.stage.sinks``), shared by the processor's sink and ``dlq replay``:
commit order and recovery, on a fake transactional producer (no Kafka). The real broker restart is
tests/processors/test_runner_ahead.py's and the chaos suite's."""

from __future__ import annotations

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaTimeoutError, ProducerFencedError

from newsflow.settings import Settings
from newsflow.stage import sinks
from newsflow.stage.outcomes import SinkUnavailable
from newsflow.stage.sinks import KafkaTransactions
from tests.stage.fakes import FakeConsumer

TP = TopicPartition("unit.raw", 0)
OFFSETS = {TP: OffsetAndMetadata(5, "", -1)}


class Answer:
    def __init__(self, ok: bool = True):
        self.ok = ok

    def wait(self, timeout_ms=None) -> bool:
        return self.ok


class FakeProducer:
    """Records what a transaction did; ``fail`` maps a step (send, offsets, commit) to an exception."""

    def __init__(self, fail: dict[str, BaseException]):
        self.fail, self.events = fail, []
        self._sender = self
        self._transaction_manager = self

    def _step(self, name: str) -> None:
        self.events.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def wakeup(self) -> None: ...
    def init_transactions(self) -> None: self._step("init")
    def begin_transaction(self) -> None: self._step("begin")
    def abort_transaction(self) -> None: self._step("abort")
    def close(self, timeout=None) -> None: self.events.append("close")

    def send(self, topic, **kw) -> None:
        self._step("send")

    def flush(self, timeout=None) -> None:
        self._step("flush")
        self.events.append(("flush_timeout", timeout))

    def send_offsets_to_transaction(self, offsets, group):
        self._step("offsets")
        self.events.append(("group", group))
        return Answer()

    def begin_commit(self):
        self._step("commit")
        return Answer()


@pytest.fixture
def producers(monkeypatch):
    made: list[FakeProducer] = []
    plans: list[dict] = []

    def make_producer(settings, transactional_id=None):
        made.append(FakeProducer(plans.pop(0) if plans else {}))
        return made[-1]

    monkeypatch.setattr(sinks, "make_producer", make_producer)
    return made, plans


def write(p) -> None:
    p.send("out", key=b"k", value=b"v")


def test_write_then_offsets_then_commit_in_one_transaction(producers):
    made, _plans = producers
    consumer = FakeConsumer(1)
    consumer.group_metadata = lambda: "member-metadata"
    txn = KafkaTransactions(Settings(), "unit", "tid")
    assert txn.transact(consumer, OFFSETS, write) is True
    assert made[0].events == ["init", "begin", "send", "offsets", ("group", "member-metadata"), "commit"]
    txn.transact(consumer, OFFSETS, write, group_metadata="replay-group")  # dlq replay: a group id
    assert ("group", "replay-group") in made[0].events


def test_a_kafka_error_aborts_and_asks_to_be_tried_again(producers):
    made, plans = producers
    plans.append({"send": KafkaTimeoutError("broker away")})
    txn = KafkaTransactions(Settings(), "unit", "tid")
    with pytest.raises(SinkUnavailable):
        txn.transact(FakeConsumer(1), OFFSETS, write)
    assert made[0].events[-1] == "abort" and "commit" not in made[0].events and len(made) == 1


def test_a_lost_commit_replaces_the_producer_and_a_committed_batch_is_not_written_twice(producers):
    made, plans = producers
    plans.append({"commit": ProducerFencedError()})  # the coordinator aborted it under us: fenced once
    consumer = FakeConsumer(1)
    consumer.group_metadata = lambda: "g"
    txn = KafkaTransactions(Settings(), "unit", "tid")
    with pytest.raises(SinkUnavailable):
        txn.transact(consumer, OFFSETS, write)
    assert len(made) == 2 and made[0].events[-1] == "close"  # replaced
    consumer.committed_offsets[TP] = 5  # the lost transaction had in fact committed the batch
    assert txn.transact(consumer, OFFSETS, write) is False
    assert made[1].events == ["init"]  # nothing written again
    assert txn.transact(consumer, {TP: OffsetAndMetadata(9, "", -1)}, write) is True  # the next batch is


def test_a_second_fencing_is_fatal_and_with_renew_when_fenced_off_the_first_is(producers):
    made, plans = producers
    consumer = FakeConsumer(1)
    consumer.group_metadata = lambda: "g"
    plans += [{"commit": ProducerFencedError()}, {"commit": ProducerFencedError()}]
    txn = KafkaTransactions(Settings(), "unit", "tid")
    with pytest.raises(SinkUnavailable):
        txn.transact(consumer, OFFSETS, write)
    with pytest.raises(ProducerFencedError):  # fenced again within FENCE_WINDOW_S: another live producer
        txn.transact(consumer, OFFSETS, write)
    replay = KafkaTransactions(Settings(), "dlq-replay", "replay-group", renew_when_fenced=False)
    made[-1].fail["commit"] = ProducerFencedError()  # the next replay took the id
    with pytest.raises(ProducerFencedError):
        replay.transact(consumer, OFFSETS, write, group_metadata="replay-group")
    assert len(made) == 3  # not replaced: a fenced replay stops


def test_without_offsets_a_flush_that_hangs_replaces_the_producer_and_nothing_is_committed(producers):
    """The poller: no consumed offsets, and a flush inside the transaction (to know what was acknowledged).
    After a broker restart kafka-python can hold the records until their delivery timeout: the flush waits
    ``wait_s``, then the producer is replaced (its ``init_transactions`` aborts the open transaction)."""
    made, plans = producers
    plans.append({"flush": KafkaTimeoutError("Timeout waiting for future")})

    def write_and_flush(p) -> None:
        write(p)
        txn.await_acks(p)

    txn = KafkaTransactions(Settings(), "poller", "tid", wait_s=7)
    with pytest.raises(SinkUnavailable):
        txn.transact(None, {}, write_and_flush)
    assert made[0].events == ["init", "begin", "send", "flush", "close"] and len(made) == 2
    assert txn.transact(None, {}, write_and_flush) is True  # nothing to look up: the batch is written again
    assert made[1].events == ["init", "begin", "send", "flush", ("flush_timeout", 7), "commit"]



def failing_writes(n: int):
    """A ``write`` whose first ``n`` calls fail as a broker away would (the transaction is aborted)."""
    calls = []

    def write_(p) -> None:
        calls.append(1)
        if len(calls) <= n:
            raise KafkaTimeoutError("broker away")
        write(p)
    write_.calls = calls
    return write_


def test_transact_retrying_doubles_its_wait_raises_the_last_failure_and_stops_when_told(producers):
    txn = KafkaTransactions(Settings(), "unit", "tid")
    waits: list[float] = []
    assert txn.transact_retrying(None, {}, failing_writes(2), tries=3, delay_s=0.5, wait=waits.append) is True
    assert waits == [0.5, 1.0]
    waits.clear()
    with pytest.raises(SinkUnavailable):  # every try fails: the last failure is raised
        txn.transact_retrying(None, {}, failing_writes(9), tries=3, delay_s=0.5, wait=waits.append)
    assert waits == [0.5, 1.0]
    write_ = failing_writes(9)
    with pytest.raises(SinkUnavailable):  # stopping: the wait says so, and there is no second try
        txn.transact_retrying(None, {}, write_, tries=3, delay_s=1.0, wait=lambda _s: True)
    assert len(write_.calls) == 1
