"""Fixtures of the indexer tests: a dedicated Elasticsearch for the outage test.

The outage test stops Elasticsearch for 30 s. It must never stop the shared one on 9200 (other
tests use it), so it gets its own instance from ``deploy/local/stack.sh`` with its own state dir
(under .local/es-outage/) and free ports, started once per session, stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from newsflow.settings import REPO_ROOT, Settings

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DedicatedES:
    url: str
    env: dict[str, str]

    def _stack(self, *args: str) -> None:
        done = subprocess.run(["bash", str(STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def stop(self) -> None:
        self._stack("down", "es")

    def start(self) -> None:
        self._stack("up", "es")


@pytest.fixture(scope="session")
def outage_es(stack: Settings) -> Iterator[DedicatedES]:
    """An Elasticsearch of this test session alone: its own state dir and free ports, so that
    concurrent test sessions on one machine never stop each other's instance."""
    state = REPO_ROOT / ".local" / "es-outage" / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    env = os.environ | {"NEWSFLOW_STATE_DIR": str(state), "ES_PORT": str(port),
                        "ES_TRANSPORT_PORT": str(_free_port())}
    es = DedicatedES(url=f"http://127.0.0.1:{port}", env=env)
    try:
        es.start()
        yield es
    finally:
        try:
            es.stop()
        finally:
            shutil.rmtree(state, ignore_errors=True)
