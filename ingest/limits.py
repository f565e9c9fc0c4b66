"""Politeness: one limiter per host, shared by feed polls, robots.txt and article-page fetches.

A request to a host waits for, in this order:

1. one of the host's ``concurrency`` slots;
2. its turn in the host's rate: request starts are spaced by ``1 / rate_per_s`` seconds (or by the
   host's robots.txt ``Crawl-delay`` when that is longer);
3. one of the ``total`` slots shared by all hosts (so a waiting host never holds a global slot).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Host:
    slots: asyncio.Semaphore
    next_start: float = 0.0
    crawl_delay_s: float = 0.0
    waiting: int = field(default=0)


class HostLimiter:
    def __init__(
        self,
        *,
        concurrency: int,
        rate_per_s: float,
        total: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.concurrency = concurrency
        self.interval_s = 1.0 / rate_per_s
        self.total = asyncio.Semaphore(total)
        self.clock = clock
        self.hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = _Host(asyncio.Semaphore(self.concurrency))
        return h

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        self._host(host).crawl_delay_s = max(0.0, seconds)

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        h = self._host(host)
        h.waiting += 1
        try:
            async with h.slots:
                now = self.clock()
                start = max(now, h.next_start)
                h.next_start = start + max(self.interval_s, h.crawl_delay_s)
                if start > now:
                    await asyncio.sleep(start - now)
                async with self.total:
                    yield
        finally:
            h.waiting -= 1
            if h.waiting == 0 and self.clock() >= h.next_start and not h.crawl_delay_s:
                del self.hosts[host]  # idle and past its spacing: forget it (bounded memory)


class Deadline:
    """A moment (monotonic seconds) after which no new request starts; ``expire()`` moves it to now."""

    def __init__(self, at: float):
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def expire(self) -> None:
        self.at = 0.0
