"""One feed's job against FixtureSite (no Kafka): feed poll outcomes per error class, page fetches,
robots.txt, charset, dead letters for oversized pages, lying validators, redirects."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from ingest import state as S
from ingest import transitions as T
from ingest.fetch import Fetcher
from ingest.jobs import FeedJobs
from ingest.limits import Deadline
from ingest.netguard import GuardedBackend, StubResolver
from ingest.parse import parse_feed
from ingest.urls import feed_id
from newsflow.schema import RawArticle
from tests.ingest.conftest import local_settings
from tests.support import hostile
from tests.support.feeds import rss


def definition(url: str) -> S.FeedDefinition:
    return S.FeedDefinition(id=feed_id(url), url=url, added_url=url, added_at=datetime.now(UTC))


def job(settings, d: S.FeedDefinition, st: S.FeedState | None = None, *, resolver=None, deadline=None):
    """Run one job and record its page outcomes as the poller would after a successful flush."""
    async def main():
        backend = GuardedBackend(resolver, allow_loopback=settings.allow_private_addresses)
        fetcher = Fetcher(settings, backend=backend)
        jobs = FeedJobs(settings, fetcher, parse_executor=None, clock=lambda: datetime.now(UTC), rand=random.random)
        try:
            return await jobs.run(d, st or S.new_state(d), poll=True, deadline=deadline or Deadline.after(60))
        finally:
            await fetcher.aclose()
    result = asyncio.run(main())
    delivered = {o.ref.key for o, rec in result.pages if rec is not None}
    settled = T.record_page_outcomes(result.state, [o for o, _ in result.pages], delivered_ok=delivered,
                       now=datetime.now(UTC), policy=S.Policy.from_settings(settings))
    return result, settled


def serve(site, pages: dict[str, str | bytes], feed_path="/feed.xml", **page_kw) -> S.FeedDefinition:
    for path, body in pages.items():
        site.add(path, body, **page_kw)
    items = [{"link": site.url(p), "title": p, "guid": p} for p in pages]
    site.add(feed_path, rss("Site", items), content_type="application/rss+xml")
    return definition(site.url(feed_path))


def raw_of(result) -> list[RawArticle]:
    return [RawArticle.from_bytes(rec.value) for _o, rec in result.pages if rec and rec.topic.endswith("raw")]


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
