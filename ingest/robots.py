"""robots.txt for article pages (RFC 9309), cached per origin.

* 2xx: the rules apply (and a ``Crawl-delay`` for our agent widens the host's request spacing);
* 4xx (404 included): no rules, everything is allowed;
* 5xx, timeouts, network errors: the origin is *unreachable*: nothing is fetched from it for now and
  the entries stay pending, to be tried again on a later cycle.

Rules are kept for ``ROBOTS_TTL_S``; an unreachable answer for ``UNREACHABLE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from urllib.robotparser import RobotFileParser

from ingest.urls import host_of, origin_of

ROBOTS_TTL_S = 24 * 3600.0
UNREACHABLE_TTL_S = 600.0
ROBOTS_MAX_BYTES = 512 * 1024


class Verdict(Enum):
    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    UNREACHABLE = "unreachable"


@dataclass
class _Entry:
    parser: RobotFileParser | None  # None: allow all
    unreachable: bool
    expires: float


# fetch(url) -> (status, body) or raises on network errors; status 0 means "could not fetch".
RobotsFetch = Callable[[str], Awaitable[tuple[int, bytes]]]


class RobotsCache:
    def __init__(self, fetch: RobotsFetch, user_agent: str, *, clock: Callable[[], float] = time.monotonic,
                 on_crawl_delay: Callable[[str, float], None] | None = None):
        self.fetch = fetch
        self.agent = user_agent.split("/", 1)[0]  # robots.txt groups name the product token
        self.clock = clock
        self.on_crawl_delay = on_crawl_delay
        self.entries: dict[str, _Entry] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def verdict(self, url: str) -> Verdict:
        origin = origin_of(url)
        entry = await self._entry(origin)
        if entry.unreachable:
            return Verdict.UNREACHABLE
        if entry.parser is None or entry.parser.can_fetch(self.agent, url):
            return Verdict.ALLOWED
        return Verdict.DISALLOWED

    async def _entry(self, origin: str) -> _Entry:
        entry = self.entries.get(origin)
        if entry and entry.expires > self.clock():
            return entry
        lock = self.locks.setdefault(origin, asyncio.Lock())
        async with lock:
            entry = self.entries.get(origin)
            if entry and entry.expires > self.clock():
                return entry
            entry = await self._load(origin)
            self.entries[origin] = entry
            return entry

    async def _load(self, origin: str) -> _Entry:
        status, body = await self.fetch(origin + "/robots.txt")
        now = self.clock()
        if 200 <= status < 300:
            parser = RobotFileParser()
            parser.parse(body.decode("utf-8", "replace").splitlines())
            delay = parser.crawl_delay(self.agent)
            if delay and self.on_crawl_delay:
                self.on_crawl_delay(host_of(origin), float(delay))
            return _Entry(parser, False, now + ROBOTS_TTL_S)
        if 400 <= status < 500:
            return _Entry(None, False, now + ROBOTS_TTL_S)
        return _Entry(None, True, now + UNREACHABLE_TTL_S)
