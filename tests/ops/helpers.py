"""Helpers for the ops tests: subprocess stages with a test's settings, ports, registries, scrapes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from newsflow.settings import REPO_ROOT, Settings
from newsflow.status import parse_metrics
from newsflow.supervisor import pid_alive, settings_env


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n: int) -> int:
    """First of ``n`` consecutive free loopback ports."""
    for _ in range(50):
        base = closed_port()
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {n} free ports")


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that builds exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_") or k == "NEWSFLOW_CORPUS"}
    return env | settings_env(settings) | {"PYTHONUNBUFFERED": "1"} | extra


def newsflow(settings: Settings, *args: str, stderr: Path | None = None, **extra: str) -> subprocess.Popen:
    """Start ``newsflow ARGS`` in a subprocess with the test's settings; stderr to a file if given."""
    err = open(stderr, "ab") if stderr else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "newsflow.cli", *args], cwd=REPO_ROOT,
                                env=env_for(settings, **extra), stdout=subprocess.DEVNULL, stderr=err)
    finally:
        if stderr:
            err.close()


def wait_until(cond: Callable[[], Any], *, timeout: float, what: str, every: float = 0.3) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def stage_entries(settings: Settings) -> dict[str, dict]:
    """Registry entries of the live stage processes of this state_dir, by stage (a killed stage
    leaves its entry behind: skipped)."""
    out = {}
    for path in (settings.state_dir / "run").glob("*.json"):
        if path.name.startswith("supervisor-"):
            continue
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(entry["pid"]):
            out[entry["stage"]] = entry
    return out


def supervisor_entry(settings: Settings) -> dict | None:
    for path in (settings.state_dir / "run").glob("supervisor-*.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return None


def scrape(entry: dict, path: str = "/metrics") -> httpx.Response:
    return httpx.get(f"http://{entry['host']}:{entry['port']}{path}", timeout=5)


def samples(entry: dict) -> dict[str, list[tuple[dict[str, str], float]]]:
    return parse_metrics(scrape(entry).text)


def value(found: dict, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None if absent)."""
    for lab, v in found.get(name, []):
        if all(lab.get(k) == want for k, want in labels.items()):
            return v
    return None
