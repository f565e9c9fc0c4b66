"""One fault-injection scenario: a Newsroom, the three stages as subprocesses, and the audit.

    newsroom (127.0.0.1) --> poller --> raw --> processor --> enriched --> indexer --> ES alias
                                                 (each a real ``newsflow`` subprocess)

A test starts the pipeline, injects its fault while the stream flows, waits until the expected
articles are searchable (or a deadline passes), stops the stages gracefully, and audits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from newsflow.settings import Settings
from tests.chaos import audit as au
from tests.chaos.newsroom import Newsroom
from tests.chaos.procs import StageProcess, guard_violations

# Stage settings for the scenarios (tests/chaos/README.md says why).
CHAOS_OVERRIDES = dict(
    enrich=False,               # ~tens of ms/article with spaCy on 2 cores; the faults are the point here
    host_rate_per_s=2000.0,     # every page comes from one local host
    host_concurrency=16,
    fetch_concurrency=32,
    batch_size=200,
    batch_wait_ms=200,
    topic_partitions=3,
    poll_interval_s=3600.0,     # one poll cycle per scenario (a restart polls again)
    poll_batch_s=5.0,           # the poller delivers every 5 s, so a kill finds some pages sent, some in flight
    poll_min_interval_s=60.0,
    total_timeout_s=30.0,
    shutdown_timeout_s=20.0,
    log_level="INFO",
)


@dataclass
class Pipeline:
    settings: Settings
    room: Newsroom
    workdir: Path
    procs: dict[str, StageProcess] = field(default_factory=dict)
    started: float = 0.0
    crashes: dict[str, list[str]] = field(default_factory=dict)  # stage -> last log lines of each crash

    @classmethod
    def create(cls, settings: Settings, room: Newsroom, workdir: Path) -> Pipeline:
        p = cls(settings, room, workdir)
        p.procs = {
            "poller": StageProcess("poller", ["poll"], settings, workdir),
            "processor": StageProcess("processor", ["process"], settings, workdir),
            "indexer": StageProcess("indexer", ["index"], settings, workdir),
        }
        return p

    def start(self, *names: str) -> None:
        if not self.started:
            self.started = time.monotonic()
        for n in names or ("indexer", "processor", "poller"):
            self.procs[n].start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_alive(self) -> None:
        """Act as the supervisor (``newsflow run``) would: a stage that died on its own (not killed by
        the test) is restarted at once. Each crash is recorded, and fails the case at the end."""
        for name, p in self.procs.items():
            if p.proc is not None and p.starts and not p.alive() and p.proc.returncode != -9:
                code = p.proc.returncode
                p.wait_exit(5)
                self.crashes.setdefault(name, []).append(f"exit {code}: " + p.tail(3)[-600:])
                p.start()

    def indexed(self) -> int:
        try:
            return au.es_count(self.settings)
        except Exception:  # noqa: BLE001 - Elasticsearch may be down on purpose during a case
            return -1

    def wait_indexed(self, at_least: int, timeout_s: float, *, poll_s: float = 2.0,
                     settle_s: float | None = None) -> int:
        """Wait until ``at_least`` documents are searchable; returns the count seen last.

        With ``settle_s``, also stop once nothing has moved for that long (no new document, no page
        fetched from the site) while neither processor nor indexer has anything left to consume:
        the records went elsewhere, and the audit will say where.
        """
        deadline = time.monotonic() + timeout_s
        n = self.indexed()
        last_change, last_state = time.monotonic(), (n, self.room.total_fetches())
        while n < at_least and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(poll_s)
            n = self.indexed()
            state = (n, self.room.total_fetches())
            if state != last_state:
                last_change, last_state = time.monotonic(), state
            elif settle_s is not None and time.monotonic() - last_change > settle_s:
                if not any(self.lags().values()):
                    break
                last_change = time.monotonic()
        return n

    def lags(self) -> dict[str, int]:
        s = self.settings
        return {"processor": au.lag(s, s.group("processor"), s.topic_raw),
                "indexer": au.lag(s, s.group("indexer"), s.topic_enriched)}

    def wait_progress(self, measure, timeout_s: float = 90.0) -> bool:
        """Wait until ``measure()`` grows (a restarted stage is really working again) or every
        expected article is searchable (nothing left to work on). Returns True on growth."""
        before = measure()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            time.sleep(0.25)
            if measure() > before:
                return True
            if self.indexed() >= len(self.room.expected_urls()):
                return False
        return False

    def topic_size(self, topic: str) -> int:
        return sum(au.end_offsets(self.settings, topic).values())

    def wait_drained(self, timeout_s: float = 120.0) -> dict[str, int]:
        """Wait until the processor and indexer groups have committed past every record."""
        deadline = time.monotonic() + timeout_s
        while True:
            lags = self.lags()
            if not any(lags.values()) or time.monotonic() > deadline:
                return lags
            time.sleep(2)

    def finish(self, case: str, expected: set[str], *, timeout_s: float) -> au.Audit:
        """Wait for the expected articles, let lag drain, stop every stage, audit."""
        self.wait_indexed(len(expected), timeout_s, settle_s=90)
        seconds = self.elapsed
        lags = self.wait_drained()
        exit_codes = {n: p.stop() for n, p in self.procs.items() if p.proc is not None}
        result = au.audit(case, self.settings, expected, seconds)
        result.notes.update(
            lag=lags,
            exit_codes=exit_codes,
            kills={n: p.kills for n, p in self.procs.items() if p.kills},
            peak_rss_mib={n: round(p.peak_rss_tree / 2**20) for n, p in self.procs.items() if p.starts},
            leftover_workers={n: p.orphans_reaped for n, p in self.procs.items() if p.orphans_reaped},
            guard_violations=sum(len(guard_violations(p.guard_log)) for p in self.procs.values()),
            crashes={n: len(c) for n, c in self.crashes.items()},
        )
        return result

    def stop_all(self) -> None:
        """Teardown: stop every stage still running, even if stopping one of them fails."""
        errors = []
        for p in self.procs.values():
            try:
                if p.alive():
                    p.stop(timeout_s=20)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others, then report
                errors.append(exc)
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.kill()
        if errors:
            raise errors[0]

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail(25)}" for n, p in self.procs.items() if p.starts)


def assert_clean(result: au.Audit, pipeline: Pipeline) -> None:
    """The goal of every case: nothing lost, nothing duplicated, lag drained, no stray traffic."""
    detail = f"{result.line()}\nnotes={result.notes}\nlost e.g. {result.lost_examples}\n" \
             f"dups e.g. {result.dup_examples}\n{pipeline.logs()}"
    assert result.lost == 0, "articles lost\n" + detail
    assert result.duplicated == 0, "articles duplicated\n" + detail
    assert result.notes["unexpected_docs"] == 0, "documents nobody published\n" + detail
    assert not any(result.notes["lag"].values()), "lag did not drain\n" + detail
    assert result.notes["guard_violations"] == 0, "a stage connected outside loopback\n" + detail
    assert not pipeline.crashes, f"stages crashed (restarted as the supervisor would): {pipeline.crashes}\n" + detail
