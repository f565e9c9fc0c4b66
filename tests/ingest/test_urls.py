"""URL normalisation and feed identity (table-driven)."""

from __future__ import annotations

import pytest

from ingest.urls import canonical_url, check_http_url, feed_id, host_of, identity_key, pick_canonical, resolve
from newsflow.schema import article_id

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
    ("https://example.com/a?ref=rss", "https://example.com/a"),  # feed tags on publishers' links
    ("https://example.com/a?iref=comp&id=3", "https://example.com/a?id=3"),
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


# Every spelling of one page's URL that a feed, a redirect or a page's canonical link may use: one id.
SAME_ARTICLE = [
    "https://www.example.com/news/1-lighthouse",
    "http://www.example.com/news/1-lighthouse",
    "https://example.com/news/1-lighthouse",
    "https://WWW.Example.COM/news/1-lighthouse",
    "https://m.example.com/news/1-lighthouse",
    "https://amp.example.com/news/1-lighthouse/",
    "https://www.example.com/news/1-lighthouse/",
    "https://www.example.com/news/1-lighthouse?utm_source=rss&utm_medium=feed",
    "https://www.example.com/news/1-lighthouse?ref=rss#comments",
    "https://www.example.com:443/news/1-lighthouse",
]
OTHER_ARTICLES = [
    "https://www.example.com/news/2-lighthouse",
    "https://www.example.com/News/1-lighthouse",  # path case is the site's
    "https://www.example.com/news/1-lighthouse?page=2",
    "https://www.example.com:8443/news/1-lighthouse",
    "https://example.org/news/1-lighthouse",
    "https://news.example.com/news/1-lighthouse",  # another host of the site: another page
]


def test_every_spelling_of_one_page_has_one_article_id():
    ids = {article_id(u) for u in SAME_ARTICLE}
    assert len(ids) == 1
    assert identity_key(SAME_ARTICLE[0]) == "//example.com/news/1-lighthouse"
    assert not ids & {article_id(u) for u in OTHER_ARTICLES}
    assert len({article_id(u) for u in OTHER_ARTICLES}) == len(OTHER_ARTICLES)


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/", "//example.com/"),
    ("http://[::1]:8080/x/", "//[::1]:8080/x"),
    ("http://127.0.0.1:8765/a?b=1", "//127.0.0.1:8765/a?b=1"),
    ("https://www.example/a", "//www.example/a"),  # "www" of a one-dot name is the name itself
    ("file:///tmp/seed.txt", "file:///tmp/seed.txt"),
    ("https://a.example/wiadomości/żółw", "//a.example/wiadomo%C5%9Bci/%C5%BC%C3%B3%C5%82w"),
    ("https://a.example/wiadomo%c5%9bci/%7Ejoe", "//a.example/wiadomo%C5%9Bci/~joe"),
    ("https://a.example/a%2Fb c?q=x y", "//a.example/a%2Fb%20c?q=x+y"),  # an escaped "/" stays escaped
])
def test_identity_key(url, expected):
    assert identity_key(url) == expected


@pytest.mark.parametrize(("declared", "expected", "source"), [
    (None, "https://www.a.example/news/1", "fetched"),
    ("https://a.example/news/1-lighthouse?utm_source=x", "https://a.example/news/1-lighthouse", "page"),
    ("https://m.a.example/news/1", "https://m.a.example/news/1", "page"),        # same site, mobile host
    ("http://www.a.example/news/1", "http://www.a.example/news/1", "page"),       # the site's own http link
    ("https://other.example/news/1", "https://www.a.example/news/1", "fetched"),  # another site
    ("https://www.a.example/", "https://www.a.example/news/1", "fetched"),        # the home page: a CMS bug
    ("https://www.a.example", "https://www.a.example/news/1", "fetched"),
    ("javascript:alert(1)", "https://www.a.example/news/1", "fetched"),
    ("https://[bad/x", "https://www.a.example/news/1", "fetched"),
])
def test_pick_canonical(declared, expected, source):
    assert pick_canonical(declared, "https://www.a.example/news/1") == (expected, source)
