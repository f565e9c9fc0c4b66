"""Feed parsing rules: identity, version, caps, content-type sanity, bozo (table-driven)."""

from __future__ import annotations

import resource

import pytest

from ingest.parse import NotAFeed, check_feed_type, check_page_type, entry_ref, parse_feed, truncate_entries
from tests.support import hostile

BASE = "https://news.example/feed.xml"


def one(item_xml: str, url: str = BASE):
    body = hostile.rss_document(item_xml.encode())
    parsed = parse_feed(body, url=url, content_type="application/rss+xml", max_entries=100)
    assert len(parsed.entries) == 1
    return parsed.entries[0]


IDENTITY = [
    # item, the identity that must be equal for the second item
    ("<item><guid>abc</guid><link>https://news.example/a</link></item>",
     "<item><guid>abc</guid><link>https://news.example/b</link></item>", True),  # GUID wins over link
    ("<item><guid>abc</guid><link>https://news.example/a</link></item>",
     "<item><guid>abd</guid><link>https://news.example/a</link></item>", False),
    ("<item><link>https://news.example/a?utm_source=rss</link></item>",
     "<item><link>https://NEWS.example/a#top</link></item>", True),  # else the normalised link
    ("<item><title>t</title><description>body one</description></item>",
     "<item><title>t</title><description>body one</description></item>", True),  # else a content hash
    ("<item><title>t</title><description>body one</description></item>",
     "<item><title>t</title><description>body two</description></item>", False),
]


@pytest.mark.parametrize("a, b, same", IDENTITY)
def test_entry_identity_guid_then_link_then_content_hash(a, b, same):
    assert (one(a).key == one(b).key) is same


VERSION = [
    ("<item><guid>g</guid><title>A</title><link>https://news.example/a</link></item>",
     "<item><guid>g</guid><title>A (updated)</title><link>https://news.example/a</link></item>", False),
    ("<item><guid>g</guid><title>A</title><description>x</description></item>",
     "<item><guid>g</guid><title>A</title><description>y</description></item>", True),  # summaries churn
    ('<item xmlns:atom="http://www.w3.org/2005/Atom"><guid>g</guid><title>A</title>'
     "<atom:updated>2025-01-01T00:00:00Z</atom:updated></item>",
     '<item xmlns:atom="http://www.w3.org/2005/Atom"><guid>g</guid><title>B</title>'
     "<atom:updated>2025-01-01T00:00:00Z</atom:updated></item>", True),  # updated date decides
]


@pytest.mark.parametrize("a, b, same", VERSION)
def test_entry_version(a, b, same):
    ra, rb = one(a), one(b)
    assert ra.key == rb.key
    assert (ra.version == rb.version) is same


def test_relative_links_resolve_against_the_final_feed_url_and_metadata_is_kept():
    ref = one("<item><title>T</title><link>/2025/story.html</link><guid isPermaLink='false'>x1</guid>"
              "<pubDate>Sat, 01 Mar 2025 10:00:00 GMT</pubDate><author>a@b.example (Ann)</author>"
              "<category>Politics</category><enclosure url='https://img.example/p.jpg' type='image/jpeg' length='1'/>"
              "</item>")
    assert ref.page_url == "https://news.example/2025/story.html"
    assert ref.guid == "x1"
    assert ref.published.isoformat() == "2025-03-01T10:00:00+00:00"
    assert ref.tags == ["Politics"]
    assert ref.image == "https://img.example/p.jpg"


def test_atom_and_json_feeds_parse():
    atom = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
            b'<entry><id>urn:1</id><title>e</title><link rel="alternate" href="https://a.example/1"/>'
            b"<updated>2025-01-01T00:00:00Z</updated></entry></feed>")
    parsed = parse_feed(atom, url="https://a.example/atom", content_type="application/atom+xml", max_entries=10)
    assert [e.page_url for e in parsed.entries] == ["https://a.example/1"]
    js = b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [{"id": "1", "url": "https://j.example/1"}]}'
    parsed = parse_feed(js, url="https://j.example/feed.json", content_type="application/feed+json", max_entries=10)
    assert [e.page_url for e in parsed.entries] == ["https://j.example/1"]


