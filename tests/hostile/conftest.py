"""Hostile-input suite: misbehaving servers on 127.0.0.1 against the real poller and processor.

Runs in `make test` (shared local stack) and in `make test-chaos`. Every case runs the stage as a
real subprocess (``tests.chaos.procs.StageProcess``: loopback-only network guard, stub resolver) so
its time and peak RSS are the stage's own, and records one line in the table printed at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsflow.settings import REPO_ROOT

RESULTS: list[HostileResult] = []
HEADER = "case, target, outcome, seconds, peak_rss_mib, limit_mib"


@dataclass
class HostileResult:
    case: str
    target: str  # feed | page | processor | corpus
    outcome: str
    seconds: float
    peak_rss_mib: float
    limit_mib: int

    def line(self) -> str:
        return (f"{self.case}, {self.target}, {self.outcome}, {self.seconds:.1f}, {self.peak_rss_mib:.0f}, "
                f"{self.limit_mib}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    terminalreporter.section("hostile inputs")
    terminalreporter.write_line(HEADER)
    for r in RESULTS:
        terminalreporter.write_line(r.line())
    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile-table.txt").write_text(HEADER + "\n" + "".join(r.line() + "\n" for r in RESULTS),
                                           encoding="utf-8")
