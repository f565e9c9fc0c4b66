"""Newsflow stages as real subprocesses: start, kill -9, restart, stop, and measure their memory.

Every child is ``.venv/bin/newsflow <stage>`` with the ``NEWSFLOW_*`` environment of a test's own
``Settings`` and the network guard of ``tests/chaos/guard`` (loopback only, stub DNS). Children run
in their own session, so ``kill9`` takes the stage's worker processes down with it, as a machine
losing the process would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from newsflow.settings import REPO_ROOT, Settings
from newsflow.supervisor import settings_env

NEWSFLOW = Path(sys.executable).with_name("newsflow")
GUARD_DIR = Path(__file__).resolve().parent / "guard"


def guarded_env(s: Settings, guard_log: Path, hosts: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a child: ours minus stray NEWSFLOW_*, plus ``s`` and the guard."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_") or k == "NEWSFLOW_CORPUS"}
    env.pop("NEWSFLOW_CONFIG", None)
    env |= settings_env(s)
    # STAGE_CODE_DIR: run the stages from another checkout (e.g. `git archive HEAD`), not the tree.
    paths = [str(GUARD_DIR), os.environ.get("STAGE_CODE_DIR", ""), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["NEWSFLOW_TEST_GUARD_LOG"] = str(guard_log)
    env["NEWSFLOW_TEST_HOSTS"] = ",".join(f"{k}={v}" for k, v in (hosts or {}).items())
    env["NEWSFLOW_LOG_FORMAT"] = "json"
    return env


def guard_violations(guard_log: Path) -> list[str]:
    """Lines of the guard log that are real failures (a connect outside loopback)."""
    if not guard_log.exists():
        return []
    return [ln for ln in guard_log.read_text(encoding="utf-8").splitlines() if ln.startswith("connect\t")]


def _hwm(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    """Peak memory of a stage: the kernel's high-water mark (VmHWM) of the stage process, read every
    ``period_s`` (so it misses at most a peak in the last interval before exit), and the largest sum
    of the resident sizes of the stage and its children (worker processes) seen at one sample.

    (``wait4``'s ``ru_maxrss`` is no use here: Linux keeps in it the RSS the forked child had before
    ``exec``, i.e. a copy of the test process's size.)
    """

    def __init__(self, pid: int, period_s: float = 0.05):
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.period_s = period_s
        self.peak_main = 0
        self.peak_tree = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            try:
                hwm = _hwm(self.pid)
                tree = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                return
            self.peak_main = max(self.peak_main, hwm)
            self.peak_tree = max(self.peak_tree, tree, hwm)
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()


class StageProcess:
    """One ``newsflow`` stage subprocess that can be killed and restarted any number of times."""

    def __init__(self, name: str, argv: list[str], settings: Settings, workdir: Path,
                 hosts: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.settings = settings
        self.workdir = workdir
        self.guard_log = workdir / "guard.log"
        self.env = guarded_env(settings, self.guard_log, hosts)
        self.proc: subprocess.Popen | None = None
        self.sampler: RssSampler | None = None
        self.starts = 0
        self.kills = 0
        self.exit_codes: list[int] = []
        self.peak_rss = 0
        self.peak_rss_tree = 0
        self.orphans_reaped = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> StageProcess:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(NEWSFLOW), *self.argv], env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _finish(self, code: int) -> None:
        if self.sampler:
            self.sampler.stop()
            self.sampler.join(timeout=2)
            self.peak_rss = max(self.peak_rss, self.sampler.peak_main)
            self.peak_rss_tree = max(self.peak_rss_tree, self.sampler.peak_tree)
        self.exit_codes.append(code)

    def _group_members(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(p.pid) == self.pid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        return out

    def _reap_group(self, grace_s: float = 5.0) -> None:
        """After the stage exited: give its worker processes ``grace_s`` to follow it, then kill
        what is left of its process group and count it (a leak)."""
        deadline = time.monotonic() + grace_s
        while (left := self._group_members()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            self.orphans_reaped += len(left)
            for p in left:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass

    def kill9(self) -> None:
        """``kill -9`` the stage: no handler runs, nothing is flushed, its workers die too."""
        assert self.proc is not None
        self.kills += 1
        os.killpg(self.pid, signal.SIGKILL)  # the stage and its workers, at once
        code = self.proc.wait(timeout=30)
        self._finish(code)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait (the graceful path); SIGKILL if it does not exit in ``timeout_s``."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        code = self.proc.returncode
        self._reap_group()
        self._finish(code)
        return code

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout_s)
        self._reap_group()
        self._finish(code)
        return code

    def wait_exit(self, timeout_s: float) -> tuple[int, bool]:
        """Wait for the stage to exit by itself: (exit code, timed out?). Past ``timeout_s`` it is
        killed, and the result says so."""
        assert self.proc is not None
        timed_out = False
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(self.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=30)
        self._reap_group()
        self._finish(code)
        return code, timed_out

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
