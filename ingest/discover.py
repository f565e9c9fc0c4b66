"""``newsflow feeds discover SITE_URL``: trafilatura's feed discovery, fetched through our own fetcher.

The site's page is fetched with the poller's fetcher (SSRF guard, per-host limiter, caps, User-Agent);
trafilatura's ``determine_feed`` finds the candidate feed links in it (``<link rel="alternate">``, then
feed-looking ``<a href>``), and each candidate is fetched and parsed with the poller's parse path. Only
candidates that parse as feeds are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from courlan import get_hostinfo
from trafilatura.feeds import FeedParameters, determine_feed, is_potential_feed

from ingest.decode import detect_charset
from ingest.fetch import FetchError, Fetcher
from ingest.jobs import FEED_ACCEPT, PAGE_ACCEPT
from ingest.netguard import Resolver
from ingest.parse import NotAFeed, parse_feed
from newsflow.settings import Settings

MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Found:
    url: str
    title: str | None
    entries: int


@dataclass(frozen=True)
class Rejected:
    url: str
    reason: str


async def discover(settings: Settings, site_url: str, *,
                   resolver: Resolver | None = None) -> tuple[list[Found], list[Rejected]]:
    fetcher = Fetcher(settings, resolver=resolver)
    try:
        page = await fetcher.get(site_url, max_bytes=settings.max_page_bytes,
                                 headers={"Accept": PAGE_ACCEPT}, what="page")
        if not page.is_ok:
            raise FetchError("client_error" if page.status < 500 else "server_error",
                             f"HTTP {page.status}", url=site_url)
        charset, _ = detect_charset(page.body, page.headers.get("content-type"))
        text = page.body.decode(charset, "replace")
        if is_potential_feed(text.lstrip()[:200]):
            candidates = [page.final_url]
        else:
            domain, base = get_hostinfo(page.final_url)
            params = FeedParameters(base, domain, page.final_url)
            candidates = determine_feed(text, params)[:MAX_CANDIDATES]
        found, rejected = [], []
        for url in candidates:
            try:
                resp = await fetcher.get(url, max_bytes=settings.max_feed_bytes, headers={"Accept": FEED_ACCEPT},
                                         what="feed")
                if not resp.is_ok:
                    rejected.append(Rejected(url, f"HTTP {resp.status}"))
                    continue
                parsed = parse_feed(resp.body, url=resp.final_url, content_type=resp.headers.get("content-type"),
                                    max_entries=settings.max_entries_per_feed)
            except (FetchError, NotAFeed) as exc:
                rejected.append(Rejected(url, str(exc)))
                continue
            found.append(Found(resp.final_url, parsed.title, parsed.total_entries))
        return found, rejected
    finally:
        await fetcher.aclose()
