"""``newsflow run``: every stage as a child process in one process group, restarted on crash.

* Each stage runs as ``python -m newsflow.cli <poll|process|index>`` with the supervisor's settings
  passed down as ``NEWSFLOW_*`` variables, and its own metrics port: ``metrics_port`` + the stage's
  position (poller +0, processor +1, indexer +2).
* A child that exits while the supervisor is not stopping is restarted after a backoff of
  1, 2, 4, ... seconds (capped at ``max_backoff_s``); a child that ran a minute starts afresh at 1.
* SIGTERM or SIGINT (Ctrl-C) stops it: every child gets SIGTERM, finishes or aborts its in-flight
  batch and exits; a child still running after ``grace_s`` is killed. A second signal kills at once.
  Children are also bound to the supervisor's life: each stage asks the kernel for SIGTERM when
  its parent dies (``PR_SET_PDEATHSIG``, see ``die_with_supervisor``), so even a ``kill -9`` of
  the supervisor leaves no stage behind.
* ``<state_dir>/run/supervisor-<pid>.json`` describes the children (pid, restarts, last exit) for
  ``newsflow status`` and ``newsflow stop``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import structlog
from pydantic import SecretStr

from newsflow.settings import Settings

log = structlog.get_logger(__name__)

STAGE_COMMANDS = {"poller": ["poll"], "processor": ["process"], "indexer": ["index"]}
_PR_SET_PDEATHSIG = 1
SUPERVISOR_ENV = "NF_SUPERVISOR_PID"  # set in each child's environment; not a setting
_RESET_AFTER_S = 60.0


def restart_delay(restarts: int, max_backoff_s: float) -> float:
    """Seconds to wait before restart number ``restarts`` (1-based): 1, 2, 4, ... capped."""
    return float(min(max_backoff_s, 2 ** max(0, restarts - 1)))


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ``NEWSFLOW_*`` variables, so a child process builds the same settings."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)  # how pydantic-settings reads complex values from the environment
        env[f"NEWSFLOW_{name.upper()}"] = str(value)
    return env


def stage_metrics_port(settings: Settings, stage: str) -> int:
    if not settings.metrics_port:
        return 0
    return settings.metrics_port + list(STAGE_COMMANDS).index(stage)


def die_with_supervisor() -> None:
    """In a supervised stage: get SIGTERM when the supervisor dies, however it dies (Linux).

    Called by every stage at start (``newsflow.ops.stage_ops``); a no-op outside ``newsflow run``.
    Done in the child rather than in a ``preexec_fn``, which is unsafe in a threaded parent.
    """
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the supervisor died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = field(default=None, repr=False)
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def describe(self) -> dict:
        return {"pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                "up_s": round(time.monotonic() - self.started_at, 1) if self.proc else None}


class Supervisor:
    def __init__(self, settings: Settings, stages: list[str], *, max_backoff_s: float = 60.0,
                 grace_s: float | None = None, env: dict[str, str] | None = None):
        base = (os.environ.copy() if env is None else dict(env)) | settings_env(settings)
        base[SUPERVISOR_ENV] = str(os.getpid())
        self.settings = settings
        self.children = [
            Child(s, [sys.executable, "-m", "newsflow.cli", *STAGE_COMMANDS[s]],
                  base | {"NEWSFLOW_METRICS_PORT": str(stage_metrics_port(settings, s))})
            for s in stages
        ]
        self.max_backoff_s = max_backoff_s
        self.grace_s = settings.shutdown_timeout_s + 5 if grace_s is None else grace_s
        self.stopping = False
        self.forced = False
        self.registry = settings.state_dir / "run" / f"supervisor-{os.getpid()}.json"

    # --- signals -----------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        if self.stopping:
            self.forced = True  # second Ctrl-C: do not wait for in-flight batches
        self.stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    # --- children ----------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=child.env)
        child.started_at = time.monotonic()
        log.info("stage started", child=child.name, child_pid=child.proc.pid, restarts=child.restarts)
        self._write_registry()

    def _reap(self, child: Child, code: int, now: float) -> None:
        if now - child.started_at > _RESET_AFTER_S:
            child.restarts = 0  # it ran a good while: start the backoff afresh
        child.restarts += 1
        child.last_exit = code
        delay = restart_delay(child.restarts, self.max_backoff_s)
        log.warning("stage exited, restarting", child=child.name, exit_code=code, restart=child.restarts,
                    delay_s=delay)
        child.proc = None
        child.next_start = now + delay
        self._write_registry()

    def _write_registry(self) -> None:
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        entry = {"pid": os.getpid(), "stopping": self.stopping,
                 "children": {c.name: c.describe() for c in self.children}}
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(self.registry)

    def run(self, *, install_signals: bool = True) -> int:
        """Start every stage, keep them running until stopped, then stop them. Returns 0, or 1 if a
        child had to be killed."""
        if install_signals:
            self.install_signal_handlers()
        try:
            for c in self.children:
                self._start(c)
            while not self.stopping:
                now = time.monotonic()
                for c in self.children:
                    if c.proc is None:
                        if now >= c.next_start and not self.stopping:
                            self._start(c)
                        continue
                    code = c.proc.poll()
                    if code is not None and not self.stopping:  # Ctrl-C reaches the children first
                        self._reap(c, code, now)
                time.sleep(0.2)
            return self.shutdown()
        finally:
            self.registry.unlink(missing_ok=True)

    def shutdown(self) -> int:
        """SIGTERM every child, wait up to ``grace_s`` (less after a second signal), kill the rest."""
        self._write_registry()
        live = [c for c in self.children if c.proc and c.proc.poll() is None]
        log.info("stopping stages", children=[c.name for c in live], grace_s=self.grace_s)
        for c in live:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        killed = False
        while live:
            live = [c for c in live if c.proc.poll() is None]
            if live and (self.forced or time.monotonic() >= deadline):
                for c in live:
                    log.error("stage did not stop in time, killing it", child=c.name, child_pid=c.pid)
                    c.proc.kill()
                    c.proc.wait()
                killed = True
                break
            time.sleep(0.1)
        for c in self.children:
            if c.proc:
                c.last_exit = c.proc.returncode
        log.info("all stages stopped", exits={c.name: c.last_exit for c in self.children})
        return 1 if killed else 0


def supervisors(settings: Settings) -> list[tuple[Path, dict]]:
    """Registry entries of the supervisors started with this state_dir (possibly stale)."""
    out = []
    for path in sorted((settings.state_dir / "run").glob("supervisor-*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # being replaced right now
    return out


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_supervisors(settings: Settings, *, timeout_s: float) -> list[int]:
    """SIGTERM every live ``newsflow run`` of this state_dir; wait until they are gone. Returns pids."""
    pids = []
    for path, entry in supervisors(settings):
        pid = int(entry["pid"])
        if not pid_alive(pid):
            path.unlink(missing_ok=True)  # stale: it was killed without cleaning up
            continue
        os.kill(pid, signal.SIGTERM)
        pids.append(pid)
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if pid_alive(p)]
    if left:
        raise TimeoutError(f"newsflow run pid(s) {left} still running after {timeout_s:.0f}s")
    return pids

