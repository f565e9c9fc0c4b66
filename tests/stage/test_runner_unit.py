"""Unit tests of the stage runner's commit and rebalance logic (``newsflow.stage.runner``) on a fake
consumer and sink (``tests/stage/fakes.py``): no Kafka. The real-Kafka behaviour is covered by
tests/processors/test_runner_ahead.py and tests/processors/index/."""

from __future__ import annotations

import pytest
from kafka import TopicPartition

from newsflow.settings import Settings
from newsflow.stage.outcomes import Quarantine
from newsflow.stage.runner import StageRunner
from tests.stage.fakes import TOPIC, Echo, FakeConsumer, FakeSink, Rebalance, TwoPhaseEcho

P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def make(stage=None, sink=None, consumer=None, **settings) -> StageRunner:
    s = Settings(batch_size=settings.pop("batch_size", 4), batch_wait_ms=0, **settings)
    return StageRunner(s, stage or Echo(), source=TOPIC, group="unit", sink=sink or FakeSink(),
                       consumer=consumer or FakeConsumer(records_per_partition=2))


def test_the_consumer_knows_the_partitions_before_subscribing_and_refreshes_its_metadata_before_joining():
    consumer = FakeConsumer(records_per_partition=1)
    runner = make(consumer=consumer)
    # kafka-python 3.0.12 can lose a join whose reason vanished mid-flight (newsflow.kafka_io.subscribe_known)
    assert consumer.calls == ["partitions_for_topic", "subscribe", "topics"] and consumer.polls == []
    runner.step()
    assert consumer.polls  # the first poll (the join) comes after


def test_offsets_are_committed_by_the_sink_after_its_write_never_by_the_runner_before():
    consumer = FakeConsumer(records_per_partition=2)
    committed_at_write: list[dict] = []
    sink = FakeSink(on_write=lambda c, b: committed_at_write.append(dict(c.committed_offsets)))
    runner = make(sink=sink, consumer=consumer)
    assert runner.step() == 4
    assert committed_at_write == [{}]  # nothing committed before the sink had the batch
    assert consumer.committed_offsets == {P0: 2, P1: 2}
    assert sink.written_keys() == [b"k0-0", b"k0-1", b"k1-0", b"k1-1"]
    assert sink.ready_calls == 1  # the background-commit hook runs before every poll


def test_a_failed_write_commits_nothing_and_a_quarantined_record_is_committed_with_its_dead_letter():
    class QuarantineOdd(Echo):
        def process(self, record):
            if record.offset % 2:
                raise Quarantine("odd", "test")
            return super().process(record)

    consumer = FakeConsumer(records_per_partition=2)
    sink = FakeSink(fail=1)
    runner = make(QuarantineOdd(), sink, consumer)
    runner.step()
    assert len(sink.attempts) == 2 and consumer.committed_offsets == {P0: 2, P1: 2}
    [batch] = sink.written
    assert [d.record.key for d in batch.dead] == [b"k0-1", b"k1-1"] and {d.reason for d in batch.dead} == {"odd"}
    assert [r.key for r, _o in batch.outputs] == [b"k0-0", b"k1-0"]


def test_sink_unavailable_pauses_backs_off_retries_the_same_batch_then_resumes():
    consumer = FakeConsumer(records_per_partition=3)  # the batch takes 4 of 6 records: 2 are left to poll
    sink = FakeSink(fail=2)
    runner = make(sink=sink, consumer=consumer)
    assert runner.step() == 4
    assert [len(b.records) for b in sink.attempts] == [4, 4, 4] and len(sink.written) == 1
    assert sink.paused_at_attempt == [set(), {P0, P1}, {P0, P1}]  # paused while the sink is down
    assert consumer.polls[1:] == [500, 1000]  # backed off while polling (group kept), doubling
    assert consumer.seeks == []  # paused before the first back-off poll: it read nothing ahead
    assert len(sink.durable_calls) == 2  # the durable part is committed before each such poll
    assert consumer.paused() == set() and not runner.paused  # resumed once written
    assert consumer.committed_offsets == {P0: 3, P1: 1}
    assert runner.step() == 2 and consumer.committed_offsets == {P0: 3, P1: 3}


def rebalance_at_attempt(n: int, rebalance: Rebalance):
    """A sink hook: the ``n``-th write attempt schedules ``rebalance`` for the next poll (a back-pressure one)."""
    seen = []

    def hook(consumer, batch):
        seen.append(batch)
        if len(seen) == n:
            consumer.rebalances.append(rebalance)

    return hook


def test_a_revocation_during_back_pressure_gives_up_that_partition_and_rewinds_it_when_it_comes_back():
    consumer = FakeConsumer(records_per_partition=2)
    sink = FakeSink(fail=1, on_write=rebalance_at_attempt(1, Rebalance({P1}, assign_again={P1})))
    runner = make(sink=sink, consumer=consumer)
    runner.step()
    # the back-pressure poll revoked P1 and gave it back: its records are not written with this batch
    assert [r.key for r, _o in sink.written[0].outputs] == [b"k0-0", b"k0-1"]
    assert consumer.committed_offsets == {P0: 2}
    assert (P1, 0) in consumer.seeks and consumer.position[P1] == 0  # rewound to its first record given up
    runner.step()
    assert sorted(sink.written_keys()) == [b"k0-0", b"k0-1", b"k1-0", b"k1-1"]  # each once
    assert consumer.committed_offsets == {P0: 2, P1: 2}


