"""Helpers for the ingest tests: settings without Kafka, a fetcher on the guarded backend, an event loop."""

from __future__ import annotations

import asyncio

import httpcore
import pytest

from ingest.fetch import Fetcher
from ingest.netguard import GuardedBackend
from newsflow.settings import Settings


def local_settings(**overrides) -> Settings:
    """Settings for tests that need no Kafka: loopback allowed, short timeouts, fast per-host rate."""
    base = dict(allow_private_addresses=True, respect_robots=False, connect_timeout_s=2.0, read_timeout_s=3.0,
                total_timeout_s=5.0, host_rate_per_s=50.0, metrics_port=0)
    return Settings(**(base | overrides))


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """The real network backend, recording every address it is asked to connect to."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def sleep(self, seconds):
        await self.inner.sleep(seconds)


def run(coro_fn, settings: Settings, *, resolver=None, recorder: RecordingBackend | None = None):
    """Run ``coro_fn(fetcher)`` on a fresh loop with a fresh fetcher; close it afterwards."""
    async def main():
        backend = GuardedBackend(resolver, allow_loopback=settings.allow_private_addresses, inner=recorder)
        fetcher = Fetcher(settings, backend=backend)
        try:
            return await coro_fn(fetcher)
        finally:
            await fetcher.aclose()
    return asyncio.run(main())


@pytest.fixture
def recorder() -> RecordingBackend:
    return RecordingBackend()
