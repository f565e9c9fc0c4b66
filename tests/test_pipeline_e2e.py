"""The walking skeleton: a page served on 127.0.0.1 flows poller -> Kafka -> processor -> indexer -> ES,
listed by an RSS feed or by a news sitemap (behind a sitemap index, gzip-compressed)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.poller import Poller
from newsflow.elastic import make_es
from processors.index.indexer import make_runner as make_indexer
from processors.index.search import search
from processors.processor import make_runner as make_processor
from tests.conftest import FIXTURES
from tests.support.feeds import news_sitemap, rss, sitemap_index

pytestmark = pytest.mark.integration


def serve_feed(site, tmp_path: Path) -> Path:
    site.add("/harbour.html", (FIXTURES / "article_harbour.html").read_bytes())
    site.add("/orchard.html", (FIXTURES / "article_orchard.html").read_bytes())
    feed = rss("Fixture News", [
        {"link": site.url("/harbour.html?utm_source=rss"), "title": "Lighthouse vote",
         "published": datetime(2024, 3, 5, 9, 30, tzinfo=UTC)},
        {"link": site.url("/orchard.html"), "title": "Late frost",
         "published": datetime(2024, 4, 18, 7, 0, tzinfo=UTC)},
    ])
    site.add("/feed.xml", feed, content_type="application/rss+xml")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - url: {site.url('/feed.xml')}\n")
    return feeds


def drain(settings) -> None:
    make_processor(settings).run(idle_exit_s=3)
    make_indexer(settings).run(idle_exit_s=3)
    es = make_es(settings)
    es.indices.refresh(index=settings.es_index)
    es.close()


def test_article_page_becomes_searchable(site, tmp_path, make_settings):
    settings = make_settings(feeds_file=serve_feed(site, tmp_path))
    assert Poller(settings).run(once=True) is None
    drain(settings)

    result = search(settings, "lighthouse")
    assert result["total"] == 1
    hit = result["hits"][0]
    assert hit["title"] == "Harbour town votes to rebuild its old lighthouse"
    assert hit["published_at"].startswith("2024-03-05T09:30")
    assert hit["url"] == site.url("/harbour.html")  # tracking parameter dropped
    es = make_es(settings)
    src = es.search(index=settings.es_index, query={"ids": {"values": [hit["id"]]}})["hits"]["hits"][0]["_source"]
    es.close()
    assert "cracked its lantern room in 2019" in src["text"]
    assert "Subscribe to our newsletter" not in src["text"]


def test_polling_the_same_feed_twice_leaves_one_document(site, tmp_path, make_settings):
    settings = make_settings(feeds_file=serve_feed(site, tmp_path))
    Poller(settings).run(once=True)
    Poller(settings).run(once=True)  # a second poller instance: no shared memory
    drain(settings)
    es = make_es(settings)
    try:
        assert es.count(index=settings.es_index)["count"] == 2
    finally:
        es.close()


def test_a_news_sitemap_s_articles_become_searchable(site, tmp_path, make_settings):
    now = datetime.now(UTC).replace(microsecond=0)
    site.add("/harbour.html", (FIXTURES / "article_harbour.html").read_bytes())
    site.add("/orchard.html", (FIXTURES / "article_orchard.html").read_bytes())
    site.add("/sitemaps/news.xml.gz", gzip.compress(news_sitemap([
        {"loc": site.url("/harbour.html?utm_source=sitemap"), "title": "Lighthouse vote",
         "published": now - timedelta(hours=2), "keywords": "lighthouse, harbour council"},
        {"loc": site.url("/orchard.html"), "title": "Late frost", "published": now - timedelta(days=9)},  # too old
    ], publication="Sitemap Gazette")), content_type="application/x-gzip")
    site.add("/sitemaps/index.xml", sitemap_index([(site.url("/sitemaps/news.xml.gz"), now)]),
             content_type="application/xml")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - url: {site.url('/sitemaps/index.xml')}\n")
    settings = make_settings(feeds_file=feeds)
    assert Poller(settings).run(once=True) is None
    drain(settings)

    result = search(settings, "lighthouse")
    assert result["total"] == 1 and site.hits("/orchard.html") == 0
    hit = result["hits"][0]
    assert hit["title"] == "Harbour town votes to rebuild its old lighthouse"
    assert hit["url"] == site.url("/harbour.html") and hit["source"] == "Sitemap Gazette"
    assert hit["published_at"].startswith((now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    es = make_es(settings)
    src = es.search(index=settings.es_index, query={"ids": {"values": [hit["id"]]}})["hits"]["hits"][0]["_source"]
    es.close()
    assert {"lighthouse", "harbour council"} <= set(src["tags"])
    assert src["feed_url"] == site.url("/sitemaps/index.xml")
