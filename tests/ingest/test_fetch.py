"""The fetcher against hostile servers on 127.0.0.1: caps after decompression, timeouts, redirects,
User-Agent, per-host limits."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time

import pytest

from ingest.fetch import FetchError
from ingest.limits import HostLimiter
from ingest.netguard import StubResolver
from tests.ingest.conftest import local_settings, run
from tests.support import hostile

MiB = 1024 * 1024


def get(site, path, settings=None, max_bytes=MiB, **kw):
    return run(lambda f: f.get(site.url(path), max_bytes=max_bytes, **kw), settings or local_settings())


def error_class(site, path, settings=None, max_bytes=MiB) -> FetchError:
    with pytest.raises(FetchError) as exc:
        get(site, path, settings, max_bytes)
    return exc.value


def test_sends_the_configured_user_agent_and_accepts_only_what_it_decodes(site):
    site.add("/f", "<rss/>")
    get(site, "/f", local_settings(user_agent="NewsflowTest/9 (+https://ops.example/bot)"))
    headers = site.requests[-1][2]
    assert headers["User-Agent"] == "NewsflowTest/9 (+https://ops.example/bot)"
    assert headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("handler", [
    hostile.deflate_body(b"<rss>ok</rss>"), hostile.deflate_body(b"<rss>ok</rss>", raw=True),
])
def test_deflate_both_ways(site, handler):
    site.add("/f", handler=handler)
    assert get(site, "/f").body == b"<rss>ok</rss>"


def test_gzip_bomb_is_too_large_after_decompression(site):
    site.add("/bomb", handler=hostile.gzip_bomb(64 * MiB))
    assert error_class(site, "/bomb").error_class == "too_large"


def test_gzip_under_the_cap_on_the_wire_but_over_it_decoded(site):
    body = b"<rss>" + b"a" * (2 * MiB) + b"</rss>"
    site.add("/f", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert error_class(site, "/f").error_class == "too_large"
    assert get(site, "/f", max_bytes=3 * MiB).body == body


def test_endless_body_is_cut_at_the_cap(site):
    site.add("/endless", handler=hostile.endless_body())
    assert error_class(site, "/endless").error_class == "too_large"


def test_50_mib_feed_is_refused(site):
    site.add("/big", handler=hostile.big_feed(50 * MiB))
    err = error_class(site, "/big", max_bytes=10 * MiB)
    assert err.error_class == "too_large"


def test_slow_drip_hits_the_total_timeout(site):
    site.add("/drip", handler=hostile.slow_drip(b"<rss>" + b" " * 200 + b"</rss>", delay_s=0.2))
    err = error_class(site, "/drip", local_settings(total_timeout_s=1.0, read_timeout_s=3.0))
    assert err.error_class == "timeout"
    assert "total" in err.message


def test_a_silent_server_hits_the_read_timeout(site):
    site.add("/stall", handler=hostile.stall(3.0))
    err = error_class(site, "/stall", local_settings(read_timeout_s=0.5, total_timeout_s=10.0))
    assert err.error_class == "timeout"
    assert "ReadTimeout" in err.message


def test_huge_headers_are_a_protocol_error(site):
    site.add("/hh", handler=hostile.huge_headers(1 * MiB))
    assert error_class(site, "/hh").error_class == "protocol"


def test_redirect_chain_is_followed_and_recorded(site):
    site.add("/feed.xml", "<rss/>")
    hostile.install_redirect_chain(site, "/old", [301, 308], "/feed.xml")
    resp = get(site, "/old")
    assert resp.final_url == site.url("/feed.xml")
    assert [h.status for h in resp.hops] == [301, 308]
    assert resp.redirected_permanently
    hostile.install_redirect_chain(site, "/tmp", [301, 302], "/feed.xml")
    assert not get(site, "/tmp").redirected_permanently
    hostile.install_redirect_chain(site, "/t307", [307], "/feed.xml")
    assert not get(site, "/t307").redirected_permanently


def test_redirect_loop_and_redirect_cap(site):
    hostile.install_redirect_loop(site)
    assert error_class(site, "/loop-a").error_class == "redirect_loop"
    site.add("/feed.xml", "<rss/>")
    hostile.install_redirect_chain(site, "/long", [301] * 4, "/feed.xml")
    assert error_class(site, "/long", local_settings(max_redirects=3)).error_class == "too_many_redirects"
    assert get(site, "/long", local_settings(max_redirects=4)).status == 200


def test_redirect_without_location_is_a_protocol_error(site):
    site.add("/r", status=301)
    assert error_class(site, "/r").error_class == "protocol"


def test_non_2xx_answers_are_returned_without_reading_their_body(site):
    site.add("/gone", handler=hostile.status(410, b"x" * (2 * MiB)))
    resp = get(site, "/gone")
    assert (resp.status, resp.body, resp.is_gone) == (410, b"", True)


def test_connection_refused_and_tls_failures_are_classified(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get(f"http://127.0.0.1:{port}/", max_bytes=MiB), local_settings())
    assert exc.value.error_class == "connect"
    site.add("/f", "<rss/>")
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get(site.url("/f").replace("http://", "https://"), max_bytes=MiB), local_settings())
    assert exc.value.error_class == "tls"


def test_non_http_schemes_are_not_fetched(site):
    site.add("/r", handler=hostile.redirect("file:///etc/passwd", 302))
    assert error_class(site, "/r").error_class == "bad_url"


class Concurrency:
    """A handler that measures how many requests it serves at once."""

    def __init__(self, hold_s: float = 0.3):
        self.hold_s = hold_s
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, h):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.hold_s)
        with self.lock:
            self.now -= 1
        hostile.status(200, b"<rss/>")(h)


def test_per_host_concurrency_is_shared_by_every_request_to_the_host(site):
    probe = Concurrency()
    site.add("/feed", handler=probe)
    site.add("/page", handler=probe)
    port = site.server.server_address[1]
    settings = local_settings(host_concurrency=2, host_rate_per_s=1000.0)

    async def many(f):
        urls = [site.url("/feed"), site.url("/page")] * 4
        await asyncio.gather(*(f.get(u, max_bytes=MiB) for u in urls))
    run(many, settings)
    assert probe.peak == 2

    probe.peak = 0
    hosts = {f"h{i}.example": "127.0.0.1" for i in range(4)}

    async def spread(f):
        await asyncio.gather(*(f.get(f"http://{h}:{port}/feed", max_bytes=MiB) for h in hosts for _ in range(2)))
    run(spread, settings, resolver=StubResolver(hosts))
    assert probe.peak > 2  # different hosts do not wait for each other


def test_host_rate_spaces_request_starts(monkeypatch):
    clock = [100.0]
    slept: list[float] = []

    async def fake_sleep(seconds):
        slept.append(round(seconds, 6))
        clock[0] += seconds

    monkeypatch.setattr("ingest.limits.asyncio.sleep", fake_sleep)
    limiter = HostLimiter(concurrency=10, rate_per_s=2.0, total=10, clock=lambda: clock[0])

    async def main():
        for host in ("a.example", "a.example", "a.example", "b.example"):
            async with limiter.slot(host):
                pass
        limiter.set_crawl_delay("c.example", 5.0)
        for _ in range(2):
            async with limiter.slot("c.example"):
                pass
    asyncio.run(main())
    # a: 0, then 0.5 s spacing (the clock advanced by the sleeps); b: its own schedule; c: Crawl-delay 5 s
    assert slept == [0.5, 0.5, 5.0]
