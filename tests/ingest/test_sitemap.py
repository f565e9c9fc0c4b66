"""Sitemaps as sources: parsing (news fields, recency, indexes, hostile XML), and one source's job against
FixtureSite (gzip files, index walks with loops, depth and count bounds, failing children), no Kafka."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from ingest import transitions as T
from ingest.limits import Deadline
from ingest.parse import NotAFeed, parse_feed
from ingest.sitemap import parse_date, read_sitemap, sitemap_kind
from tests.ingest.conftest import local_settings
from tests.ingest.test_jobs import definition, job, raw_of
from tests.support import hostile
from tests.support.feeds import SITEMAP_NS, news_sitemap, sitemap_index

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = NOW - timedelta(hours=3)
OLD = NOW - timedelta(days=30)
SINCE = NOW - timedelta(days=2)
BASE = "https://news.example/sitemap.xml"


def parse(body: bytes, max_entries: int = 100, since: datetime | None = SINCE):
    return parse_feed(body, url=BASE, content_type="application/xml", max_entries=max_entries, since=since)


# --- parsing ---------------------------------------------------------------------------------------------
def test_news_entries_carry_title_date_language_keywords_image_and_publication():
    body = news_sitemap([{"loc": "/world/1", "title": "Dam opens & floods", "published": RECENT,
                          "lastmod": RECENT + timedelta(minutes=5), "keywords": "dams, floods ,", "language": "de",
                          "image": "https://img.example/1.jpg"}], publication="The Example Times")
    parsed = parse(body)
    (e,) = parsed.entries
    assert parsed.version == "sitemap" and parsed.title == "The Example Times" and parsed.bozo is None
    assert e.page_url == "https://news.example/world/1"  # relative locs resolved against the sitemap
    assert (e.title, e.published, e.updated) == ("Dam opens & floods", RECENT, RECENT + timedelta(minutes=5))
    assert (e.language, e.tags, e.image) == ("de", ["dams", "floods"], "https://img.example/1.jpg")
    assert e.guid is None and parsed.dates == [RECENT]


@pytest.mark.parametrize("entry, kept", [
    ({"published": RECENT}, True),
    ({"lastmod": RECENT}, True),  # a plain sitemap entry: lastmod is its date
    ({"published": OLD, "lastmod": RECENT}, True),  # the later date counts: an old article updated now
    ({"published": OLD}, False),
    ({"lastmod": OLD}, False),
    ({}, False),  # no date at all: skipped
], ids=["news-date", "lastmod", "old-but-modified", "old", "old-lastmod", "undated"])
def test_only_recent_entries_are_read(entry, kept):
    parsed = parse(news_sitemap([{"loc": "https://news.example/a"} | entry]))
    assert len(parsed.entries) == int(kept) and parsed.total_entries == 1


def test_a_sitemap_with_only_undated_entries_says_why_nothing_is_read():
    parsed = parse(news_sitemap([{"loc": f"https://news.example/{i}"} for i in range(3)]))
    assert not parsed.entries and "3 of 3 sitemap entries have no news:publication_date or lastmod" in parsed.bozo


def test_newest_entries_first_up_to_the_cap():
    entries = [{"loc": f"https://news.example/{i}", "published": RECENT - timedelta(minutes=i)} for i in range(50)]
    entries.reverse()  # oldest first in the document
    parsed = parse(news_sitemap(entries), max_entries=5)
    assert [e.page_url.rsplit("/", 1)[1] for e in parsed.entries] == ["0", "1", "2", "3", "4"]
    assert parsed.total_entries == 50


def test_an_index_lists_its_recent_children_newest_first_undated_last():
    body = sitemap_index([("https://news.example/old.xml", OLD), "https://news.example/undated.xml",
                          ("https://news.example/new.xml", RECENT), ("https://news.example/newer.xml.gz", NOW),
                          "https://news.example/undated.xml"])
    parsed = parse(body)
    assert parsed.version == "sitemapindex" and not parsed.entries
    assert parsed.sitemaps == ["https://news.example/newer.xml.gz", "https://news.example/new.xml",
                               "https://news.example/undated.xml"]


@pytest.mark.parametrize("head, kind", [
    (b'<?xml version="1.0"?>\n<urlset xmlns="x">', "urlset"),
    (b'\xef\xbb\xbf<?xml version="1.0"?><!-- generated --><sitemapindex>', "sitemapindex"),
    (b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY a "b">]><sm:urlset xmlns:sm="x">', "urlset"),
    (b'<?xml version="1.0"?><rss version="2.0">', None),
    (b"<html><body>urlset</body></html>", None),
])
def test_sitemaps_are_known_by_their_root_element(head, kind):
    assert sitemap_kind(head) == kind


@pytest.mark.parametrize("text, expected", [
    ("2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
    ("2024-03-05T09:30Z", datetime(2024, 3, 5, 9, 30, tzinfo=UTC)),
    ("2024-03-05T09:30:00+01:00", datetime(2024, 3, 5, 8, 30, tzinfo=UTC)),
    ("2024-03-05T09:30:00.123-05:00", datetime(2024, 3, 5, 14, 30, 0, 123000, tzinfo=UTC)),
    ("yesterday", None), ("", None),
])
def test_w3c_dates(text, expected):
    assert parse_date(text) == expected


def test_entities_are_not_expanded():
    body = (f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY e "/expanded">]><urlset {SITEMAP_NS}>'
            f"<url><loc>https://news.example/a&e;</loc><lastmod>{RECENT.isoformat()}</lastmod></url></urlset>").encode()
    assert [e.page_url for e in parse(body).entries] == ["https://news.example/a"]
    levels = "".join(['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">'
                                                for i in range(1, 10)])
    bomb = (f'<?xml version="1.0"?><!DOCTYPE urlset [{levels}]><urlset {SITEMAP_NS}>'
            f"<url><loc>https://news.example/&l9;</loc><lastmod>{RECENT.isoformat()}</lastmod></url></urlset>").encode()
    with pytest.raises(NotAFeed, match="parse: sitemap: XMLSyntaxError"):  # libxml2 refuses the amplification
        parse(bomb)


def test_a_broken_document_keeps_what_was_read():
    body = (f"<urlset {SITEMAP_NS}><url><loc>https://news.example/1</loc><lastmod>{RECENT.isoformat()}</lastmod></url>"
            f"<url><loc>https://news.example/2</loc><lastmod>{RECENT.isoformat()}</lastmod></url>"
            "<url><loc>https://news.example/3</loc><lastm").encode()
    parsed = parse(body)
    assert [e.page_url for e in parsed.entries] == ["https://news.example/1", "https://news.example/2"]
    assert parsed.bozo.startswith("XMLSyntaxError") and parsed.bozo_class == "parse"


@pytest.mark.parametrize("body", [b"\x00\x01garbage\xff" * 100, b"<urlset", b"just text"])
def test_garbage_is_not_a_feed(body):
    with pytest.raises(NotAFeed):
        parse(body)


def test_within_an_entry_the_first_of_each_field_counts_and_other_elements_are_dropped():
    filler = "<x:junk xmlns:x='urn:x'>pad</x:junk>" * 100_000  # dropped as read: memory stays flat
    body = (f"<urlset {SITEMAP_NS}><url><loc>https://news.example/first</loc>{filler}"
            f"<loc>https://news.example/second</loc><lastmod>{RECENT.isoformat()}</lastmod>"
            f"<lastmod>{OLD.isoformat()}</lastmod></url></urlset>").encode()
    (e,) = parse(body).entries
    assert (e.page_url, e.updated) == ("https://news.example/first", RECENT)


def test_a_huge_sitemap_keeps_only_the_cap_in_memory():
    n = 20_000
    urls = b"".join(b"<url><loc>https://news.example/%d</loc><lastmod>%s</lastmod></url>"
                    % (i, (RECENT + timedelta(seconds=i)).isoformat().encode()) for i in range(n))
    sm = read_sitemap(b"<urlset>" + urls + b"</urlset>", base_url=BASE, since=SINCE, limit=10)
    assert sm.total == n and len(sm.entries) == 10 and sm.entries[0].loc == f"https://news.example/{n - 1}"


# --- one source's job ----------------------------------------------------------------------------------------
def sitemaps_counted(result: str) -> float:
    return REGISTRY.get_sample_value("newsflow_ingest_sitemaps_total", {"result": result}) or 0.0


def page(site, path: str, title: str) -> str:
    return site.add(path, hostile.page_html(title, f"{title}: the council met on Tuesday. " * 20))


def test_a_news_sitemap_is_polled_like_a_feed_and_its_entry_fields_reach_the_raw_article(site):
    page(site, "/a", "A")
    page(site, "/old", "Old")
    site.add("/news.xml", news_sitemap([
        {"loc": site.url("/a?utm_source=sitemap"), "title": "A headline", "published": RECENT, "keywords": "x, y",
         "language": "fr"},
        {"loc": site.url("/old"), "title": "Old", "published": OLD},
    ], publication="Local Paper"), content_type="application/xml")
    result, st = job(local_settings(), definition(site.url("/news.xml")))
    (raw,) = raw_of(result)
    assert result.outcome == "new" and site.hits("/old") == 0
    assert raw.canonical_url == site.url("/a") and raw.feed_title == "Local Paper"
    assert (raw.entry.title, raw.entry.published, raw.entry.language, raw.entry.tags) == (
        "A headline", RECENT, "fr", ["x", "y"])
    again, _ = job(local_settings(), definition(site.url("/news.xml")), st)
    assert again.outcome in ("not_modified", "unchanged") and not again.pages


def test_a_gzip_sitemap_file_is_read_and_a_gzip_bomb_file_is_refused(site):
    page(site, "/a", "A")
    site.add("/news.xml.gz", gzip.compress(news_sitemap([{"loc": site.url("/a"), "published": RECENT}])),
             content_type="application/x-gzip")
    site.add("/bomb.xml.gz", handler=hostile.gzip_bomb_file(64 * 1024 * 1024))
    result, _ = job(local_settings(), definition(site.url("/news.xml.gz")))
    assert len(raw_of(result)) == 1
    result, st = job(local_settings(), definition(site.url("/bomb.xml.gz")))
    assert result.outcome == "too_large" and st.consecutive_errors == 1 and "after decompression" in st.last_error


def test_an_index_is_walked_with_loops_cut_and_every_child_read_once(site):
    for i in range(3):
        page(site, f"/p{i}", f"P{i}")
    site.add("/index.xml", sitemap_index([site.url("/index.xml"), site.url("/sub-index.xml"),
                                          (site.url("/news-0.xml"), RECENT)]), content_type="application/xml")
    site.add("/sub-index.xml", sitemap_index([site.url("/index.xml?"), site.url("/news-1.xml.gz"),
                                              site.url("/news-0.xml")]), content_type="application/xml")
    site.add("/news-0.xml", news_sitemap([{"loc": site.url("/p0"), "published": RECENT}]),
             content_type="application/xml")
    site.add("/news-1.xml.gz", gzip.compress(news_sitemap([{"loc": site.url("/p1"), "published": RECENT},
                                                           {"loc": site.url("/p0"), "published": RECENT}])),
             content_type="application/gzip")
    d = definition(site.url("/index.xml"))
    before = {r: sitemaps_counted(r) for r in ("ok", "loop")}
    result, st = job(local_settings(), d)
    assert sorted(r.canonical_url for r in raw_of(result)) == [site.url("/p0"), site.url("/p1")]
    assert [site.hits(p) for p in ("/index.xml", "/sub-index.xml", "/news-0.xml", "/news-1.xml.gz")] == [1, 1, 1, 1]
    # counted: 3 children read; the index listed by itself and by its child, news-0 listed twice
    assert {r: sitemaps_counted(r) - n for r, n in before.items()} == {"ok": 3, "loop": 3}
    assert st.sitemap_index and st.consecutive_errors == 0 and st.last_error is None
    assert T.conditional_headers(st) == {}  # an index is always read in full: its children change, not it
    again, _ = job(local_settings(), d, st)
    assert again.outcome == "unchanged" and not again.pages
    site.add("/news-0.xml", news_sitemap([{"loc": site.url("/p0"), "published": RECENT},
                                          {"loc": site.url("/p2"), "published": NOW}]),
             content_type="application/xml")
    changed, _ = job(local_settings(), d, st)
    assert changed.outcome == "new" and [r.canonical_url for r in raw_of(changed)] == [site.url("/p2")]


def test_an_index_is_followed_to_a_bounded_depth_and_number_of_files(site):
    page(site, "/p", "P")
    # a chain of indexes 5 deep, and 30 children at the first level
    for i in range(5):
        site.add(f"/i{i}.xml", sitemap_index([site.url(f"/i{i + 1}.xml")]), content_type="application/xml")
    site.add("/i5.xml", news_sitemap([{"loc": site.url("/p"), "published": RECENT}]), content_type="application/xml")
    result, st = job(local_settings(sitemap_max_depth=2), definition(site.url("/i0.xml")))
    assert not result.pages and [site.hits(f"/i{i}.xml") for i in range(6)] == [1, 1, 1, 0, 0, 0]
    assert st.last_error_class == "sitemap" and "deeper than sitemap_max_depth (2)" in st.last_error
    site.add("/wide.xml", sitemap_index([site.url(f"/w{i}.xml") for i in range(30)]), content_type="application/xml")
    for i in range(30):
        site.add(f"/w{i}.xml", news_sitemap([{"loc": site.url("/p"), "published": RECENT}]),
                 content_type="application/xml")
    result, st = job(local_settings(sitemap_max_files=4), definition(site.url("/wide.xml")))
    assert sum(site.hits(f"/w{i}.xml") for i in range(30)) == 4 and len(result.pages) == 1
    assert "26 sitemaps over sitemap_max_files (4) not read" in st.last_error


def test_failing_children_are_on_the_health_and_an_index_whose_children_all_fail_is_a_failed_poll(site):
    page(site, "/p", "P")
    site.add("/ok.xml", news_sitemap([{"loc": site.url("/p"), "published": RECENT}]), content_type="application/xml")
    site.add("/garbage.xml", b"\x00\x01 not xml at all \xff" * 50, content_type="application/xml")
    site.add("/bomb.xml.gz", handler=hostile.gzip_bomb_file(64 * 1024 * 1024))
    site.add("/rss.xml", hostile.rss_document(hostile.rss_items(2)), content_type="application/rss+xml")
    site.add("/mixed.xml", sitemap_index([site.url(p) for p in ("/ok.xml", "/garbage.xml", "/bomb.xml.gz")]),
             content_type="application/xml")
    result, st = job(local_settings(), definition(site.url("/mixed.xml")))
    assert len(result.pages) == 1 and st.consecutive_errors == 0 and st.last_error_class == "sitemap"
    assert "garbage.xml: parse" in st.last_error and "bomb.xml.gz: too_large" in st.last_error
    site.add("/bad.xml", sitemap_index([site.url(p) for p in ("/bomb.xml.gz", "/missing.xml", "/rss.xml")]),
             content_type="application/xml")
    result, st = job(local_settings(), definition(site.url("/bad.xml")))
    assert result.outcome == "too_large" and st.consecutive_errors == 1 and st.health == "backing-off"
    assert st.last_error.startswith("all 3 sitemaps of the index failed; ") and "bomb.xml.gz" in st.last_error


class _PassesAfter(Deadline):
    """A batch deadline that passes after ``n`` checks (the root's request is the first)."""

    def __init__(self, n: int):
        super().__init__(float("inf"))
        self.left = n

    def passed(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_children_whose_turn_comes_after_the_batch_deadline_are_left_for_the_next_poll(site):
    page(site, "/p", "P")
    site.add("/index.xml", sitemap_index([site.url("/a.xml"), site.url("/b.xml")]), content_type="application/xml")
    for name in ("a", "b"):
        site.add(f"/{name}.xml", news_sitemap([{"loc": site.url("/p"), "published": RECENT}]),
                 content_type="application/xml")
    d = definition(site.url("/index.xml"))
    result, st = job(local_settings(), d, deadline=_PassesAfter(1))
    assert result.polled and not result.pages and site.hits("/a.xml") == site.hits("/b.xml") == 0
    assert st.consecutive_errors == 0 and "2 sitemaps left for the next poll" in st.last_error
    result, st = job(local_settings(), d, st)
    assert result.outcome == "new" and len(result.pages) == 1 and site.hits("/a.xml") == site.hits("/b.xml") == 1
