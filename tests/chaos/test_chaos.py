"""Fault injection on the real stack: processes killed for real, broker restarted, ES stopped.

Each case runs the scripted scenario (``CHAOS_ARTICLES`` distinct articles, default 10,000, from
the generated Newsroom), injects its fault while the stream flows, and compares the documents in
Elasticsearch with the expected canonical URLs. Goal for every case: 0 lost, 0 duplicated, lag
drained. Each case prints one line of the chaos table (``case, sent, indexed, lost, duplicated,
dlq, seconds``); the whole table is printed at the end of the session.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from tests.chaos import audit as au
from tests.chaos.newsroom import Newsroom
from tests.chaos.poison import inject_poison
from tests.chaos.scenario import CHAOS_OVERRIDES, Pipeline, assert_clean

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(1800)]

N_ARTICLES = int(os.environ.get("CHAOS_ARTICLES", "10000"))
N_FEEDS = max(1, N_ARTICLES // 100)
KILLS = int(os.environ.get("CHAOS_KILLS", "10"))
DEADLINE_S = float(os.environ.get("CHAOS_DEADLINE_S", "900"))
SEED = int(os.environ.get("CHAOS_SEED", time.time_ns() % 2**32))  # printed in each case's notes
# When a kill lands: a random delay in [min, max] seconds after the stage made progress again, or,
# with CHAOS_KILL_AFTER_PROGRESS=0, after its restart whatever it is doing (joining, initialising...).
KILL_DELAY_S = tuple(float(x) for x in os.environ.get("CHAOS_KILL_DELAY_S", "0,2").split(","))
KILL_AFTER_PROGRESS = os.environ.get("CHAOS_KILL_AFTER_PROGRESS", "1") != "0"
KAFKA_FAULT = os.environ.get("CHAOS_KAFKA_FAULT", "restart")  # restart | kill9
ES_FAULT = os.environ.get("CHAOS_ES_FAULT", "stop")  # stop | kill9
BROKER_DOWN_S = float(os.environ.get("CHAOS_BROKER_DOWN_S", "30"))  # one broker of the cluster down this long


@pytest.fixture
def room():
    r = Newsroom(N_ARTICLES, N_FEEDS).start()
    yield r
    r.stop()


def _pipeline(make_settings, room, tmp_path, **overrides):
    feeds = tmp_path / "feeds.yaml"
    room.write_feeds_file(feeds)
    settings = make_settings(feeds_file=feeds, **(CHAOS_OVERRIDES | overrides))
    p = Pipeline.create(settings, room, tmp_path)
    yield p
    p.stop_all()


@pytest.fixture
def pipeline(make_settings, room, tmp_path):
    yield from _pipeline(make_settings, room, tmp_path)


@pytest.fixture
def cluster_pipeline(make_settings, room, tmp_path, chaos_cluster):
    """The scenario on the 3-broker cluster: replication 3, min.insync.replicas 2."""
    yield from _pipeline(make_settings, room, tmp_path, kafka_bootstrap=chaos_cluster.bootstrap,
                         **chaos_cluster.replication())


def test_no_fault_baseline(pipeline, record_case):
    pipeline.start()
    result = pipeline.finish("baseline (no fault)", pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    record_case(result)
    assert_clean(result, pipeline)
    assert result.dlq == 0


def _kill_repeatedly(pipeline, stage: str, measure, rnd: random.Random) -> int | None:
    """kill -9 ``stage`` KILLS times, each at a random moment after it made progress again
    (``CHAOS_KILL_DELAY_S``, ``CHAOS_KILL_AFTER_PROGRESS``).

    Returns how many kills landed while work was still flowing (the others hit an idle stage,
    once everything was indexed: still a valid moment, but worth knowing); None when not watched.
    """
    proc = pipeline.procs[stage]
    mid_stream = 0
    for _ in range(KILLS):
        if KILL_AFTER_PROGRESS:
            mid_stream += pipeline.wait_progress(measure)
        time.sleep(rnd.uniform(*KILL_DELAY_S))
        pipeline.check_alive()
        proc.kill9()
        proc.start()
    return mid_stream if KILL_AFTER_PROGRESS else None


def test_kill9_processor_repeatedly(pipeline, record_case):
    rnd = random.Random(SEED)
    pipeline.start()
    enriched = pipeline.settings.topic_enriched
    mid = _kill_repeatedly(pipeline, "processor", lambda: pipeline.topic_size(enriched), rnd)
    result = pipeline.finish(f"kill -9 processor x{KILLS}", pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    result.notes.update(kills_mid_stream=mid, seed=SEED)
    record_case(result)
    assert pipeline.procs["processor"].kills == KILLS
    assert_clean(result, pipeline)


def test_kill9_indexer_repeatedly(pipeline, record_case):
    rnd = random.Random(SEED)
    pipeline.start()
    mid = _kill_repeatedly(pipeline, "indexer", pipeline.indexed, rnd)
    result = pipeline.finish(f"kill -9 indexer x{KILLS}", pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    result.notes.update(kills_mid_stream=mid, seed=SEED)
    record_case(result)
    assert pipeline.procs["indexer"].kills == KILLS
    assert_clean(result, pipeline)


def test_kafka_broker_restart_mid_run(pipeline, chaos_stack, record_case):
    pipeline.start()
    pipeline.wait_indexed(N_ARTICLES // 5, timeout_s=DEADLINE_S)
    if KAFKA_FAULT == "kill9":
        chaos_stack.kill9("kafka")
        chaos_stack.up("kafka")
    else:
        chaos_stack.restart("kafka")
    pipeline.check_alive()
    result = pipeline.finish(f"kafka broker {'kill -9 + start' if KAFKA_FAULT == 'kill9' else 'restart'}",
                             pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    record_case(result)
    assert_clean(result, pipeline)


def test_kill9_one_broker_of_three(cluster_pipeline, chaos_cluster, record_case):
    """A 3-broker cluster loses the broker that leads the most partitions of the pipeline's topics
    (kill -9) mid-stream; the stream goes on with two (min.insync.replicas 2), the broker comes
    back, catches up, and every partition has its 3 in-sync replicas again."""
    pipeline = cluster_pipeline
    s = pipeline.settings
    topics = [s.topic_raw, s.topic_enriched, s.topic_dlq, s.topic_feeds, s.topic_feed_state]
    assert {len(p.replicas) for p in au.replicas(s, topics)} == {3}
    assert set(au.topic_config(s, topics, "min.insync.replicas").values()) == {"2"}
    pipeline.start()
    pipeline.wait_indexed(N_ARTICLES // 5, timeout_s=DEADLINE_S)
    leaders = Counter(p.leader for p in au.replicas(s, [s.topic_raw, s.topic_enriched]))
    victim = leaders.most_common(1)[0][0]
    indexed_at_kill = pipeline.indexed()
    chaos_cluster.kill9("kafka", node=victim)
    down_at = time.monotonic()
    while time.monotonic() - down_at < BROKER_DOWN_S:
        pipeline.check_alive()  # a stage dying of the lost broker is recorded (and fails the case)
        time.sleep(1)
    indexed_while_down = pipeline.indexed() - indexed_at_kill
    chaos_cluster.up("kafka")  # starts the missing node only
    result = pipeline.finish(f"kill -9 1 of 3 brokers, {BROKER_DOWN_S:.0f} s", pipeline.room.expected_urls(),
                             timeout_s=DEADLINE_S)
    deadline = time.monotonic() + 180
    while (short := [p for p in au.replicas(s, topics) if len(p.isr) < 3]) and time.monotonic() < deadline:
        time.sleep(2)
    result.notes.update(victim_broker=victim, partitions_it_led=leaders[victim], indexed_while_down=indexed_while_down,
                        under_replicated_at_end=len(short))
    record_case(result)
    assert_clean(result, pipeline)
    assert indexed_while_down > 0, "nothing was indexed while one broker of three was down"
    assert not short, f"partitions without 3 in-sync replicas after the broker came back: {short}"


def test_elasticsearch_down_60s(pipeline, chaos_stack, record_case):
    pipeline.start()
    pipeline.wait_indexed(N_ARTICLES // 5, timeout_s=DEADLINE_S)
    if ES_FAULT == "kill9":
        chaos_stack.kill9("es")
    else:
        chaos_stack.down("es")
    down_at = time.monotonic()
    while time.monotonic() - down_at < 60:
        pipeline.check_alive()  # a stage dying of the outage is recorded (and fails the case)
        time.sleep(1)
    chaos_stack.up("es")
    result = pipeline.finish(f"elasticsearch {'kill -9' if ES_FAULT == 'kill9' else 'down'} 60 s",
                             pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    result.notes["es_outage_s"] = round(time.monotonic() - down_at)
    record_case(result)
    assert_clean(result, pipeline)


def test_kill9_poller_mid_cycle(pipeline, record_case):
    """No article page is fetched twice after the restart, unless its entry changed meanwhile.

    A page whose article never reached ``articles.raw`` before the kill (in flight) must be fetched
    again, or it would be lost; a page whose article did reach it must not be.
    """
    room = pipeline.room
    s = pipeline.settings
    pipeline.start()
    # Kill once some pages are in Kafka while the poller is fetching others (fetched, not yet sent).
    while pipeline.topic_size(s.topic_raw) < N_ARTICLES * 0.3:
        pipeline.check_alive()
        time.sleep(0.2)
    deadline = time.monotonic() + 120
    while sum(room.page_fetches().values()) < pipeline.topic_size(s.topic_raw) + 50:
        assert time.monotonic() < deadline, "the poller never had pages in flight"
        time.sleep(0.01)
    pipeline.procs["poller"].kill9()
    before = room.page_fetches()
    in_raw = {r.key.decode() for r in au.read_topic(s, s.topic_raw)}
    from newsflow.schema import article_id

    produced = {i for i in range(N_ARTICLES) if article_id(room.page_url(i)) in in_raw}
    edited = set(sorted(produced)[: max(1, len(produced) // 100)])  # 1 % of the stories get edited
    room.edit(edited)
    pipeline.procs["poller"].start()
    result = pipeline.finish("kill -9 poller mid-cycle", room.expected_urls(), timeout_s=DEADLINE_S)
    after = room.page_fetches()
    refetched = sorted(i for i in produced - edited
                       if after[room.page_path(i)] > before[room.page_path(i)])
    in_flight = [i for i in range(N_ARTICLES) if before[room.page_path(i)] and i not in produced]
    result.notes["in_flight_at_kill"] = len(in_flight)
    result.notes["edited_refetched"] = sum(after[room.page_path(i)] > before[room.page_path(i)] for i in edited)
    result.notes.update(pages_fetched_before_kill=sum(before.values()), produced_before_kill=len(produced),
                        edited=len(edited), refetched_unchanged=len(refetched))
    record_case(result)
    print(f"  poller: {len(produced)} articles in Kafka at the kill, {len(edited)} edited, "
          f"{len(refetched)} unchanged pages fetched again", flush=True)
    assert_clean(result, pipeline)
    assert not refetched, f"pages fetched again after the restart although unchanged: {refetched[:10]}"


def test_poison_records_reach_the_dlq(pipeline, record_case):
    s = pipeline.settings
    early = inject_poison(s)
    pipeline.start()
    pipeline.wait_indexed(N_ARTICLES // 3, timeout_s=DEADLINE_S)
    late = inject_poison(s, feed_tables=True)  # mid-stream, between good records
    poisons = early + late
    result = pipeline.finish("poison records", pipeline.room.expected_urls(), timeout_s=DEADLINE_S)
    dead = au.read_topic(s, s.topic_dlq)
    by_origin = {}
    for r in dead:
        h = au.headers(r)
        by_origin[(h.get("nf-topic"), h.get("nf-partition"), h.get("nf-offset"))] = h
    missing = [p for p in poisons if (p.topic, str(p.partition), str(p.offset)) not in by_origin]
    unexplained = [h for h in by_origin.values() if not h.get("nf-error-class") or not h.get("nf-error")]
    result.notes.update(poison=len(poisons), poison_missing=len(missing))
    record_case(result)
    print(f"  poison: {len(poisons)} injected over {len({p.topic for p in poisons})} topics, "
          f"{len(poisons) - len(missing)} in the DLQ with a reason", flush=True)
    assert not missing, f"poison records not dead-lettered: {[p.kind for p in missing]}"
    assert not unexplained, f"dead letters without a reason: {unexplained[:3]}"
    assert result.dlq == len(poisons), f"{result.dlq} dead letters for {len(poisons)} poison records"
    assert_clean(result, pipeline)
