"""/healthz, /readyz and /metrics of a stage process (the ops server, in this process)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from newsflow.liveness import stall_after_s
from newsflow.ops import stage_ops
from newsflow.settings import Settings
from tests.ops.helpers import closed_port, wait_until
from tests.support.stages import env_for

pytestmark = pytest.mark.integration


def with_(s: Settings, **update) -> Settings:
    return Settings(**(s.model_dump() | update))


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def probed(port: int, *names: str):
    """The /readyz answer once every named dependency has been probed at least once."""
    def done():
        r = get(port, "/readyz")
        return r if set(names) <= set(r.json()["checks"]) else None
    return wait_until(done, timeout=60, what=f"a probe of {names}")


@pytest.mark.parametrize("down", ["kafka", "elasticsearch"])
def test_readyz_is_false_while_a_dependency_is_unreachable(make_settings, tmp_path, down):
    base = make_settings(state_dir=tmp_path)
    dead = closed_port()
    broken = {"kafka": {"kafka_bootstrap": f"127.0.0.1:{dead}"},
              "elasticsearch": {"es_url": f"http://127.0.0.1:{dead}"}}[down]
    s = with_(base, metrics_port=closed_port(), **broken)
    with stage_ops(s, "processor", group=s.group("processor"), topics=[s.topic_raw], probe_interval_s=1) as ops:
        r = probed(ops.port, "kafka", "elasticsearch")
        body = r.json()
        assert r.status_code == 503 and body["ok"] is False
        assert body["checks"][down]["ok"] is False
        assert str(dead) in body["checks"][down]["detail"] or "Connect" in body["checks"][down]["detail"]
        up = {"kafka", "elasticsearch"} - {down}
        assert all(body["checks"][u]["ok"] for u in up)
        # the process is alive all the same: liveness is not readiness
        assert get(ops.port, "/healthz").status_code == 200
        metrics = get(ops.port, "/metrics").text
        assert f'newsflow_dependency_up{{dependency="{down}"}} 0.0' in metrics


def test_readyz_is_true_with_both_up_and_lag_is_exported(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path, metrics_port=closed_port())
    with stage_ops(s, "indexer", group=s.group("indexer"), topics=[s.topic_enriched], probe_interval_s=1) as ops:
        r = probed(ops.port, "kafka", "elasticsearch")
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True
        text = get(ops.port, "/metrics").text
        for partition in range(s.topic_partitions):
            assert (f'newsflow_consumer_lag{{partition="{partition}",stage="indexer",'
                    f'topic="{s.topic_enriched}"}} 0.0') in text
        assert 'newsflow_stage_info{instance="' + s.instance_id + '",stage="indexer"' in text
        entry = json.loads(ops.registry_file.read_text())
        assert entry["port"] == ops.port and entry["stage"] == "indexer"
    assert not ops.registry_file.exists()


def test_healthz_fails_when_the_main_loop_stalls(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path, metrics_port=closed_port())
    age = {"s": 1.0}
    with stage_ops(s, "processor", progress_age=lambda: age["s"], stall_after_s=600) as ops:
        r = get(ops.port, "/healthz")
        assert r.status_code == 200 and r.json()["last_progress_s"] == 1.0
        age["s"] = 900.0
        r = get(ops.port, "/healthz")
        assert r.status_code == 503 and r.json()["ok"] is False
        assert get(ops.port, "/nope").status_code == 404


def test_a_taken_metrics_port_falls_back_to_a_free_one(make_settings, tmp_path):
    s = make_settings(state_dir=tmp_path, metrics_port=closed_port())
    with stage_ops(s, "poller") as first, stage_ops(s, "poller") as second:
        assert first.port == s.metrics_port and second.port not in (None, first.port)
        assert get(second.port, "/healthz").status_code == 200


def test_healthz_waits_out_the_processors_own_worst_batch(make_settings, tmp_path):
    """A processor batch of slow pages past 600 s is alive; past the bound derived from its settings it is not."""
    s = make_settings(state_dir=tmp_path, metrics_port=closed_port(), batch_size=100, extract_timeout_s=30.0,
                      extract_workers=2)
    bound = stall_after_s(s, "processor")  # 2 x 100 x 30 / 2 + 60 = 3060 s
    age = {"s": 900.0}
    with stage_ops(s, "processor", progress_age=lambda: age["s"], stall_after_s=bound) as ops:
        r = get(ops.port, "/healthz")
        assert r.status_code == 200 and r.json()["stall_after_s"] == bound == 3060.0
        assert f'newsflow_stall_after_seconds{{stage="processor"}} {bound}' in get(ops.port, "/metrics").text
        age["s"] = bound + 1
        assert get(ops.port, "/healthz").status_code == 503


def healthcheck_cli(s: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newsflow.cli", "healthcheck", *args], env=env_for(s),
                          capture_output=True, text=True, timeout=60)


def test_newsflow_healthcheck_exits_by_healthz(make_settings, tmp_path):
    """The container HEALTHCHECK (the slim image has no curl): 0 while the stage's /healthz is 200, 1 once it
    stalls, 1 when no stage runs here."""
    s = make_settings(state_dir=tmp_path, metrics_port=closed_port())
    none = healthcheck_cli(s)
    assert none.returncode == 1 and "no live stage process registered" in none.stdout
    age = {"s": 1.0}
    with stage_ops(s, "indexer", progress_age=lambda: age["s"], stall_after_s=600) as ops:
        good = healthcheck_cli(s)
        assert good.returncode == 0, good.stdout + good.stderr
        assert f":{ops.port}/healthz 200" in good.stdout
        assert healthcheck_cli(s, "--stage", "processor").returncode == 1  # no processor here
        age["s"] = 601.0
        bad = healthcheck_cli(s, "--stage", "indexer")
        assert bad.returncode == 1 and "503" in bad.stdout
