"""Feed entry + page metadata merge rules (processors/merge.py), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsflow.schema import FeedEntry
from processors.extract import PageMeta
from processors.merge import clean_author, merge, pick_title, site_names, strip_site

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAST = datetime(2024, 4, 30, 8, 0, tzinfo=UTC)
PAGE_DATE = datetime(2024, 4, 29, 0, 0, tzinfo=UTC)
FUTURE = NOW + timedelta(hours=3)
NAMES = site_names("Harbour Gazette", "Harbour Gazette - News", "www.harbour.example")


def page(**kw) -> PageMeta:
    return PageMeta(**kw)


@pytest.mark.parametrize(("page_title", "feed_title", "expected", "source"), [
    ("Lighthouse to be rebuilt", "Lighthouse vote", "Lighthouse to be rebuilt", "page"),
    ("Harbour Gazette", "Lighthouse vote", "Lighthouse vote", "feed"),             # page title is the site name
    ("harbour gazette!", "Lighthouse vote", "Lighthouse vote", "feed"),            # ... whatever the case/punctuation
    ("Harbour Gazette - News", "Lighthouse vote", "Lighthouse vote", "feed"),      # ... or the feed's title
    ("www.harbour.example", "Lighthouse vote", "Lighthouse vote", "feed"),         # ... or the host
    ("Lighthouse to be rebuilt | Harbour Gazette", None, "Lighthouse to be rebuilt", "page"),  # suffix cut
    ("Harbour Gazette – Lighthouse to be rebuilt", None, "Lighthouse to be rebuilt", "page"),  # prefix cut
    ("Vote - the result | Harbour Gazette", None, "Vote - the result", "page"),     # only the site part goes
    (None, "Lighthouse vote", "Lighthouse vote", "feed"),
    ("  ", "Lighthouse &amp; beacon", "Lighthouse & beacon", "feed"),              # entities decoded
    ("Harbour Gazette", None, "Harbour Gazette", "page"),                          # nothing better: keep it
    (None, None, None, "none"),
])
def test_title(page_title, feed_title, expected, source):
    assert pick_title(page_title, feed_title, NAMES) == (expected, source)


def test_strip_site_keeps_titles_without_site_name():
    assert strip_site("Rates - what changes in May", NAMES) == "Rates - what changes in May"


@pytest.mark.parametrize(("feed_published", "page_date", "feed_updated", "expected", "source"), [
    (PAST, PAGE_DATE, None, PAST, "feed"),               # the feed's date wins
    (None, PAGE_DATE, None, PAGE_DATE, "page"),          # ... unless missing
    (FUTURE, PAGE_DATE, None, PAGE_DATE, "page"),        # ... or in the future
    (FUTURE, FUTURE, PAST, PAST, "feed:updated"),        # a future page date is no better
    (None, None, PAST, PAST, "feed:updated"),
    (None, None, None, None, "none"),
    (NOW, None, None, NOW, "feed"),                      # exactly now is not the future
])
def test_published_at(feed_published, page_date, feed_updated, expected, source):
    entry = FeedEntry(published=feed_published, updated=feed_updated)
    merged = merge(page(date=lambda: page_date), entry, feed_title=None, canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert (merged.published_at, merged.sources["published_at"]) == (expected, source)


def test_page_date_is_not_computed_when_the_feed_has_one():
    calls = []
    merge(page(date=lambda: calls.append(1)), FeedEntry(published=PAST), feed_title=None,
          canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert calls == []


@pytest.mark.parametrize(("page_author", "feed_author", "byline", "expected", "source"), [
    ("Jane Doe", "John Roe", None, "Jane Doe", "page"),                    # structured page markup first
    (None, "John Roe", "Byline Person", "John Roe", "feed"),               # then the feed
    (None, "By John Roe (jroe@harbour.example)", None, "John Roe", "feed"),  # cleaned
    (None, "jroe@harbour.example", "Byline Person", "Byline Person", "page:byline"),  # an e-mail alone is no name
    (None, "admin", "Byline Person", "Byline Person", "page:byline"),      # generic
    ("Harbour Gazette", None, None, None, "none"),                         # the site is not an author
    (None, None, None, None, "none"),
])
def test_author(page_author, feed_author, byline, expected, source):
    merged = merge(page(author=page_author, byline=lambda: byline, site_name="Harbour Gazette"),
                   FeedEntry(author=feed_author), feed_title=None, canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert (merged.author, merged.sources["author"]) == (expected, source)


def test_byline_heuristics_run_only_when_needed():
    calls = []
    merge(page(author="Jane Doe", byline=lambda: calls.append(1)), FeedEntry(), feed_title=None,
          canonical="https://a.example/x", canonical_from="fetched", now=NOW)
    assert calls == []


def test_clean_author_rejects_non_names():
    assert clean_author("12345", set()) is None
    assert clean_author("Von Anna Berg", set()) == "Anna Berg"
    assert clean_author("Anna Berg; Tom Roe", set()) == "Anna Berg; Tom Roe"
    assert clean_author("Jan Fleischhauer; Deutscher Journalist; Kolumnist; Autor", set()) == "Jan Fleischhauer"
    assert clean_author("CSP; International; Photovoltaik; Solarthermie; Speicher", set()) is None


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
