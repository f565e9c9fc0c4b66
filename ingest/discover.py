"""``newsflow feeds discover SITE_URL``: trafilatura's feed discovery, plus robots.txt ``Sitemap:`` lines,
fetched through our own fetcher.

The site's page is fetched with the poller's fetcher (SSRF guard, per-host limiter, caps, User-Agent);
trafilatura's ``determine_feed`` finds the candidate feed links in it (``<link rel="alternate">``, then
feed-looking ``<a href>``). The site's ``/robots.txt`` (read by Protego, as for politeness) adds the
sitemaps it names. Each candidate is fetched and parsed with the poller's parse path (gzip files
inflated within the feed cap); only candidates that parse as feeds or sitemaps are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from courlan import get_hostinfo
from trafilatura.feeds import FeedParameters, determine_feed, is_potential_feed

from ingest.decode import detect_charset
from ingest.fetch import FetchError, Fetcher
from ingest.feed_poll import FEED_ACCEPT
from ingest.jobs import PAGE_ACCEPT
from ingest.netguard import Resolver
from ingest.parse import NotAFeed, parse_feed
from ingest.robots import ROBOTS_MAX_BYTES, parse_robots
from ingest.state import utcnow
from ingest.urls import origin_of, resolve
from newsflow.settings import Settings

MAX_CANDIDATES = 10
MAX_SITEMAPS = 10  # robots.txt Sitemap: lines checked


@dataclass(frozen=True)
class Found:
    url: str
    title: str | None
    entries: int
    kind: str = ""  # feedparser's version (rss20, atom10, json1, ...), sitemap or sitemapindex
    sitemaps: int = 0  # a sitemap index: the child sitemaps it lists

    def describe(self) -> str:
        if self.kind == "sitemapindex":
            return f"sitemap index of {self.sitemaps} recent sitemaps"
        return f"{self.entries} entries" + (" (sitemap)" if self.kind == "sitemap" else "")


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
        candidates += [u for u in await robots_sitemaps(fetcher, page.final_url) if u not in candidates]
        found, rejected = [], []
        for url in candidates:
            try:
                resp = await fetcher.get(url, max_bytes=settings.max_feed_bytes, headers={"Accept": FEED_ACCEPT},
                                         what="feed", gzip_files=True)
                if not resp.is_ok:
                    rejected.append(Rejected(url, f"HTTP {resp.status}"))
                    continue
                parsed = parse_feed(resp.body, url=resp.final_url, content_type=resp.headers.get("content-type"),
                                    max_entries=settings.max_entries_per_feed,
                                    since=utcnow() - timedelta(days=settings.sitemap_recent_days))
            except (FetchError, NotAFeed) as exc:
                rejected.append(Rejected(url, str(exc)))
                continue
            found.append(Found(resp.final_url, parsed.title, parsed.total_entries, parsed.version,
                               len(parsed.sitemaps)))
        return found, rejected
    finally:
        await fetcher.aclose()


async def robots_sitemaps(fetcher: Fetcher, site_url: str) -> list[str]:
    """The sitemaps the site's robots.txt names (``Sitemap:`` lines, http(s) only, at most MAX_SITEMAPS);
    none when robots.txt is missing or unreachable."""
    robots_url = origin_of(site_url) + "/robots.txt"
    try:
        resp = await fetcher.get(robots_url, max_bytes=ROBOTS_MAX_BYTES, headers={"Accept": "text/plain"},
                                 what="robots.txt")
    except FetchError:
        return []
    if not resp.is_ok:
        return []
    urls = [resolve(robots_url, u) for u in parse_robots(resp.body).sitemaps]
    return list(dict.fromkeys(u for u in urls if u))[:MAX_SITEMAPS]
