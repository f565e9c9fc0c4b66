"""SSRF guard: refused addresses are checked on every hop's resolved IP, before any connection."""

from __future__ import annotations

import pytest

from ingest.fetch import FetchError
from ingest.netguard import StubResolver, address_problem
from tests.ingest.conftest import local_settings, run
from tests.support import hostile

ADDRESSES = [
    ("93.184.216.34", False, None),
    ("2606:2800:220:1:248:1893:25c8:1946", False, None),
    ("127.0.0.1", False, "loopback"),
    ("127.0.0.1", True, None),
    ("::1", False, "loopback"),
    ("::1", True, None),
    ("10.0.0.1", True, "private"),
    ("172.16.5.4", True, "private"),
    ("192.168.1.1", True, "private"),
    ("169.254.169.254", True, "link-local"),  # cloud metadata
    ("fe80::1", True, "link-local"),
    ("fd00::1", True, "private"),
    ("224.0.0.1", True, "multicast"),
    ("ff02::1", True, "multicast"),
    ("0.0.0.0", True, "unspecified"),
    ("::", True, "unspecified"),
    ("240.0.0.1", True, "reserved"),
    ("100.64.0.1", True, "not globally routable"),
    ("::ffff:10.0.0.1", True, "private (embedded in ::ffff:a00:1)"),
    ("::ffff:127.0.0.1", False, "loopback (embedded in ::ffff:7f00:1)"),
    ("2002:a00:1::", True, "private (embedded in 2002:a00:1::)"),  # 6to4 of 10.0.0.1
    ("not-an-ip", True, "not an IP address"),
]


@pytest.mark.parametrize("address, allow_loopback, problem", ADDRESSES)
def test_address_policy(address, allow_loopback, problem):
    assert address_problem(address, allow_loopback=allow_loopback) == problem


def test_private_address_is_refused_before_any_connect(recorder, _loopback_only):
    stub = StubResolver({"internal.example": "10.0.0.1"})
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get("http://internal.example/feed.xml", max_bytes=1024), local_settings(),
            resolver=stub, recorder=recorder)
    assert exc.value.error_class == "blocked"
    assert "10.0.0.1" in exc.value.message
    assert stub.lookups == ["internal.example"]
    assert recorder.connects == []
    assert _loopback_only.violations == []


def test_a_redirect_to_a_private_address_is_refused_on_its_hop(site, recorder, _loopback_only):
    site.add("/feed.xml", handler=hostile.redirect("http://internal.example:8080/admin", 302))
    stub = StubResolver({"internal.example": "10.0.0.1"})
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get(site.url("/feed.xml"), max_bytes=1024), local_settings(), resolver=stub, recorder=recorder)
    assert exc.value.error_class == "blocked"
    assert [h.status for h in exc.value.hops] == [302]
    assert recorder.connects == [("127.0.0.1", site.server.server_address[1])]  # the first hop only
    assert _loopback_only.violations == []


@pytest.mark.parametrize("answer", [["93.184.216.34", "10.0.0.1"], ["::ffff:192.168.0.1"], ["169.254.169.254"]])
def test_any_refused_address_in_the_answer_refuses_the_host(recorder, answer):
    stub = StubResolver({"mixed.example": answer})
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get("http://mixed.example/", max_bytes=1024), local_settings(), resolver=stub,
            recorder=recorder)
    assert exc.value.error_class == "blocked"
    assert recorder.connects == []


def test_loopback_is_refused_unless_allowed(site, recorder):
    site.add("/feed.xml", "<rss/>")
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get(site.url("/feed.xml"), max_bytes=1024), local_settings(allow_private_addresses=False),
            recorder=recorder)
    assert exc.value.error_class == "blocked"
    assert recorder.connects == []


def test_connects_to_the_vetted_address_and_keeps_the_host_name(site, recorder):
    site.add("/feed.xml", "<rss/>")
    port = site.server.server_address[1]
    stub = StubResolver({"news.example": "127.0.0.1"})
    resp = run(lambda f: f.get(f"http://news.example:{port}/feed.xml", max_bytes=1024), local_settings(),
               resolver=stub, recorder=recorder)
    assert resp.status == 200
    assert recorder.connects == [("127.0.0.1", port)]
    assert site.requests[-1][2]["Host"] == f"news.example:{port}"


def test_unresolvable_host_is_a_dns_error(recorder):
    with pytest.raises(FetchError) as exc:
        run(lambda f: f.get("http://nowhere.example/", max_bytes=1024), local_settings(),
            resolver=StubResolver({}), recorder=recorder)
    assert exc.value.error_class == "dns"
    assert recorder.connects == []
