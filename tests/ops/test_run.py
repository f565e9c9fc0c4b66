"""`newsflow run` on the demo site: /metrics series, status, supervision, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from newsflow.demo import DemoSite, indexed
from newsflow.kafka_io import make_producer
from newsflow.settings import REPO_ROOT
from newsflow.supervisor import pid_alive, restart_delay
from tests.ops.helpers import (env_for, free_port_block, newsflow, samples, scrape, stage_entries,
                               supervisor_entry, value, wait_until)

STAGES = {"poller", "processor", "indexer"}


def test_restart_backoff_doubles_up_to_the_cap():
    assert [restart_delay(n, 60) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert restart_delay(3, 2.5) == 2.5


def stop(proc: subprocess.Popen, settings) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=settings.shutdown_timeout_s + 30)


@pytest.mark.integration
def test_demo_run_exposes_the_named_series_and_stops_cleanly(make_settings, tmp_path):
    with DemoSite() as site:
        s = make_settings(feeds_file=site.write_feed_list(tmp_path), state_dir=tmp_path / "state",
                          metrics_port=free_port_block(3), log_format="json")
        producer = make_producer(s)  # a poison record: the processor dead-letters it
        producer.send(s.topic_raw, key=b"poison-article", value=b"{not json")
        producer.close()
        log = tmp_path / "run.log"
        run = newsflow(s, "run", stderr=log)
        try:
            wait_until(lambda: indexed(s, site.feed_url) == site.article_count(), timeout=240,
                       what="every demo article indexed")
            entries = wait_until(lambda: (e := stage_entries(s)) and set(e) == STAGES and e, timeout=30,
                                 what="three registered stages")
            assert {e["port"] for e in entries.values()} == {s.metrics_port + i for i in range(3)}

            proc = samples(entries["processor"])
            assert value(proc, "newsflow_records_in_total", stage="processor") >= site.article_count() + 1
            assert value(proc, "newsflow_records_out_total", stage="processor") >= site.article_count()
            assert value(proc, "newsflow_dead_letters_total", stage="processor", reason="invalid_raw_record") == 1
            assert value(proc, "newsflow_batch_seconds_count", stage="processor") >= 1
            assert value(proc, "newsflow_extraction_timeouts_total") is not None
            for p in range(s.topic_partitions):
                assert value(proc, "newsflow_consumer_lag", stage="processor", topic=s.topic_raw,
                             partition=str(p)) is not None
            assert "# TYPE newsflow_records_dropped_total counter" in scrape(entries["processor"]).text

            idx = samples(entries["indexer"])
            assert value(idx, "newsflow_records_out_total", stage="indexer") >= site.article_count()
            assert value(idx, "newsflow_end_to_end_seconds_count") >= site.article_count()
            assert value(idx, "newsflow_es_bulk_seconds_count") >= 1
            assert value(idx, "newsflow_es_bulk_retries_total") is not None
            assert value(idx, "newsflow_consumer_lag", stage="indexer", topic=s.topic_enriched,
                         partition="0") is not None

            poll = samples(entries["poller"])
            assert value(poll, "newsflow_stage_info", stage="poller") == 1
            assert value(poll, "newsflow_dependency_up", dependency="kafka") == 1
            assert value(poll, "newsflow_dependency_up", dependency="elasticsearch") == 1

            status = subprocess.run([sys.executable, "-m", "newsflow.cli", "status", "--json"], cwd=REPO_ROOT,
                                    env=env_for(s), capture_output=True, text=True, timeout=120)
            report = json.loads(status.stdout)
            assert {st["stage"] for st in report["stages"]} == STAGES
            assert all(st["health"]["ok"] and st["ready"]["ok"] for st in report["stages"])
            assert report["elasticsearch"]["docs"] == site.article_count()
            assert sum(i["docs"] for i in report["elasticsearch"]["indices"] if i["in_alias"]) == site.article_count()
            assert report["kafka"]["dlq"]["records"] == 1
            assert {(r["stage"], r["topic"]) for r in report["kafka"]["lag"]} >= {
                ("processor", s.topic_raw), ("indexer", s.topic_enriched)}
            children = [c["pid"] for c in supervisor_entry(s)["children"].values()]
        finally:
            code = stop(run, s)
    assert code == 0
    assert not any(pid_alive(p) for p in children), "a stage outlived `newsflow run`"
    assert stage_entries(s) == {} and supervisor_entry(s) is None

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"timestamp", "level", "event"} <= set(line) for line in lines)
    poison = [line for line in lines if line.get("article_id") == "poison-article"]
    assert poison and poison[0]["stage"] == "processor"
    assert {line.get("stage") for line in lines} >= STAGES | {"supervisor"}


@pytest.mark.integration
def test_supervisor_restarts_a_killed_stage_and_stops_everything(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path / "state")
    run = newsflow(s, "run", "--stages", "processor,indexer", "--max-backoff", "2")
    seen: set[int] = set()
    try:
        first = wait_until(lambda: (e := supervisor_entry(s)) and all(c["pid"] for c in e["children"].values())
                           and set(stage_entries(s)) == {"processor", "indexer"} and e, timeout=120,
                           what="both stages running")
        victim = first["children"]["processor"]["pid"]
        seen |= {c["pid"] for c in first["children"].values()}
        os.kill(victim, signal.SIGKILL)

        def restarted():
            e = supervisor_entry(s)
            c = e and e["children"]["processor"]
            if c and c["restarts"] >= 1 and c["pid"] not in (None, victim) and \
                    stage_entries(s).get("processor", {}).get("pid") == c["pid"]:
                return c
            return None

        child = wait_until(restarted, timeout=120, what="the processor restarted")
        seen.add(child["pid"])
        assert child["last_exit"] == -signal.SIGKILL
        assert supervisor_entry(s)["children"]["indexer"]["restarts"] == 0
    finally:
        code = stop(run, s)
    assert code == 0
    assert not any(pid_alive(p) for p in seen)


@pytest.mark.integration
def test_stages_die_with_a_killed_supervisor(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path / "state")
    run = newsflow(s, "run", "--stages", "processor")
    try:
        entry = wait_until(lambda: (e := supervisor_entry(s)) and e["children"]["processor"]["pid"] and e,
                           timeout=120, what="the processor started")
        child = entry["children"]["processor"]["pid"]
        wait_until(lambda: "processor" in stage_entries(s), timeout=120, what="the processor registered")
    finally:
        run.kill()
        run.wait()
    wait_until(lambda: not pid_alive(child), timeout=s.shutdown_timeout_s + 30, what="the orphaned stage to exit")


@pytest.mark.integration
def test_newsflow_stop_stops_a_run_started_elsewhere(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path / "state")
    run = newsflow(s, "run", "--stages", "indexer")
    try:
        wait_until(lambda: "indexer" in stage_entries(s), timeout=120, what="the indexer running")
        child = stage_entries(s)["indexer"]["pid"]
        done = subprocess.run([sys.executable, "-m", "newsflow.cli", "stop"], cwd=REPO_ROOT, env=env_for(s),
                              capture_output=True, text=True, timeout=s.shutdown_timeout_s + 30)
        assert done.returncode == 0 and f"stopped newsflow run pid(s) {run.pid}" in done.stdout
        assert run.wait(timeout=10) == 0
        assert not pid_alive(child)
    finally:
        if run.poll() is None:
            run.kill()
    again = subprocess.run([sys.executable, "-m", "newsflow.cli", "stop"], cwd=REPO_ROOT, env=env_for(s),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "no newsflow run is running" in again.stdout