def test_truncate_entries_keeps_the_document_well_formed():
    body = hostile.many_entries_feed(50)
    cut, counted = truncate_entries(body, 10)
    assert counted == 50
    assert cut.endswith(b"</channel></rss>")
    parsed = parse_feed(cut, url=BASE, content_type="application/rss+xml", max_entries=1000)
    assert len(parsed.entries) == 10 and parsed.bozo is None
    assert truncate_entries(body, 50) == (body, 50)


def test_a_100000_entry_feed_is_capped_before_parsing():
    body = hostile.many_entries_feed(100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parsed = parse_feed(body, url=BASE, content_type="application/rss+xml", max_entries=500)
    assert len(parsed.entries) == 500
    assert parsed.total_entries == 100_000
    assert parsed.entries[0].page_url == "http://127.0.0.1/a/0"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: no full parse


def test_bozo_keeps_the_entries_feedparser_could_read_and_reports_the_error():
    body = hostile.rss_document(b"<item><title>one</title><link>https://x.example/1</link></item>"
                                b"<item><title>two &bogus; <b>unclosed</title><link>https://x.example/2</link></item>")
    parsed = parse_feed(body, url=BASE, content_type="application/rss+xml", max_entries=10)
    assert parsed.bozo
    assert [e.page_url for e in parsed.entries][:1] == ["https://x.example/1"]


def test_invalid_utf8_feed_is_read_with_a_bozo_note():
    parsed = parse_feed(hostile.invalid_utf8_feed(), url=BASE, content_type="application/rss+xml; charset=utf-8",
                        max_entries=10)
    assert [e.guid for e in parsed.entries] == ["u1", "u2"]
    assert parsed.bozo


def test_entity_expansion_does_not_expand():
    body = hostile.entity_expansion_feed(9)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        parsed = parse_feed(body, url=BASE, content_type="application/rss+xml", max_entries=10)
    except NotAFeed:
        return  # refusing the document is as good as not expanding it
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    assert len(parsed.title or "") < 10_000
    assert len(parsed.entries) <= 1


FEED_TYPES = [
    ("application/rss+xml", b"<rss>", None),
    ("text/xml", b"<?xml version='1.0'?><feed>", None),
    ("text/html", b"<?xml version='1.0'?><rss version='2.0'>", None),  # mislabelled feed: fine
    ("application/octet-stream", b"<rss>", None),
    ("image/png", b"\x89PNG", "bad_content_type"),
    ("application/pdf", b"%PDF-1.4", "bad_content_type"),
    ("video/mp4", b"....", "bad_content_type"),
    ("text/html", b"<!DOCTYPE html><html><head><title>home</title>", "bad_content_type"),
    ("", b"  <html lang=en><body>", "bad_content_type"),
]


@pytest.mark.parametrize("media_type, head, error", FEED_TYPES)
def test_feed_content_type_sanity(media_type, head, error):
    if error is None:
        check_feed_type(media_type, head)
    else:
        with pytest.raises(NotAFeed) as exc:
            check_feed_type(media_type, head)
        assert exc.value.error_class == error


PAGE_TYPES = [
    ("text/html", b"anything", True),
    ("application/xhtml+xml", b"<html", True),
    ("", b"<!doctype html><html>", True),
    ("application/octet-stream", b"<html><body>", True),
    ("application/pdf", b"%PDF", False),
    ("image/jpeg", b"\xff\xd8", False),
    ("application/json", b"{}", False),
]


@pytest.mark.parametrize("media_type, head, ok", PAGE_TYPES)
def test_page_content_type_sanity(media_type, head, ok):
    if ok:
        check_page_type(media_type, head)
    else:
        with pytest.raises(NotAFeed):
            check_page_type(media_type, head)


def test_not_a_feed_at_all():
    with pytest.raises(NotAFeed) as exc:
        parse_feed(b"just some text, no markup", url=BASE, content_type="text/plain", max_entries=10)
    assert exc.value.error_class == "parse"


def test_entry_ref_without_link_has_no_page():
    class E(dict):
        pass
    assert entry_ref(E(title="t", summary="s"), BASE).page_url is None
