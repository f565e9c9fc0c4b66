"""URL normalisation and feed identity (table-driven)."""

from __future__ import annotations

import pytest

from ingest.urls import canonical_url, check_http_url, feed_id, host_of, resolve

CANONICAL = [
    ("http://Example.COM/a", "http://example.com/a"),
    ("HTTPS://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com./a", "https://example.com/a"),
    ("https://example.com/a#section-2", "https://example.com/a"),
    ("https://example.com/a?utm_source=rss&utm_medium=feed&id=7", "https://example.com/a?id=7"),
    ("https://example.com/a?fbclid=x&gclid=y&page=2", "https://example.com/a?page=2"),
    ("https://example.com/a?b=2&a=1", "https://example.com/a?b=2&a=1"),  # order kept
    ("https://example.com/A/Path", "https://example.com/A/Path"),  # path case kept
    ("https://example.com/a?ns_campaign=x&CMP=share", "https://example.com/a"),
    ("  https://example.com/a  ", "https://example.com/a"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
]


@pytest.mark.parametrize("url, expected", CANONICAL)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_feed_id_is_stable_across_spellings_and_differs_between_feeds():
    assert feed_id("HTTPS://News.example/rss?utm_source=x") == feed_id("https://news.example/rss")
    assert feed_id("https://news.example/rss") != feed_id("https://news.example/atom")
    assert len(feed_id("https://news.example/rss")) == 16


RESOLVE = [
    ("https://a.example/feed/", "/x/1", "https://a.example/x/1"),
    ("https://a.example/feed/", "2", "https://a.example/feed/2"),
    ("https://a.example/feed/", "https://b.example/y", "https://b.example/y"),
    ("https://a.example/feed/", "mailto:x@y", None),
    ("https://a.example/feed/", "javascript:alert(1)", None),
    ("https://a.example/feed/", "", None),
    ("https://a.example/feed/", None, None),
]


@pytest.mark.parametrize("base, link, expected", RESOLVE)
def test_resolve(base, link, expected):
    assert resolve(base, link) == expected


def test_host_of_and_check_http_url():
    assert host_of("https://News.Example.:8443/x") == "news.example"
    assert check_http_url(" https://a.example/f ") == "https://a.example/f"
    for bad in ("ftp://a.example/f", "a.example/f", "file:///etc/passwd", "https://"):
        with pytest.raises(ValueError):
            check_http_url(bad)
