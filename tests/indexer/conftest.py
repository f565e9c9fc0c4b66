"""Fixtures of the indexer tests: a dedicated Elasticsearch for the outage test.

The outage test stops Elasticsearch for 30 s. It must never stop the shared one on 9200 (other
tests use it), so it gets its own instance from ``deploy/local/stack.sh`` with its own state dir
and ports, started once per session and stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from newsflow.settings import REPO_ROOT, Settings

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"
OUTAGE_ES_PORT = int(os.environ.get("NEWSFLOW_TEST_OUTAGE_ES_PORT", "9201"))


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
    env = os.environ | {
        "NEWSFLOW_STATE_DIR": str(REPO_ROOT / ".local" / "es-outage"),
        "ES_PORT": str(OUTAGE_ES_PORT),
        "ES_TRANSPORT_PORT": str(OUTAGE_ES_PORT + 100),
    }
    es = DedicatedES(url=f"http://127.0.0.1:{OUTAGE_ES_PORT}", env=env)
    es.start()
    try:
        yield es
    finally:
        es.stop()
