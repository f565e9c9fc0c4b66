"""Running one feed job against FixtureSite (no Kafka), as the poller would."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from ingest import state as S
from ingest import transitions as T
from ingest.fetch import Fetcher
from ingest.jobs import FeedJobs
from ingest.limits import Deadline
from ingest.netguard import GuardedBackend
from ingest.urls import feed_id
from newsflow.schema import RawArticle
from tests.support.feeds import rss


def definition(url: str) -> S.FeedDefinition:
    return S.FeedDefinition(id=feed_id(url), url=url, added_url=url, added_at=datetime.now(UTC))


def job(settings, d: S.FeedDefinition, st: S.FeedState | None = None, *, resolver=None, deadline=None):
    """Run one job and record its page outcomes as the poller would after a successful flush."""
    async def main():
        backend = GuardedBackend(resolver, allow_loopback=settings.allow_private_addresses)
        fetcher = Fetcher(settings, backend=backend)
        jobs = FeedJobs(settings, fetcher, parse_executor=None, clock=lambda: datetime.now(UTC), rand=random.random)
        try:
            return await jobs.run(d, st or S.new_state(d), poll=True, deadline=deadline or Deadline.after(60))
        finally:
            await fetcher.aclose()
    result = asyncio.run(main())
    delivered = {o.ref.key for o, rec in result.pages if rec is not None}
    settled = T.record_page_outcomes(result.state, [o for o, _ in result.pages], delivered_ok=delivered,
                       now=datetime.now(UTC), policy=S.Policy.from_settings(settings))
    return result, settled


def serve(site, pages: dict[str, str | bytes], feed_path="/feed.xml", **page_kw) -> S.FeedDefinition:
    for path, body in pages.items():
        site.add(path, body, **page_kw)
    items = [{"link": site.url(p), "title": p, "guid": p} for p in pages]
    site.add(feed_path, rss("Site", items), content_type="application/rss+xml")
    return definition(site.url(feed_path))


def raw_of(result) -> list[RawArticle]:
    return [RawArticle.from_bytes(rec.value) for _o, rec in result.pages if rec and rec.topic.endswith("raw")]
