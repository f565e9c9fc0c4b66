"""Article identity at the poller: the id comes from the page's canonical URL, and a page is fetched once
per article across all feeds of the poller (FixtureSite, no Kafka)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest

from ingest import state as S
from ingest import transitions as T
from ingest.fetch import Fetcher
from ingest.jobs import FeedJobs, JobResult
from ingest.limits import Deadline
from ingest.netguard import GuardedBackend, StubResolver
from ingest.pagehead import declared_canonical, page_identity
from ingest.urls import feed_id
from newsflow.schema import RawArticle, article_id
from tests.ingest.conftest import local_settings
from tests.support.feeds import rss

HOST = "news.test"  # stub-resolved to 127.0.0.1


def page(title: str, *, canonical: str | None = None, extra_head: str = "") -> str:
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{link}{extra_head}</head>"
            f"<body><article><h1>{title}</h1><p>{title} text.</p></article></body></html>")


class Poller:
    """The part of the poller this test needs: one FeedJobs, feeds with their states, batches that record
    the page outcomes and remember what was fetched (as ``Poller.publish_batch`` does after a successful flush)."""

    def __init__(self, site, settings=None):
        self.settings = settings or local_settings()
        self.site = site
        self.resolver = StubResolver({HOST: "127.0.0.1", HOST.upper(): "127.0.0.1"})
        self.known: dict[str, int] = {}
        self.feeds: dict[str, tuple[S.FeedDefinition, S.FeedState]] = {}

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.site.server.server_address[1]}{path}"

    def add_feed(self, path: str, links: list[str], *, version: str = "") -> None:
        items = [{"link": link, "title": f"{link}{version}", "guid": f"{path}:{i}"} for i, link in enumerate(links)]
        self.site.add(path, rss("Site", items), content_type="application/rss+xml")
        url = self.url(path)
        if url not in self.feeds:
            d = S.FeedDefinition(id=feed_id(url), url=url, added_url=url, added_at=datetime.now(UTC))
            self.feeds[url] = (d, S.new_state(d))

    def batch(self) -> list[JobResult]:
        async def main():
            backend = GuardedBackend(self.resolver, allow_loopback=True)
            fetcher = Fetcher(self.settings, backend=backend)
            jobs = FeedJobs(self.settings, fetcher, parse_executor=None, clock=lambda: datetime.now(UTC),
                            rand=random.random, known_articles=self.known)
            try:
                return await asyncio.gather(*(jobs.run(d, st, poll=True, deadline=Deadline.after(60))
                                              for d, st in self.feeds.values()))
            finally:
                await fetcher.aclose()
        results = asyncio.run(main())
        now = datetime.now(UTC)
        for (url, (d, _st)), r in zip(list(self.feeds.items()), results, strict=True):
            ok = {o.ref.key for o, rec in r.pages if rec is not None}
            st = T.record_page_outcomes(r.state, [o for o, _ in r.pages], delivered_ok=ok, now=now,
                          policy=S.Policy.from_settings(self.settings))
            self.feeds[url] = (d, st.model_copy(update={"next_check_at": None}))  # due again at once
            for o, _rec in r.pages:
                for prefix in o.prefixes():
                    self.known.setdefault(prefix, int(now.timestamp()))
        return results


def records(results: list[JobResult]) -> list[RawArticle]:
    return [RawArticle.from_bytes(rec.value) for r in results for _o, rec in r.pages
            if rec is not None and rec.topic.endswith("raw")]


def outcomes(results: list[JobResult]) -> list[str]:
    return sorted(o.result for r in results for o, _ in r.pages)


def test_the_article_id_is_the_id_of_the_canonical_url_the_page_declares(site):
    p = Poller(site)
    site.add("/story/1", page("One", canonical=p.url("/story/1-lighthouse-vote")))
    p.add_feed("/feed.xml", [p.url("/story/1?ref=rss")])
    (raw,) = records(p.batch())
    assert raw.canonical_url == p.url("/story/1-lighthouse-vote") and raw.canonical_from == "page"
    assert raw.id == article_id(raw.canonical_url) != article_id(raw.url)
    assert raw.url == p.url("/story/1?ref=rss") and raw.final_url == p.url("/story/1?ref=rss")


def test_without_a_usable_canonical_the_final_url_names_the_article(site):
    p = Poller(site)
    site.add("/old/2", status=301, headers={"Location": "/story/2?utm_source=rss"})
    site.add("/story/2", page("Two", canonical="https://elsewhere.test/syndicated/2"))  # another site
    p.add_feed("/feed.xml", [p.url("/old/2")])
    (raw,) = records(p.batch())
    assert raw.canonical_url == p.url("/story/2") and raw.canonical_from == "fetched"
    assert raw.id == article_id(p.url("/story/2"))


def test_one_article_listed_by_several_feeds_under_link_variants_is_fetched_once(site):
    p = Poller(site)
    site.add("/story/3", page("Three", canonical=p.url("/story/3")))
    p.add_feed("/a.xml", [p.url("/story/3?ref=rss")])
    p.add_feed("/b.xml", [p.url("/story/3?utm_source=rss&utm_medium=feed")])
    p.add_feed("/c.xml", [p.url("/story/3/")])  # trailing slash
    p.add_feed("/d.xml", [p.url("/story/3", host=HOST.upper())])
    results = p.batch()
    assert site.hits("/story/3") + site.hits("/story/3/") == 1
    assert len(records(results)) == 1
    assert outcomes(results) == ["delivered", "duplicate", "duplicate", "duplicate"]
    assert all(not st.pending and len(st.seen) == 1 for _d, st in p.feeds.values())  # all settled

    p.add_feed("/e.xml", [p.url("/story/3#comments")])  # a later feed: known, not fetched
    results = p.batch()
    assert site.hits("/story/3") + site.hits("/story/3/") == 1 and not records(results)


def test_a_page_fetched_earlier_in_the_batch_is_not_fetched_again_by_a_slower_feed(site):
    p = Poller(site)
    site.add("/story/7", page("Seven", canonical=p.url("/story/7")))
    p.add_feed("/fast.xml", [p.url("/story/7")])
    p.add_feed("/slow.xml", [p.url("/story/7?utm_source=rss")])
    slow_feed = site.routes["/slow.xml"]

    def slowly(handler):  # the slow feed's page job starts after the fast feed's page is done
        time.sleep(0.5)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(slow_feed.body)))
        handler.end_headers()
        handler.wfile.write(slow_feed.body)

    slow_feed.handler = slowly
    results = p.batch()
    assert site.hits("/story/7") == 1 and outcomes(results) == ["delivered", "duplicate"]


def test_a_link_that_only_the_page_reveals_as_a_known_article_is_not_produced_again(site):
    p = Poller(site)
    site.add("/story/4", page("Four", canonical=p.url("/news/four")))
    site.add("/print/4", page("Four", canonical=p.url("/news/four")))
    p.add_feed("/a.xml", [p.url("/story/4")])
    assert len(records(p.batch())) == 1
    p.add_feed("/b.xml", [p.url("/news/four")])  # the canonical itself: known without a fetch
    p.add_feed("/c.xml", [p.url("/print/4")])  # another URL of the page: fetched, then recognised
    results = p.batch()
    assert not records(results)
    assert (site.hits("/news/four"), site.hits("/print/4")) == (0, 1)
    assert outcomes(results) == ["duplicate", "duplicate"]


def test_a_changed_entry_of_the_same_feed_is_fetched_again_with_the_same_id(site):
    p = Poller(site)
    site.add("/story/5", page("Five", canonical=p.url("/story/5")))
    p.add_feed("/feed.xml", [p.url("/story/5")])
    (first,) = records(p.batch())
    p.add_feed("/feed.xml", [p.url("/story/5")], version=" (updated)")
    (again,) = records(p.batch())
    assert site.hits("/story/5") == 2 and again.id == first.id and again.first_seen_at == first.first_seen_at


def test_a_failing_page_listed_by_two_feeds_is_tried_once_and_stays_pending_on_both(site):
    p = Poller(site)
    site.add("/story/6", status=503)
    p.add_feed("/a.xml", [p.url("/story/6")])
    p.add_feed("/b.xml", [p.url("/story/6?ref=rss")])
    results = p.batch()
    assert site.hits("/story/6") == 1 and outcomes(results) == ["retry", "retry"]
    assert all(len(st.pending) == 1 and not st.seen for _d, st in p.feeds.values())


# --- reading the declared canonical off the page head --------------------------------------------------------
BASE = "https://www.a.example/news/1?ref=rss"


@pytest.mark.parametrize(("head", "declared"), [
    ('<link rel="canonical" href="https://www.a.example/news/1">', "https://www.a.example/news/1"),
    ("<LINK REL=Canonical HREF='/news/1'>", "https://www.a.example/news/1"),  # relative, any case
    ('<link href="/news/1" rel="canonical">', "https://www.a.example/news/1"),  # attribute order
    ('<link rel="alternate" href="/amp/1"><link rel="canonical" href="/news/1">', "https://www.a.example/news/1"),
    ('<meta property="og:url" content="https://www.a.example/news/1">', "https://www.a.example/news/1"),
    ('<link rel="canonical" href="/news/1?a=1&amp;b=2">', "https://www.a.example/news/1?a=1&b=2"),  # entities
    ('<link rel="canonical" href="  ">', None),
    ("", None),
])
def test_declared_canonical(head, declared):
    html = f"<!doctype html><html><head><title>t</title>{head}</head><body><p>x</p></body></html>"
    assert declared_canonical(html.encode(), "utf-8", BASE) == declared


def test_only_the_head_is_read_and_the_page_charset_is_used():
    body = ('<html><head><meta charset="iso-8859-2"><link rel="canonical" href="/wiadomości/żółw"></head>'
            '<body><link rel="canonical" href="/from-the-body"></body></html>').encode("iso-8859-2")
    assert declared_canonical(body, "iso-8859-2", BASE) == "https://www.a.example/wiadomości/żółw"
    canonical, source = page_identity(body, "iso-8859-2", BASE)
    assert source == "page"
    assert article_id(canonical) == article_id("https://a.example/wiadomo%C5%9Bci/%c5%bc%C3%B3%C5%82w")
    assert declared_canonical(b"\x00\xff\xfe garbage", "utf-8", BASE) is None
