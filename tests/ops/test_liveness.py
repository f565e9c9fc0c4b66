"""/healthz's liveness bound comes from the stage's own settings (newsflow/liveness.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from newsflow.liveness import FLOOR_S, MARGIN_S, stall_after_s, worst_batch_s
from newsflow.settings import Settings
from newsflow.stage.runner import StageRunner


@pytest.mark.parametrize(("stage", "settings", "worst"), [
    # two batches of extraction timeouts over the workers: 2 x 200 x 20 s / 2 = 4000 s
    ("processor", {}, 4000.0),
    ("processor", {"batch_size": 50, "extract_timeout_s": 10.0, "extract_workers": 4}, 250.0),
    ("processor", {"batch_size": 500, "extract_timeout_s": 60.0, "extract_workers": 1}, 60000.0),
    ("poller", {}, 90.0),  # poll_batch_s 60 + total_timeout_s 30
    ("poller", {"poll_batch_s": 300.0, "total_timeout_s": 600.0}, 900.0),
    ("indexer", {}, 128.0),  # index creation + one bulk (30 s each) + backoff 8 s + DLQ flush and ack
    ("indexer", {"es_bulk_max_backoff_s": 600.0}, 720.0),
])
def test_the_worst_batch_follows_the_stage_settings(stage, settings, worst):
    s = Settings(**settings)
    assert worst_batch_s(s, stage) == worst
    assert stall_after_s(s, stage) == max(FLOOR_S, worst + MARGIN_S)


def test_a_slow_processor_batch_is_not_a_stall():
    """The default processor batch (200 pages that each may take the 20 s extraction timeout) can
    legitimately run past the old fixed 600 s: the bound must cover it, or a slow site restarts the pod."""
    s = Settings()
    slowest_legit_batch = s.batch_size * s.extract_timeout_s / s.extract_workers
    assert slowest_legit_batch > 600
    assert stall_after_s(s, "processor") > slowest_legit_batch


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        worst_batch_s(Settings(), "reindexer")


def test_the_sink_heartbeat_counts_as_progress():
    now = time.monotonic()
    runner = SimpleNamespace(last_progress=now - 1000, sink=SimpleNamespace(last_progress=now - 5))
    assert StageRunner.progress_age(runner) < 10
    runner.sink = SimpleNamespace(last_progress=None)  # a sink without a heartbeat (Sink's default): the main loop's alone
    assert StageRunner.progress_age(runner) >= 1000
