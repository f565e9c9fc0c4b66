"""Hostile-input suite: misbehaving servers on 127.0.0.1 against the real poller and processor.

Runs in `make test` (shared local stack) and in `make test-chaos`. Every case runs the stage as a
real subprocess (``tests.chaos.procs.StageProcess``: loopback-only network guard, stub resolver) so
its time and peak RSS are the stage's own, and records one line in the table printed at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from newsflow.settings import REPO_ROOT

RESULTS: list[HostileResult] = []
OUTCOMES: dict[str, str] = {}  # test node id -> "passed" | "FAILED: <first line of the reason>"
HEADER = "case, target, outcome, seconds, peak_rss_mib, limit_mib"


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]


@dataclass
class HostileResult:
    case: str
    target: str  # feed | page | processor
    outcome: str
    seconds: float
    peak_rss_mib: float
    limit_mib: int
    node: str = field(default_factory=_current_test)

    def line(self) -> str:
        return (f"{self.case}, {self.target}, {self.outcome}, {self.seconds:.1f}, {self.peak_rss_mib:.0f}, "
                f"{self.limit_mib}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        crash = getattr(report.longrepr, "reprcrash", None)
        why = (crash.message if crash is not None else str(report.longrepr or "?")).splitlines()
        OUTCOMES[item.nodeid] = "passed" if report.passed else "FAILED: " + (why[0][:300] if why else "?")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    terminalreporter.section("hostile inputs")
    terminalreporter.write_line(HEADER)
    for r in RESULTS:
        terminalreporter.write_line(r.line())
    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    cols = HEADER.split(", ") + ["verdict"]
    rows = ["\t".join(cols)] + [
        "\t".join([r.case, r.target, r.outcome, f"{r.seconds:.1f}", f"{r.peak_rss_mib:.0f}", str(r.limit_mib),
                   OUTCOMES.get(r.node, "?")]).replace("\n", " ") for r in RESULTS
    ]
    (out / "hostile-table.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
