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
    """Where the hostile page ended: articles.raw, the DLQ (with its reason), still pending a retry,
    and what the health of the feed that listed it says."""
    row = cycle.health.get(control_feed, {})
    parts = []
    if cycle.produced(url):
        parts.append("delivered to articles.raw")
    dead = cycle.dead_for(url)
    if dead:
        parts.append(f"dead-lettered: {dead[0].get('nf-error-class')}")
    if row.get("pending_pages"):
        parts.append(f"pending retry ({row['pending_pages']})")
    if row.get("last_page_error"):
        parts.append(f"on the feed's health: {str(row['last_page_error']).split(':')[0]}")
    return "; ".join(parts) or "refused, not recorded"


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
        control_row = cycle.health.get(control_feed, {})
        assert control_row.get("last_page_error") or control_row.get("pending_pages"), (
            f"the page failure is not on the health of the feed that listed it\n{context}")
    else:
        assert cycle.produced(site.url(page_path)), f"a readable page did not reach articles.raw\n{context}"


def test_all_hostile_feeds_at_once_in_a_long_running_poller(site, make_settings, tmp_path):
    """Every hostile feed and page together, in one continuously running poller that polls them
    again and again (1-5 s intervals) for 30 s: it is still running at the end, under the memory
    limit with all of them in flight at once, each failing feed's errors keep counting on its health
    (polled again, never dropped), and the control article got through."""
    import time

    from tests.chaos.procs import StageProcess, guard_violations
    from ingest.status import status_rows
    from ingest.store import load_catalog

    urls, items = [], []
    for case in CASES:
        case.feed(site, f"/all/{case.slug}/feed")
        case.page(site, f"/all/{case.slug}/page")
        urls.append(site.url(f"/all/{case.slug}/feed"))
        items.append({"link": site.url(f"/all/{case.slug}/page"), "title": case.name, "guid": case.slug})
    site.add("/ok/page.html", page_html("Pier repairs agreed", CONTROL_TEXT), content_type=HTML)
    items.append({"link": site.url("/ok/page.html"), "title": "Pier repairs agreed", "guid": "control"})
    site.add("/ok/feed.xml", rss("Control", items), content_type="application/rss+xml")
    urls.append(site.url("/ok/feed.xml"))
    settings = make_settings(feeds_file=write_feeds(tmp_path / "feeds.yaml", urls), **(HOSTILE_OVERRIDES | dict(
        poll_interval_s=2.0, poll_min_interval_s=1.0, poll_max_interval_s=5.0, poll_batch_s=10.0)))

    proc = StageProcess("poller", ["poll"], settings, tmp_path, hosts=STUB_HOSTS).start()
    time.sleep(30)
    alive = proc.alive()
    code = proc.stop(timeout_s=60)
    rows = {r["url"]: r for r in status_rows(*load_catalog(settings))}
    from tests.chaos import audit as au
    from newsflow.schema import article_id

    raw = {(r.key or b"").decode() for r in au.read_topic(settings, settings.topic_raw)}
    peak = proc.peak_rss / 2**20
    RESULTS.append(HostileResult("all cases at once, 30 s", "feed", f"alive {alive}, exit {code}", 30.0, peak,
                                 POLLER_RSS_LIMIT_MIB))
    context = "\n".join(f"{r['url']}: {r['state']} errors={r['consecutive_errors']} {r['last_error_class']}"
                        for r in rows.values()) + "\n" + proc.tail(20)
    assert alive, f"the poller died\n{context}"
    assert code == 0, f"exit code {code} after SIGTERM\n{context}"
    assert peak < POLLER_RSS_LIMIT_MIB, f"peak RSS {peak:.0f} MiB\n{context}"
    assert not guard_violations(proc.guard_log), context
    assert article_id(site.url("/ok/page.html")) in raw, f"the control article did not get through\n{context}"
    for case in CASES:
        row = rows[site.url(f"/all/{case.slug}/feed")]
        assert row["last_error_class"] != "internal", context
        if case.feed_errors and not case.feed_may_read:
            assert row["consecutive_errors"] >= 2, f"{case.name}: not polled again after failing\n{context}"
            assert row["state"] == "backing-off", context
