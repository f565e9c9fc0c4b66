"""Run one poller cycle (``newsflow poll --once``) as a subprocess and collect what it left behind:
records in ``articles.raw`` and the DLQ, and every feed's health as ``newsflow feeds status`` shows it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ingest.status import status_rows
from ingest.store import load_catalog
from newsflow.schema import article_id
from newsflow.settings import Settings
from tests.chaos import audit as au
from tests.chaos.procs import StageProcess, guard_violations
from ingest.urls import canonical_url

MiB = 1024 * 1024

# Explicit limits of the suite. A poller (or processor) past them fails its case.
POLLER_RSS_LIMIT_MIB = 400
PROCESSOR_RSS_LIMIT_MIB = 1500  # the stage with its extraction workers (spaCy model loaded in each)
CASE_TIME_LIMIT_S = 90.0

HOSTILE_OVERRIDES = dict(
    connect_timeout_s=2.0,
    read_timeout_s=3.0,
    total_timeout_s=6.0,
    host_rate_per_s=500.0,
    host_concurrency=8,
    poll_batch_s=30.0,
    metrics_port=0,
    log_level="INFO",
)


@dataclass
class Cycle:
    code: int
    seconds: float
    peak_rss: int
    timed_out: bool
    raw_ids: set[str]
    dead: list  # DLQ records
    health: dict[str, dict]  # feed url -> status row
    guard: list[str]
    log_tail: str
    extra: dict = field(default_factory=dict)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / MiB

    def dead_for(self, url: str) -> list[dict[str, str]]:
        aid = article_id(canonical_url(url))
        return [au.headers(r) for r in self.dead if (r.key or b"").decode() == aid]

    def produced(self, url: str) -> bool:
        return article_id(canonical_url(url)) in self.raw_ids


def write_feeds(path: Path, urls: list[str]) -> Path:
    path.write_text("feeds:\n" + "".join(f"  - url: {u}\n" for u in urls), encoding="utf-8")
    return path


def poll_once(settings: Settings, workdir: Path, *, hosts: dict[str, str] | None = None,
              limit_s: float = CASE_TIME_LIMIT_S, name: str = "poller") -> Cycle:
    proc = StageProcess(name, ["poll", "--once"], settings, workdir, hosts=hosts)
    started = time.monotonic()
    proc.start()
    code, timed_out = proc.wait_exit(limit_s)
    seconds = time.monotonic() - started
    defs, states = load_catalog(settings)
    rows = {r["url"]: r for r in status_rows(defs, states)}
    return Cycle(
        code=code, seconds=seconds, peak_rss=proc.peak_rss, timed_out=timed_out,
        raw_ids={(r.key or b"").decode() for r in au.read_topic(settings, settings.topic_raw)},
        dead=au.read_topic(settings, settings.topic_dlq), health=rows,
        guard=guard_violations(proc.guard_log), log_tail=proc.tail(30),
    )
