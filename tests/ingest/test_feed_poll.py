"""One feed poll against FixtureSite (no Kafka), through the feed job (``ingest.feed_poll``): outcomes
per error class, conditional GET, lying validators, redirects, Retry-After, hostile feeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest import state as S
from ingest import transitions as T
from ingest.netguard import StubResolver
from tests.ingest.conftest import local_settings
from tests.ingest.job_helpers import definition, job, raw_of
from tests.support import hostile
from tests.support.feeds import rss


# --- feed polls ----------------------------------------------------------------------------------------------------
def test_conditional_get_sends_validators_and_304_fetches_nothing(site):
    d = definition(site.url("/feed.xml"))
    site.add("/a", hostile.page_html("A", "a"))
    cond = hostile.Conditional(rss("S", [{"link": site.url("/a"), "guid": "a", "title": "a"}]), etag='"e1"',
                               last_modified="Sat, 01 Mar 2025 10:00:00 GMT")
    site.add("/feed.xml", handler=cond)
    _, st = job(local_settings(), d)
    res, st = job(local_settings(), d, st)
    assert res.outcome == "not_modified" and res.pages == []
    assert cond.requests[-1] == {"if_none_match": '"e1"', "if_modified_since": "Sat, 01 Mar 2025 10:00:00 GMT"}
    assert st.etag == '"e1"' and st.not_modified_streak == 1


def test_a_server_whose_etag_never_changes_gets_its_validators_ignored(site):
    d = definition(site.url("/feed.xml"))
    for p in ("/a", "/b"):
        site.add(p, hostile.page_html(p, p))
    liar = hostile.Lying(rss("S", [{"link": site.url("/a"), "guid": "a", "title": "a"}]), mode="static-etag",
                         etag='"forever"')
    site.add("/feed.xml", handler=liar)
    _, st = job(local_settings(), d)
    liar.body = rss("S", [{"link": site.url("/b"), "guid": "b", "title": "b"},
                         {"link": site.url("/a"), "guid": "a", "title": "a"}])
    res, st = job(local_settings(), d, st)  # 304: the change is hidden from a conditional GET...
    assert res.outcome == "not_modified"
    for _ in range(T.VERIFY_EVERY):  # ... until the periodic unconditional GET
        res, st = job(local_settings(), d, st)
    assert res.outcome == "new" and [r.url for r in raw_of(res)] == [site.url("/b")]
    assert st.validators_ignored and "ETag" in st.validators_note
    job(local_settings(), d, st)
    assert liar.requests[-1] == {"if_none_match": None, "if_modified_since": None}


def test_a_server_answering_304_about_another_etag_is_caught_at_once(site):
    d = definition(site.url("/feed.xml"))
    site.add("/a", hostile.page_html("A", "a"))
    liar = hostile.Lying(rss("S", [{"link": site.url("/a"), "guid": "a"}]), mode="always-304", etag='"v1"')
    site.add("/feed.xml", handler=liar)
    _, st = job(local_settings(), d)
    liar.etag = '"v2"'
    _, st = job(local_settings(), d, st)
    assert st.validators_ignored and st.is_due(datetime.now(UTC))


@pytest.mark.parametrize("handler, error_class, state", [
    (hostile.status(404), "not_found", "backing-off"),
    (hostile.status(410), "gone", "retired"),
    (hostile.retry_after(429, "3600"), "rate_limited", "backing-off"),
    (hostile.retry_after(503, "Wed, 21 Oct 2099 07:28:00 GMT"), "unavailable", "backing-off"),
    (hostile.status(500), "server_error", "backing-off"),
    (hostile.status(401), "client_error", "backing-off"),
    (hostile.wrong_content_type(b"\x89PNG....", "image/png"), "bad_content_type", "backing-off"),
    (hostile.wrong_content_type(b"<!doctype html><html><body>home</body></html>", "text/html"), "bad_content_type",
     "backing-off"),
    (hostile.gzip_bomb(32 * 1024 * 1024), "too_large", "backing-off"),
    (hostile.big_feed(50 * 1024 * 1024), "too_large", "backing-off"),
    (hostile.endless_body(), "too_large", "backing-off"),
    (hostile.huge_headers(), "protocol", "backing-off"),
    (hostile.stall(3.0), "timeout", "backing-off"),
    (hostile.status(200, b"no feed here", {"Content-Type": "text/plain"}), "parse", "backing-off"),
])
def test_feed_error_classes(site, handler, error_class, state):
    site.add("/feed.xml", handler=handler)
    d = definition(site.url("/feed.xml"))
    res, st = job(local_settings(max_feed_bytes=1024 * 1024, read_timeout_s=0.5), d)  # 50 MiB > 1 MiB
    assert (res.outcome, st.last_error_class, st.health) == (error_class, error_class, state)
    assert st.consecutive_errors == 1 and st.last_error
    if state == "backing-off":
        assert st.next_check_at is not None
    if error_class in ("rate_limited", "unavailable"):
        assert st.next_check_reason in ("retry-after", "max")


def test_dns_and_ssrf_failures_are_feed_errors(site):
    d = definition("http://nowhere.example/feed.xml")
    res, st = job(local_settings(), d, resolver=StubResolver({}))
    assert (res.outcome, st.health) == ("dns", "backing-off")
    d = definition("http://intranet.example/feed.xml")
    res, st = job(local_settings(), d, resolver=StubResolver({"intranet.example": "192.168.1.10"}))
    assert (res.outcome, st.health) == ("blocked", "backing-off")


def test_a_bozo_feed_keeps_the_entries_it_could_read(site):
    site.add("/a", hostile.page_html("A", "a"))
    site.add("/feed.xml", hostile.invalid_utf8_feed(base=site.url("/p")).replace(
        site.url("/p").encode() + b"/1", site.url("/a").encode()), content_type="application/rss+xml; charset=utf-8")
    site.add("/p/2", hostile.page_html("2", "2"))
    res, st = job(local_settings(), definition(site.url("/feed.xml")))
    assert res.outcome == "new" and len(raw_of(res)) == 2
    assert st.last_error_class == "parse" and st.consecutive_errors == 0


def test_permanent_redirects_move_the_feed_after_three_polls_temporary_ones_never(site):
    site.add("/a", hostile.page_html("A", "a"))
    site.add("/new.xml", rss("S", [{"link": site.url("/a"), "guid": "a"}]), content_type="application/rss+xml")
    hostile.install_redirect_chain(site, "/old.xml", [301, 308], "/new.xml")
    hostile.install_redirect_chain(site, "/tmp.xml", [302], "/new.xml")
    for path, moves in (("/old.xml", [None, None, site.url("/new.xml")]), ("/tmp.xml", [None] * 4)):
        d = definition(site.url(path))
        st = S.new_state(d)
        got = []
        for _ in moves:
            res, st = job(local_settings(), d, st)
            got.append(res.moved_to)
        assert got == moves


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_as_an_http_date_sets_the_next_check(site, code):
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    site.add("/feed.xml", handler=hostile.retry_after(code, hostile.http_date(when)))
    res, st = job(local_settings(), definition(site.url("/feed.xml")))
    assert (st.next_check_reason, st.next_check_at) == ("retry-after", when)


def test_a_slow_drip_feed_times_out_on_the_total_timeout(site):
    site.add("/feed.xml", handler=hostile.slow_drip(rss("S", []), delay_s=0.2))
    res, st = job(local_settings(total_timeout_s=1.0), definition(site.url("/feed.xml")))
    assert (res.outcome, st.health) == ("timeout", "backing-off") and "total" in st.last_error


def test_a_100000_entry_feed_yields_at_most_max_entries(site):
    site.add("/feed.xml", hostile.many_entries_feed(100_000, base=site.url("/a")), content_type="application/rss+xml")
    res, st = job(local_settings(max_entries_per_feed=20), definition(site.url("/feed.xml")))
    assert res.outcome == "new" and len(res.pages) == 20 and st.entries_last == 20
    assert all(o.reason == "http_404" for o, _ in res.pages)  # the pages do not exist: skipped, not retried


def test_an_entity_expansion_feed_is_harmless(site):
    site.add("/feed.xml", hostile.entity_expansion_feed(), content_type="application/rss+xml")
    site.add("/only", hostile.page_html("only", "x"))
    res, st = job(local_settings(), definition(site.url("/feed.xml")))
    assert res.outcome in ("new", "parse", "unchanged")
    assert len(st.title or "") < 10_000
