"""One feed's job against FixtureSite (no Kafka): page fetches, robots.txt, charset, dead letters for
oversized pages (the feed poll itself: ``test_feed_poll.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest import state as S
from ingest import transitions as T
from ingest.limits import Deadline
from ingest.netguard import StubResolver
from ingest.parse import parse_feed
from newsflow.schema import RawArticle
from tests.ingest.conftest import local_settings
from tests.ingest.job_helpers import definition, job, raw_of, serve
from tests.support import hostile
from tests.support.feeds import rss


# --- pages --------------------------------------------------------------------------------------------------
def test_new_entries_become_raw_articles_with_final_url_headers_and_charset(site):
    site.add("/a", hostile.page_html("A", "caf\u00e9", charset_meta=None).encode("cp1252"),
             content_type="text/html; charset=windows-1252", headers={"Content-Language": "fr", "X-Secret": "no"})
    site.add("/b-old", status=301, headers={"Location": "/b"})
    site.add("/b", hostile.page_html("B", "b"))
    site.add("/feed.xml", rss("Site", [{"link": site.url("/a?utm_source=rss"), "title": "A", "guid": "a"},
                                      {"link": site.url("/b-old"), "title": "B", "guid": "b"}]),
             content_type="application/rss+xml")
    d = definition(site.url("/feed.xml"))
    result, st = job(local_settings(), d)
    assert result.outcome == "new"
    a, b = sorted(raw_of(result), key=lambda r: r.url)
    assert a.canonical_url == site.url("/a") and a.charset == "cp1252" and a.entry.guid == "a"
    assert {k: v for k, v in a.headers.items() if k != "date"} == {
        "content-type": "text/html; charset=windows-1252", "content-language": "fr"}  # no X-Secret
    assert b.final_url == site.url("/b") and b.url == site.url("/b-old")
    assert a.first_seen_at == a.fetched_at.replace(microsecond=0) and a.feed_title == "Site"
    assert len(st.seen) == 2 and not st.pending


def test_seen_entries_are_not_fetched_again(site):
    d = serve(site, {"/a": hostile.page_html("A", "a")})
    _, st = job(local_settings(), d)
    site.routes["/feed.xml"].body += b" "  # the body changes, the entries do not
    result, _ = job(local_settings(), d, st)
    assert result.outcome == "unchanged" and result.pages == []
    assert site.hits("/a") == 1


@pytest.mark.parametrize("robots, fetched, result", [
    ("User-agent: *\nDisallow: /private/\n", False, "skipped"),
    ("User-agent: Newsflow\nDisallow: /\n", False, "skipped"),
    ("User-agent: OtherBot\nDisallow: /\n", True, "delivered"),
    (None, True, "delivered"),  # robots.txt 404: everything allowed
])
def test_robots_txt_is_honoured_for_pages(site, robots, fetched, result):
    if robots is not None:
        site.add("/robots.txt", robots, content_type="text/plain")
    d = serve(site, {"/private/a": hostile.page_html("A", "a")})
    res, st = job(local_settings(respect_robots=True), d)
    assert [o.result for o, _ in res.pages] == [result]
    assert (site.hits("/private/a") == 1) is fetched
    assert not st.pending


def test_robots_txt_unreachable_keeps_the_entry_pending_and_robots_can_be_switched_off(site):
    site.add("/robots.txt", handler=hostile.status(503))
    d = serve(site, {"/private/a": hostile.page_html("A", "a")})
    res, st = job(local_settings(respect_robots=True), d)
    assert [o.reason for o, _ in res.pages] == ["robots_unreachable"] and len(st.pending) == 1
    res, st = job(local_settings(respect_robots=False), d)
    assert [o.result for o, _ in res.pages] == ["delivered"] and site.hits("/private/a") == 1


def test_a_page_over_the_message_limit_is_dead_lettered_with_a_reason(site):
    d = serve(site, {"/big": hostile.page_html("Big", "x" * 6000), "/small": hostile.page_html("S", "s")})
    res, st = job(local_settings(max_message_bytes=4096), d)
    dead = [(o, rec) for o, rec in res.pages if o.result == "dead"]
    assert len(dead) == 1
    o, rec = dead[0]
    headers = dict(rec.headers)
    assert rec.topic == local_settings().topic_dlq
    assert headers["nf-error-class"] == b"page_too_large" and headers["nf-stage"] == b"poller"
    assert b"max_message_bytes" in headers["nf-error"]
    meta = RawArticle.from_bytes(rec.value)
    assert meta.url == site.url("/big") and meta.body_b64 == ""
    assert [r.url for r in raw_of(res)] == [site.url("/small")]
    assert not st.pending  # decided: not fetched again


def test_a_page_over_max_page_bytes_is_dead_lettered_without_reading_it_whole(site):
    site.add("/bomb", handler=hostile.gzip_bomb(32 * 1024 * 1024, content_type="text/html"))
    site.add("/feed.xml", rss("S", [{"link": site.url("/bomb"), "title": "b", "guid": "b"}]),
             content_type="application/rss+xml")
    res, _ = job(local_settings(max_page_bytes=1024 * 1024), definition(site.url("/feed.xml")))
    [(o, rec)] = res.pages
    assert o.result == "dead" and dict(rec.headers)["nf-error-class"] == b"page_too_large"


def test_a_page_that_keeps_failing_is_retried_then_dead_lettered(site):
    d = serve(site, {"/flaky": b""})
    site.add("/flaky", handler=hostile.status(500))
    settings = local_settings(max_attempts=2)
    res, st = job(settings, d)
    assert [o.result for o, _ in res.pages] == ["retry"] and st.pending[0].attempts == 1
    res, st = job(settings, d, st.model_copy(update={"next_check_at": None}))
    [(o, rec)] = res.pages
    assert o.result == "dead" and dict(rec.headers)["nf-error-class"] == b"page_fetch_failed"
    assert not st.pending


@pytest.mark.parametrize("content_type, body", [
    ("application/pdf", b"%PDF-1.4"), ("image/jpeg", b"\xff\xd8\xff"),
])
def test_pages_that_are_not_html_are_dead_lettered(site, content_type, body):
    d = serve(site, {"/doc": body}, content_type=content_type)
    res, st = job(local_settings(), d)
    assert [(o.result, o.reason) for o, _ in res.pages] == [("dead", "bad_content_type")]
    assert dict(res.pages[0][1].headers)["nf-error-class"] == b"page_bad_content_type"
    assert st.last_page_error.startswith("bad_content_type: ")
    assert not st.pending


def test_the_deadline_defers_work_instead_of_starting_it(site):
    d = serve(site, {"/a": hostile.page_html("A", "a")})
    expired = Deadline(0.0)
    res, st = job(local_settings(), d, deadline=expired)
    assert not res.polled and res.pages == [] and site.hits("/feed.xml") == 0
    parsed = parse_feed(site.routes["/feed.xml"].body, url=d.url, content_type=None, max_entries=5)
    st0, _ = T.on_feed(S.new_state(d), parsed, body_hash="h", headers={}, status=200, now=datetime.now(UTC),
                       policy=S.Policy.from_settings(local_settings()), rand=0.0)
    res, st = job(local_settings(), d, st0, deadline=expired)
    assert res.deferred == 1 and site.hits("/a") == 0 and len(st.pending) == 1


def test_a_page_with_a_wrong_charset_declaration_gets_the_charset_its_bytes_have(site):
    text = "Die Bürgerinnen und Bürger von Zürich stimmten über die Brücke ab. Öffentlicher Verkehr, Straßen. "
    site.add("/p", handler=hostile.misdeclared_charset("<html><body><p>" + text * 30 + "</p></body></html>",
                                                        actual="cp1252", declared="utf-8"))
    site.add("/feed.xml", rss("S", [{"link": site.url("/p"), "guid": "p"}]), content_type="application/rss+xml")
    res, _ = job(local_settings(), definition(site.url("/feed.xml")))
    [raw] = raw_of(res)
    assert raw.charset not in ("utf-8", None)
    assert "Bürger" in raw.body.decode(raw.charset)


@pytest.mark.parametrize("install, reason", [
    (lambda site: hostile.install_redirect_loop(site, "/p", "/p2"), "redirect_loop"),
    (lambda site: site.add("/p", handler=hostile.redirect("http://intranet.example/x", 302)), "blocked"),
    (lambda site: site.add("/p", handler=hostile.status(404)), "http_404"),
])
def test_a_page_refused_for_good_is_dead_lettered_and_shown_on_the_feed(site, install, reason):
    install(site)
    site.add("/feed.xml", rss("S", [{"link": site.url("/p"), "guid": "p"}]), content_type="application/rss+xml")
    res, st = job(local_settings(), definition(site.url("/feed.xml")),
                  resolver=StubResolver({"intranet.example": "10.0.0.1", "127.0.0.1": "127.0.0.1"}))
    [(o, rec)] = res.pages
    assert (o.result, o.reason) == ("dead", reason)
    assert dict(rec.headers)["nf-error-class"] == f"page_{reason}".encode()
    assert st.last_page_error.startswith(f"{reason}: {site.url('/p')}") and not st.pending
    assert st.health == "active"  # the feed itself is fine
