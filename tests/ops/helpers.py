"""Helpers for the ops tests: subprocess stages with a test's settings, ports, registries, scrapes."""

from __future__ import annotations

import json
import socket

import httpx

from newsflow.settings import Settings
from newsflow.status import parse_metrics
from newsflow.supervisor import pid_alive
from tests.support.stages import env_for, newsflow, wait_until  # noqa: F401 - the ops tests' helpers


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
