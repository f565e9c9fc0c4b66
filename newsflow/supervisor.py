"""``newsflow run``: every stage as a child process in one process group, restarted on crash."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STAGE_COMMANDS = {"poller": ["poll"], "processor": ["process"], "indexer": ["index"]}


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Supervisor:
    def __init__(self, stages: list[str], *, max_backoff_s: float = 60.0, grace_s: float = 30.0):
        self.children = [Child(s, [sys.executable, "-m", "newsflow.cli", *STAGE_COMMANDS[s]]) for s in stages]
        self.max_backoff_s = max_backoff_s
        self.grace_s = grace_s
        self._stopping = False

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=os.environ.copy())
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for c in self.children:
            self._start(c)
        while not self._stopping:
            now = time.monotonic()
            for c in self.children:
                if c.proc is None:
                    if now >= c.next_start:
                        self._start(c)
                    continue
                code = c.proc.poll()
                if code is None:
                    continue
                if now - c.started_at > 60:
                    c.restarts = 0  # it ran a good while: start the backoff afresh
                c.restarts += 1
                delay = min(self.max_backoff_s, 2 ** (c.restarts - 1))
                log.warning("%s exited with %s; restart %d in %.0fs", c.name, code, c.restarts, delay)
                c.proc = None
                c.next_start = now + delay
            time.sleep(0.2)
        return self.shutdown()

    def shutdown(self) -> int:
        live = [c for c in self.children if c.proc and c.proc.poll() is None]
        for c in live:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for c in live:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0fs, killing it", c.name, self.grace_s)
                c.proc.kill()
                c.proc.wait()
        return 0
