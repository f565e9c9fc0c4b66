"""The fault-injection suite runs on its OWN Kafka and Elasticsearch, never on the shared stack.

``chaos_stack`` starts a dedicated broker and node with ``deploy/local/stack.sh`` under
``.local/chaos`` on ports 9192/9193 (Kafka) and 9202/9302 (Elasticsearch), and stops them at the
end of the session. Faults (broker restart, Elasticsearch outage) are injected into that stack
only. Overriding ``stack`` here makes the shared ``make_settings`` factory (tests/conftest.py)
give each chaos test its own topics, groups and alias on the dedicated stack.

``chaos_cluster`` (only for the cases that ask for it) starts a 3-broker KRaft cluster the same
way (``KAFKA_BROKERS=3``) under ``.local/chaos-cluster`` on 9292/9294/9296 (controllers
9293/9295/9297); those cases use it with the chaos Elasticsearch.

Environment:
  CHAOS_STATE_DIR      state dir of the dedicated stack (default <repo>/.local/chaos)
  CHAOS_KAFKA_PORT     9192 (controller: CHAOS_KAFKA_CONTROLLER_PORT 9193)
  CHAOS_CLUSTER_KAFKA_PORT  9292: first node of the 3-broker cluster (+2, +4 the others; controllers
                       CHAOS_CLUSTER_CONTROLLER_PORT 9293, +2, +4)
  CHAOS_ES_PORT        9202 (transport: CHAOS_ES_TRANSPORT_PORT 9302)
  CHAOS_KEEP_STACK=1   leave the dedicated stack running afterwards (faster re-runs while developing)
  CHAOS_ARTICLES       articles per scenario (default 10000)
  CHAOS_KAFKA_FAULT    restart (default: stack.sh restart kafka) | kill9 (SIGKILL the broker, then start it)
  CHAOS_ES_FAULT       stop (default: stack.sh down es) | kill9 (SIGKILL the node); up again after 60 s
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsflow.settings import REPO_ROOT, Settings
from tests.chaos.audit import HEADER, Audit

STACK_SH = REPO_ROOT / "deploy" / "local" / "stack.sh"
RESULTS: list[tuple[str, Audit]] = []  # (test node id, its line)
OUTCOMES: dict[str, str] = {}  # test node id -> "passed" | "FAILED: <first line of the reason>"


class ChaosStack:
    """The dedicated stack (or, with ``brokers=3``, a Kafka cluster) and the faults that can be
    injected into it."""

    def __init__(self, *, state_dir: Path | None = None, kafka_port: int | None = None,
                 controller_port: int | None = None, brokers: int = 1) -> None:
        self.state_dir = state_dir or Path(os.environ.get("CHAOS_STATE_DIR", REPO_ROOT / ".local" / "chaos"))
        self.kafka_port = kafka_port or int(os.environ.get("CHAOS_KAFKA_PORT", "9192"))
        self.brokers = brokers
        self.es_port = int(os.environ.get("CHAOS_ES_PORT", "9202"))
        self.env = os.environ | {
            "NEWSFLOW_STATE_DIR": str(self.state_dir),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(controller_port or os.environ.get("CHAOS_KAFKA_CONTROLLER_PORT", "9193")),
            "KAFKA_BROKERS": str(brokers),
            # a loaded 2-core machine starts three brokers and an Elasticsearch slowly
            "KAFKA_START_TIMEOUT": os.environ.get("KAFKA_START_TIMEOUT", "300"),
            "ES_PORT": str(self.es_port),
            "ES_TRANSPORT_PORT": os.environ.get("CHAOS_ES_TRANSPORT_PORT", "9302"),
        }

    @property
    def bootstrap(self) -> str:
        """Every node: node n listens on kafka_port + 2(n-1) (deploy/local/stack.sh)."""
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.brokers))

    def sh(self, *args: str, timeout: float = 600) -> str:
        res = subprocess.run(["bash", str(STACK_SH), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def up(self, service: str = "all") -> None:
        self.sh("up", *([] if service == "all" else [service]))

    def down(self, service: str = "all") -> None:
        self.sh("down", *([] if service == "all" else [service]))

    def restart(self, service: str) -> None:
        self.sh("restart", service)

    def kill9(self, service: str, node: int = 1) -> None:
        """SIGKILL the service's JVM (no clean shutdown: the broker recovers its logs on start); for
        Kafka, of cluster node ``node`` (its pid file is under kafka/node-<n>/ past the first)."""
        pid_file = self.state_dir / service / ("" if node == 1 else f"node-{node}") / f"{service}.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{service} (pid {pid}) survived SIGKILL")

    def wipe(self, *, indices: bool = True) -> None:
        """Delete every topic and index left on the DEDICATED stack by earlier (interrupted) runs."""
        from newsflow.elastic import make_es
        from newsflow.kafka_io import make_admin

        s = self.settings()
        admin = make_admin(s)
        try:
            leftovers = [t for t in admin.list_topics() if not t.startswith("__")]
            if leftovers:
                admin.delete_topics(leftovers)
        finally:
            admin.close()
        if not indices:
            return
        es = make_es(s)
        try:
            es.indices.delete(index="*,-.*", ignore_unavailable=True, allow_no_indices=True,
                              expand_wildcards="open,closed")
            for t in es.indices.get_index_template().get("index_templates", []):
                es.indices.delete_index_template(name=t["name"])
        finally:
            es.close()

    def settings(self) -> Settings:
        """On a cluster, topics get replication 3 and min.insync.replicas 2, as on a real one."""
        return Settings(kafka_bootstrap=self.bootstrap, es_url=f"http://127.0.0.1:{self.es_port}",
                        state_dir=self.state_dir, **self.replication())

    def replication(self) -> dict[str, int]:
        return {"topic_replication": min(self.brokers, 3), "topic_min_insync": 2 if self.brokers >= 3 else 1}


@pytest.fixture(scope="session")
def chaos_stack() -> Iterator[ChaosStack]:
    cs = ChaosStack()
    cs.up()
    cs.wipe()
    try:
        yield cs
    finally:
        if os.environ.get("CHAOS_KEEP_STACK") != "1":
            cs.down()


@pytest.fixture(scope="session")
def chaos_cluster(chaos_stack: ChaosStack) -> Iterator[ChaosStack]:
    """A 3-broker KRaft cluster of its own (Kafka only: the cases use the chaos Elasticsearch)."""
    port = int(os.environ.get("CHAOS_CLUSTER_KAFKA_PORT", "9292"))
    cluster = ChaosStack(state_dir=chaos_stack.state_dir.parent / "chaos-cluster", kafka_port=port,
                         controller_port=int(os.environ.get("CHAOS_CLUSTER_CONTROLLER_PORT", port + 1)), brokers=3)
    cluster.up("kafka")
    cluster.wipe(indices=False)
    try:
        yield cluster
    finally:
        if os.environ.get("CHAOS_KEEP_STACK") != "1":
            cluster.down("kafka")


@pytest.fixture(scope="session")
def stack(chaos_stack: ChaosStack) -> Settings:
    """Overrides tests/conftest.py ``stack``: the chaos tests' settings point at the dedicated stack."""
    return chaos_stack.settings()


@pytest.fixture
def record_case(request):
    def record(result: Audit) -> None:
        RESULTS.append((request.node.nodeid, result))
        print(result.line(), flush=True)
        print("  " + ", ".join(f"{k}={v}" for k, v in result.notes.items()), flush=True)

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        OUTCOMES[item.nodeid] = "passed" if report.passed else "FAILED: " + _reason(report)


def _reason(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.splitlines()[0][:300] if text else "?"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    terminalreporter.section("chaos table")
    terminalreporter.write_line(HEADER)
    for _node, r in RESULTS:
        terminalreporter.write_line(r.line())
    failed = [(r.case, OUTCOMES.get(node, "?")) for node, r in RESULTS if OUTCOMES.get(node) != "passed"]
    for case, why in failed:
        terminalreporter.write_line(f"  {case}: {why}")
    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    cols = HEADER.split(", ") + ["verdict"]
    rows = ["\t".join(cols)] + [
        "\t".join(r.line().split(", ") + [OUTCOMES.get(node, "?").replace("\t", " ")]) for node, r in RESULTS
    ]
    (out / "chaos-table.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