def test_a_revocation_during_back_pressure_of_a_partition_that_stays_away_is_not_committed_nor_sought():
    consumer = FakeConsumer(records_per_partition=2)
    sink = FakeSink(fail=1, on_write=rebalance_at_attempt(1, Rebalance({P1})))
    runner = make(sink=sink, consumer=consumer)
    runner.step()
    assert [r.key for r, _o in sink.written[0].outputs] == [b"k0-0", b"k0-1"]
    assert consumer.committed_offsets == {P0: 2}  # P1 is its new owner's, from its committed offset
    assert not [s for s in consumer.seeks if s[0] == P1] and consumer.assignment() == {P0}
    assert runner.step() == 0 and len(sink.written) == 1  # P1 is not read again here


def test_two_phase_runs_one_batch_ahead_and_commits_each_batch_with_its_own_outputs():
    consumer = FakeConsumer(records_per_partition=4, partitions=1)
    stage = TwoPhaseEcho()
    sink = FakeSink()
    runner = make(stage, sink, consumer, batch_size=2)
    assert runner.step() == 0 and runner.pending  # batch 0 submitted, nothing written yet
    assert runner.step() == 2  # batch 1 submitted, batch 0 collected and written
    assert stage.collected == [0] and list(stage.submitted) == [0, 1]
    assert consumer.committed_offsets == {P0: 2}  # batch 0's offsets only, not batch 1's
    assert runner.step() == 2 and consumer.committed_offsets == {P0: 4}


def test_two_phase_batch_ahead_is_abandoned_when_the_batch_before_is_not_written():
    consumer = FakeConsumer(records_per_partition=4, partitions=1)
    stage = TwoPhaseEcho()
    runner = None
    sink = FakeSink(fail=10**6, on_write=lambda c, b: runner.stop())  # down; SIGTERM meanwhile
    runner = make(stage, sink, consumer, batch_size=2, shutdown_timeout_s=0.1)
    runner.step()
    assert runner.step() == 2  # batch 0 given up on shutdown
    assert stage.abandoned == [1] and not runner.pending  # batch 1 never written
    assert sink.written == [] and consumer.committed_offsets == {}


def test_two_phase_revocation_at_poll_gives_up_both_batches_of_that_partition_and_rewinds_it():
    consumer = FakeConsumer(records_per_partition=2)
    stage = TwoPhaseEcho()
    sink = FakeSink()
    runner = make(stage, sink, consumer, batch_size=2)
    runner.step()  # batch 0: P0's two records, ahead
    consumer.rebalances.append(Rebalance({P0}, assign_again={P0}))
    assert runner.step() == 2  # polls batch 1 (P1) with P0 revoked and given back
    assert sink.written == [] and P0 not in consumer.committed_offsets  # batch 0 was all P0: nothing to write
    assert consumer.position[P0] == 0  # batch 0 of P0 is read again
    runner.run(max_batches=3, idle_exit_s=0.5)
    assert sorted(sink.written_keys()) == [b"k0-0", b"k0-1", b"k1-0", b"k1-1"]
    assert consumer.committed_offsets == {P0: 2, P1: 2}


def test_a_stop_mid_step_finishes_the_step_then_abandons_the_batch_ahead_uncommitted():
    consumer = FakeConsumer(records_per_partition=6, partitions=1)
    stage = TwoPhaseEcho()
    runner = None
    sink = FakeSink(on_write=lambda c, b: runner.stop())  # SIGTERM while batch 0 is being written
    runner = make(stage, sink, consumer, batch_size=2)
    runner.run()
    assert [len(b.records) for b in sink.written] == [2]  # the step under way was finished
    assert consumer.committed_offsets == {P0: 2}  # and only its batch committed
    assert stage.abandoned == [1]
    assert sink.closed and stage.closed and consumer.closed_with_autocommit is False


@pytest.mark.parametrize("stage", [Echo(), TwoPhaseEcho()], ids=["one-batch", "two-phase"])
def test_run_closes_sink_stage_and_consumer_when_idle(stage):
    consumer = FakeConsumer(records_per_partition=3)
    sink = FakeSink()
    runner = make(stage, sink, consumer)
    runner.run(idle_exit_s=0.2)
    assert sorted(sink.written_keys()) == sorted(r.key for recs in consumer.log.values() for r in recs)
    assert consumer.committed_offsets == {P0: 3, P1: 3}
    assert sink.closed and stage.closed and consumer.closed_with_autocommit is False


def test_the_loop_marks_progress_only_while_it_holds_partitions():
    """A consumer that lost its partitions and is never given new ones is not alive for /healthz, however
    fast its loop turns (the kafka-python hang after an incomplete rebalance)."""
    consumer = FakeConsumer(records_per_partition=2)
    runner = make(consumer=consumer)
    runner.step()  # joined: partitions assigned
    runner.last_progress -= 1000
    runner.step()
    assert runner.progress_age() < 5
    consumer.rebalances.append(Rebalance(revoke={P0, P1}))  # out of the group ...
    runner.step()
    consumer.listener = None  # ... and never joins again
    runner.last_progress -= 1000
    for _ in range(3):
        assert runner.step() == 0
    assert runner.progress_age() >= 1000
