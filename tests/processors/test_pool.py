"""The extraction pool's hard limits, with real worker processes (no Kafka)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import psutil
import pytest
import structlog

from newsflow.logs import configure_logging
from newsflow.settings import Settings
from newsflow.stage.outcomes import Quarantine
from processors.pool import ExtractionPool, WorkerConfig, WorkerDied, WorkerResult
from tests.processors.kafka_helpers import raw_record, synthetic_page
from tests.processors.pages import slow_html


def settings(**over) -> Settings:
    return Settings(**({"enrich": False, "metrics_port": 0, "extract_workers": 1} | over))


@pytest.fixture
def pool_factory():
    made: list[ExtractionPool] = []

    def make(**over) -> ExtractionPool:
        pool = ExtractionPool(settings(**over))
        made.append(pool)
        return pool

    yield make
    for p in made:
        p.close()


def value(i: int = 0) -> bytes:
    return raw_record(f"https://council.example/items/{i}", synthetic_page(i)).to_bytes()


def workers_of(pool_pids: list[int]) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in pool_pids if psutil.pid_exists(pid)]


def test_timeout_kills_the_worker_and_the_pool_goes_on(pool_factory):
    pool = pool_factory(extract_timeout_s=1.0)
    [pid] = pool.start()
    slow, after = pool.run([raw_record("https://a.example/slow", slow_html()).to_bytes(), value()])
    assert isinstance(slow, Quarantine) and slow.reason == "extract_timeout"
    assert isinstance(after, WorkerResult) and after.pid != pid  # a new worker took over
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_workers_load_numpy_with_one_blas_thread(pool_factory):
    """The fork server, where numpy is loaded, starts with single-threaded BLAS (processors/pool.py)."""
    pool = pool_factory()
    [pid] = pool.start()
    fork_server = psutil.Process(pid).parent()
    assert "forkserver" in " ".join(fork_server.cmdline())
    assert fork_server.environ().get("OPENBLAS_NUM_THREADS") == "1"


def test_a_worker_that_dies_under_a_document_is_retryable(pool_factory):
    pool = pool_factory(extract_timeout_s=60)
    [pid] = pool.start()
    killer = threading.Timer(1.0, lambda: psutil.Process(pid).kill())
    killer.start()
    try:
        [outcome] = pool.run([raw_record("https://a.example/slow", slow_html()).to_bytes()])
    finally:
        killer.cancel()
    assert isinstance(outcome, WorkerDied)  # not quarantined: the runner retries it (max_attempts)
    [ok] = pool.run([value(1)])
    assert isinstance(ok, WorkerResult)


def test_memory_limit_turns_an_oversized_parse_into_a_dead_letter(pool_factory):
    probe = pool_factory()
    [pid] = probe.start()
    baseline_mb = psutil.Process(pid).memory_info().vms // (1024 * 1024)
    probe.close()
    pool = pool_factory(extract_memory_mb=int(baseline_mb) + 150, max_page_bytes=20_000_000, extract_timeout_s=120)
    pool.start()
    huge = ("<html><body>" + "".join(f"<div class='a{i}'><p>w{i} " + "x" * 50 + "</p></div>" for i in range(60_000))
            + "</body></html>").encode()
    [outcome] = pool.run([raw_record("https://a.example/huge", huge).to_bytes()])
    assert isinstance(outcome, (Quarantine, WorkerDied)), outcome
    if isinstance(outcome, Quarantine):
        assert outcome.reason == "extract_memory"
    [ok] = pool.run([value(2)])
    assert isinstance(ok, WorkerResult)


def test_workers_that_cannot_start_fail_the_stage_loudly(pool_factory):
    pool = pool_factory(extract_memory_mb=64)  # far too little to even import the models
    with pytest.raises(RuntimeError, match="cannot start"):
        pool.start()


def test_size_guard_before_parsing(pool_factory):
    pool = pool_factory(max_page_bytes=10_000)
    started = time.monotonic()
    [outcome] = pool.run([raw_record("https://a.example/big", b"<html>" + b"x" * 20_000).to_bytes()])
    assert isinstance(outcome, Quarantine) and outcome.reason == "page_too_large"
    assert time.monotonic() - started < 60


def test_what_a_worker_logs_about_a_page_carries_its_article_id(monkeypatch):
    """process_value (the worker's side) runs the chain inside the article's log context."""
    import processors.pool as pool_module
    from processors import extract

    def unreadable(blocks, doc):
        raise ValueError("broken JSON-LD")

    monkeypatch.setattr(extract, "read_ld_meta", unreadable)
    monkeypatch.setattr(pool_module, "_worker", pool_module._Worker(WorkerConfig.from_settings(settings())))
    raw = raw_record("https://council.example/items/log", synthetic_page(3))
    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(Settings(log_format="json", metrics_port=0), stream=out)  # as init_worker does
        pool_module.process_value(raw.to_bytes())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    logged = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert [(r["event"][:27], r.get("article_id")) for r in logged] == [("JSON-LD metadata unreadable", raw.id)]
