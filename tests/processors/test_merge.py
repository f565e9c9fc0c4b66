"""Feed entry + page metadata merge rules (processors/merge.py), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsflow.schema import FeedEntry
from processors.extract import PageMeta
from processors.jsonld import Credit
from processors.merge import merge, pick_title, site_names, strip_site

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAST = datetime(2024, 4, 30, 8, 0, tzinfo=UTC)
PAGE_DATE = datetime(2024, 4, 29, 0, 0, tzinfo=UTC)
FUTURE = NOW + timedelta(hours=3)
NAMES = site_names("Harbour Gazette", "Harbour Gazette - News", "www.harbour.example")


def page(**kw) -> PageMeta:
    return PageMeta(**kw)


HEAD = "Lighthouse to be rebuilt after storm"


@pytest.mark.parametrize(("headlines", "feed_title", "expected", "source"), [
    # the feed's title wins when nothing speaks against it ...
    ([("og:title", HEAD)], "Lighthouse vote", "Lighthouse vote", "feed"),
    ([("og:title", HEAD)], "Lighthouse vote | Harbour Gazette", "Lighthouse vote", "feed"),  # site affix cut
    ([("og:title", HEAD)], "Lighthouse &amp; beacon", "Lighthouse & beacon", "feed"),      # entities decoded
    # ... but not when it is cut short, the site's name or a page headline plus an affix
    ([("json-ld", HEAD)], "Lighthouse to be rebuilt…", HEAD, "page:json-ld"),
    ([("h1", HEAD)], "Lighthouse to be rebuilt ...", HEAD, "page:h1"),
    ([("og:title", HEAD)], "Harbour Gazette", HEAD, "page:og:title"),
    ([("og:title", HEAD)], f"{HEAD} - Local news", HEAD, "page:og:title"),
    ([("og:title", HEAD)], f"Opinion | {HEAD}", HEAD, "page:og:title"),
    ([("og:title", f"Opinion / {HEAD}"), ("h1", HEAD)], f"Opinion / {HEAD}", f"Opinion / {HEAD}", "feed"),  # the page says it too
    ([("json-ld", HEAD), ("title", f"{HEAD} - Local news")], f"{HEAD} - Local news", f"{HEAD} - Local news", "feed"),
    ([("og:title", HEAD), ("h1", HEAD)], "Lighthouse vote", HEAD, "page:og:title"),  # the page agrees on another one
    ([("og:title", HEAD), ("h1", "Vote on the lighthouse")], "Lighthouse vote", "Lighthouse vote", "feed"),  # it does not
    ([("og:title", HEAD), ("h1", "Lighthouse vote")], "Lighthouse vote", "Lighthouse vote", "feed"),  # one tag says so too
    ([("og:title", HEAD)], f"{HEAD} in the night", f"{HEAD} in the night", "feed"),  # more words: another headline
    ([("og:title", HEAD)], f"{HEAD}: what we know", f"{HEAD}: what we know", "feed"),  # a colon ends no affix
    ([("og:title", f"{HEAD}-News|Harbour Gazette"), ("json-ld", HEAD)], None, HEAD, "page:json-ld"),  # no spaces
    # no feed title: the headline the page's tags agree on
    ([("og:title", HEAD), ("h1", HEAD), ("title", f"{HEAD} | Harbour Gazette")], None, HEAD, "page:og:title"),
    ([("og:title", f"{HEAD} - Harbour Daily"), ("h1", HEAD), ("title", f"{HEAD} - Harbour Daily")], None,
     HEAD, "page:h1"),                                                    # an unknown affix: the bare one wins
    ([("json-ld", "Storm: lighthouse to be rebuilt"), ("og:title", HEAD)], None,
     "Storm: lighthouse to be rebuilt", "page:json-ld"),                  # disagreement: JSON-LD first
    ([("og:title", "Harbour Gazette"), ("h1", HEAD)], None, HEAD, "page:h1"),  # the site's name is no headline
    ([("h1", "Politics | " + HEAD), ("og:title", HEAD), ("title", HEAD)], None, HEAD, "page:og:title"),  # kicker
    ([("title", "Harbour Gazette – " + HEAD)], None, HEAD, "page:title"),  # leading site name cut
    ([("title", "Vote - the result | Harbour Gazette")], None, "Vote - the result", "page:title"),
    ([], None, None, "none"),
    ([("og:title", "Harbour Gazette")], None, None, "none"),
])
def test_title(headlines, feed_title, expected, source):
    assert pick_title(headlines, feed_title, NAMES) == (expected, source)


def test_strip_site_keeps_titles_without_site_name():
    assert strip_site("Rates - what changes in May", NAMES) == "Rates - what changes in May"


DECLARED = datetime(2024, 4, 28, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("feed_published", "declared", "page_date", "feed_updated", "expected", "source"), [
    (PAST, DECLARED, PAGE_DATE, None, PAST, "feed"),     # the feed's date wins
    (None, DECLARED, PAGE_DATE, None, DECLARED, "page:published"),  # then the page's datePublished
    (FUTURE, FUTURE, PAGE_DATE, None, PAGE_DATE, "page"),  # a future declared date is no date
    (None, None, PAGE_DATE, None, PAGE_DATE, "page"),    # ... unless missing
    (FUTURE, None, PAGE_DATE, None, PAGE_DATE, "page"),  # ... or in the future
    (FUTURE, None, FUTURE, PAST, PAST, "feed:updated"),  # a future page date is no better
    (None, None, None, PAST, PAST, "feed:updated"),
    (None, None, None, None, None, "none"),
    (NOW, None, None, None, NOW, "feed"),                # exactly the fetch time is not the future
])
def test_published_at(feed_published, declared, page_date, feed_updated, expected, source):
    entry = FeedEntry(published=feed_published, updated=feed_updated)
    merged = merge(page(published=declared, date=lambda: page_date), entry, feed_title=None, canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert (merged.published_at, merged.sources["published_at"]) == (expected, source)


def test_page_date_is_not_computed_when_the_feed_has_one():
    calls = []
    merge(page(date=lambda: calls.append(1)), FeedEntry(published=PAST), feed_title=None,
          canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert calls == []


@pytest.mark.parametrize(("page_kw", "feed_author", "byline", "expected", "source"), [
    ({"credits": [Credit("Jane Doe")]}, "John Roe", None, ["John Roe"], "feed"),  # dc:creator first
    ({"credits": [Credit("Jane Doe"), Credit("Harbour Gazette", True)]}, None, None, ["Jane Doe"], "page:json-ld"),
    ({"meta_authors": ["Jane Doe, John Roe"]}, None, None, ["Jane Doe", "John Roe"], "page:meta"),
    ({"author": "Jane Doe"}, None, None, ["Jane Doe"], "page:meta"),      # trafilatura's meta/JSON-LD reading
    ({}, "By John Roe (jroe@harbour.example)", None, ["John Roe"], "feed"),  # cleaned
    ({}, "jroe@harbour.example", "Byline Person", ["Byline Person"], "page:byline"),  # an e-mail is no name
    ({}, "admin", "Byline Person", ["Byline Person"], "page:byline"),    # generic
    ({"credits": [Credit("Harbour Gazette", True)]}, None, "Byline Person", ["Byline Person"], "page:byline"),
    ({"credits": [Credit("Harbour Gazette", True)]}, None, None, ["Harbour Gazette"], "page:json-ld"),  # org only
    ({"author": "Harbour Gazette"}, None, None, ["Harbour Gazette"], "page:meta"),
    ({}, None, None, [], "none"),
])
def test_authors(page_kw, feed_author, byline, expected, source):
    merged = merge(page(byline=lambda: byline, site_name="Harbour Gazette", **page_kw),
                   FeedEntry(author=feed_author), feed_title=None, canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert (merged.authors, merged.sources["authors"]) == (expected, source)


def test_byline_heuristics_run_only_when_needed():
    calls = []
    merge(page(credits=[Credit("Jane Doe")], byline=lambda: calls.append(1)), FeedEntry(), feed_title=None,
          canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert calls == []


def test_description_site_name_image_and_lists():
    entry = FeedEntry(summary="<p>The <b>old</b> lighthouse</p>", tags=["Harbour", "Votes"], image="https://a.example/f.jpg")
    m = merge(page(tags=["harbour, lighthouse"], categories=["Local"]), entry, feed_title="Harbour Gazette",
              canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert m.description == "The old lighthouse" and m.sources["description"] == "feed"
    assert m.site_name == "Harbour Gazette" and m.sources["site_name"] == "feed"
    assert m.image == "https://a.example/f.jpg" and m.sources["image"] == "feed"
    assert m.tags == ["harbour", "lighthouse", "Votes"] and m.sources["tags"] == "page+feed"
    assert m.categories == ["Local"]

    m = merge(page(description="Page says", site_name="Gazette", image="https://a.example/p.jpg"), entry,
              feed_title="Feed", canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert (m.description, m.site_name, m.image) == ("Page says", "Gazette", "https://a.example/p.jpg")
