"""deploy/prometheus/alerts.yml against its promtool unit tests (deploy/prometheus/alerts.test.yml).

The unit tests run with ``promtool test rules`` when promtool is installed (``make promtool`` unpacks
Debian's into ``.local/bin``); the coverage check below runs everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from newsflow.settings import REPO_ROOT

PROM = REPO_ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
TESTS = PROM / "alerts.test.yml"


def promtool() -> str | None:
    local = REPO_ROOT / ".local" / "bin" / "promtool"
    return os.environ.get("PROMTOOL") or shutil.which("promtool") or (str(local) if local.is_file() else None)


def alert_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not():
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alert_names() - fires == set(), "alerts never shown firing in alerts.test.yml"
    assert alert_names() - quiet == set(), "alerts never shown quiet"


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (make promtool fetches it from Debian; or put it on PATH / set PROMTOOL)")
    return subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules():
    done = run_promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_every_alert_pass():
    done = run_promtool("test", "rules", TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_catch_a_wrong_alert(tmp_path: Path):
    """The suite can fail: with the old stuck-feeds rule (which needed the polls counter) it does."""
    wrong = RULES.read_text().replace(
        "time() - min by (instance) (newsflow_ingest_oldest_due_timestamp_seconds) > 3600",
        "sum(newsflow_ingest_feeds) > 0 and sum(increase(newsflow_ingest_polls_total[1h])) == 0")
    assert wrong != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(wrong)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (make promtool fetches it from Debian; or put it on PATH / set PROMTOOL)")
    done = subprocess.run([tool, "test", "rules", TESTS.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "NewsflowFeedsStuck" in done.stdout + done.stderr
