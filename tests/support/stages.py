"""Newsflow commands in subprocesses with exactly a test's settings, and waiting for what they do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsflow.settings import REPO_ROOT, Settings
from newsflow.supervisor import settings_env


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that builds exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_") or k == "NEWSFLOW_CORPUS"}
    return env | settings_env(settings) | {"PYTHONUNBUFFERED": "1"} | extra


def newsflow(settings: Settings, *args: str, stderr: Path | None = None, stdout: int = subprocess.DEVNULL,
             **extra: str) -> subprocess.Popen:
    """Start ``newsflow ARGS`` with the test's settings; stderr appended to a file if given (the
    stages log there), stdout discarded unless ``stdout=subprocess.PIPE``."""
    err = open(stderr, "ab") if stderr else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([sys.executable, "-m", "newsflow.cli", *args], cwd=REPO_ROOT,
                                env=env_for(settings, **extra), stdout=stdout, stderr=err)
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
