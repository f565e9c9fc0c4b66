"""robots.txt for article pages (RFC 9309), cached per origin.

* 2xx: the rules apply (and a ``Crawl-delay`` for our agent widens the host's request spacing);
* 4xx (404 included): no rules, everything is allowed;
* 5xx, timeouts, network errors: the origin is *unreachable*: nothing is fetched from it for now and
  the entries stay pending, to be tried again on a later cycle.

Rules are matched by Protego (the parser Scrapy uses), as RFC 9309 says: the group naming our
product token (case-insensitive) or else the ``*`` group; within it the longest matching rule wins,
``Allow`` on a tie; ``*`` matches any run of characters and a final ``$`` anchors the end; the path
and the rules are compared with their percent-encoding normalised (``/%7Ejoe/`` is ``/~joe/``, ``/ä``
is ``/%C3%A4``). The body is read as UTF-8 (a BOM skipped, bad bytes replaced) and only its first
``ROBOTS_MAX_BYTES``, cut at a line end. Where Protego departs from the RFC (it is more lenient in
places) is listed in ``tests/ingest/test_robots.py``.

Rules are kept for ``ROBOTS_TTL_S``; an unreachable answer for ``UNREACHABLE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from protego import Protego

from ingest.urls import host_of, origin_of

ROBOTS_TTL_S = 24 * 3600.0
UNREACHABLE_TTL_S = 600.0
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 2.5: parse at least the first 500 KiB


class Verdict(Enum):
    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    UNREACHABLE = "unreachable"


@dataclass
class _Entry:
    rules: Protego | None  # None: allow all
    unreachable: bool
    expires: float


# fetch(url) -> (status, body) or raises on network errors; status 0 means "could not fetch".
RobotsFetch = Callable[[str], Awaitable[tuple[int, bytes]]]


def parse_robots(body: bytes) -> Protego:
    """The rules of a robots.txt body: UTF-8, a leading BOM skipped (Protego would read the BOM as part
    of the first directive and lose the group), invalid bytes replaced, at most ``ROBOTS_MAX_BYTES``
    cut at the last line end so that no rule is read half-way."""
    if len(body) > ROBOTS_MAX_BYTES:
        body = body[:ROBOTS_MAX_BYTES]
        body = body[:max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]
    return Protego.parse(body.decode("utf-8-sig", "replace"))


def product_token(user_agent: str) -> str:
    """``Newsflow/0.1 (+https://...)`` -> ``Newsflow``: robots.txt groups name the product token."""
    return user_agent.split("/", 1)[0].strip()


class RobotsCache:
    def __init__(self, fetch: RobotsFetch, user_agent: str, *, clock: Callable[[], float] = time.monotonic,
                 on_crawl_delay: Callable[[str, float], None] | None = None):
        self.fetch = fetch
        self.agent = product_token(user_agent)
        self.clock = clock
        self.on_crawl_delay = on_crawl_delay
        self.entries: dict[str, _Entry] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def verdict(self, url: str) -> Verdict:
        origin = origin_of(url)
        entry = await self._entry(origin)
        if entry.unreachable:
            return Verdict.UNREACHABLE
        if entry.rules is None or entry.rules.can_fetch(url, self.agent):
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
        if 200 <= status < 300:
            # A hostile 500 KiB of wildcard rules takes Protego ~0.5 s: parse off the event loop.
            rules = await asyncio.to_thread(parse_robots, body)
            delay = rules.crawl_delay(self.agent)
            if delay and self.on_crawl_delay:
                self.on_crawl_delay(host_of(origin), delay)
            return _Entry(rules, False, self.clock() + ROBOTS_TTL_S)
        if 400 <= status < 500:
            return _Entry(None, False, self.clock() + ROBOTS_TTL_S)
        return _Entry(None, True, self.clock() + UNREACHABLE_TTL_S)
