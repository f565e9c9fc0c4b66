"""Every hostile case, served both as a feed and as an article page, to one real poller cycle.

For each case the poller polls two feeds: the hostile feed, and a healthy control feed whose entries
are the hostile page and a control page. The cycle must end by itself, within the time limit and
under the memory limit, with exit code 0 (the process kept running to the end of its cycle and
the control article reached ``articles.raw``); the hostile feed's failure is recorded on its health
(``newsflow feeds status``), the hostile page never reaches ``articles.raw`` when it is harmful,
and no connection ever left loopback.
"""

from __future__ import annotations

import pytest

from tests.hostile.cases import CASES, HTML, STUB_HOSTS, Case
from tests.hostile.conftest import RESULTS, HostileResult
from tests.hostile.harness import (
    CASE_TIME_LIMIT_S, HOSTILE_OVERRIDES, POLLER_RSS_LIMIT_MIB, Cycle, poll_once, write_feeds,
)
from tests.support.feeds import rss
from tests.support.hostile import page_html

pytestmark = [pytest.mark.hostile, pytest.mark.integration, pytest.mark.timeout(300)]

CONTROL_TEXT = "The harbour council met on Tuesday and agreed to repair the old pier before the summer. " * 12


def page_outcome(cycle: Cycle, url: str, control_feed: str) -> str:
    if cycle.produced(url):
        return "delivered to articles.raw"
    dead = cycle.dead_for(url)
    if dead:
        return f"dead-lettered: {dead[0].get('nf-error-class')}"
    row = cycle.health.get(control_feed, {})
    if row.get("pending_pages"):
        return f"pending retry ({row['pending_pages']} page(s))"
    mentions = [k for k, v in row.items() if "page" in k and v and k not in ("pending_pages",)]
    if mentions:
        return "on the feed's health: " + ", ".join(f"{k}={row[k]}" for k in mentions)
    return "refused, not recorded"


@pytest.mark.parametrize("case", CASES, ids=[c.slug for c in CASES])
def test_hostile_case(case: Case, site, make_settings, tmp_path):
    feed_path, page_path = f"/h/{case.slug}/feed", f"/h/{case.slug}/page"
    case.feed(site, feed_path)
    case.page(site, page_path)
    site.add("/ok/page.html", page_html("Pier repairs agreed", CONTROL_TEXT), content_type=HTML)
    site.add("/ok/feed.xml", rss("Control", [
        {"link": site.url(page_path), "title": f"Hostile page: {case.name}", "guid": "hostile"},
        {"link": site.url("/ok/page.html"), "title": "Pier repairs agreed", "guid": "control"},
    ]), content_type="application/rss+xml")
    hostile_feed, control_feed = site.url(feed_path), site.url("/ok/feed.xml")
    settings = make_settings(feeds_file=write_feeds(tmp_path / "feeds.yaml", [hostile_feed, control_feed]),
                             **HOSTILE_OVERRIDES)

    cycle = poll_once(settings, tmp_path, hosts=STUB_HOSTS)

    feed_row = cycle.health.get(hostile_feed, {})
    feed_outcome = (f"error {feed_row.get('last_error_class')}" if feed_row.get("consecutive_errors")
                    else f"read, {feed_row.get('entries_last_poll')} entries")
    page = page_outcome(cycle, site.url(page_path), control_feed)
    RESULTS.append(HostileResult(case.name, "feed", feed_outcome, cycle.seconds, cycle.peak_rss_mib,
                                 POLLER_RSS_LIMIT_MIB))
    RESULTS.append(HostileResult(case.name, "page", page, cycle.seconds, cycle.peak_rss_mib, POLLER_RSS_LIMIT_MIB))
    context = f"{case.name}: feed {feed_row}\npage: {page}\n{cycle.log_tail}"

    # bounded, and still standing
    assert not cycle.timed_out, f"the poller cycle did not end within {CASE_TIME_LIMIT_S:.0f}s\n{context}"
    assert cycle.code == 0, f"the poller exited with {cycle.code}\n{context}"
    assert cycle.peak_rss_mib < POLLER_RSS_LIMIT_MIB, f"peak RSS {cycle.peak_rss_mib:.0f} MiB\n{context}"
    assert cycle.produced(site.url("/ok/page.html")), f"the control article did not get through\n{context}"
    assert not cycle.guard, f"connections outside loopback: {cycle.guard}\n{context}"
    # the feed: its failure recorded on its health, or read
    assert feed_row.get("polled"), f"the hostile feed was never polled\n{context}"
    assert feed_row.get("last_error_class") != "internal", f"a bug, not a feed problem\n{context}"
    failed = bool(feed_row.get("consecutive_errors"))
    if failed or not case.feed_may_read:
        if case.feed_errors:
            assert failed, f"the failure is not on the feed's health\n{context}"
            assert feed_row.get("last_error_class") in case.feed_errors, context
            assert feed_row.get("last_error"), context
        else:
            assert not failed, f"an odd but readable feed was refused\n{context}"
            assert feed_row.get("entries_last_poll"), f"no entries read\n{context}"
    assert len(feed_row.get("title") or "") < 10_000, f"entities expanded into the feed title\n{context}"
    # the page
    if case.page_refused:
        assert not cycle.produced(site.url(page_path)), f"a harmful page reached articles.raw\n{context}"
        assert page != "refused, not recorded", (
            f"the page failure is nowhere: not in the DLQ, not pending, not on the feed's health\n{context}")
    else:
        assert cycle.produced(site.url(page_path)), f"a readable page did not reach articles.raw\n{context}"
