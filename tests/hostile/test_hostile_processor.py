"""Hostile pages that the poller rightly lets through, and the processor must survive.

The poller fetches them from the fixture site (they are valid HTTP, under the page cap), then a real
processor subprocess runs over ``articles.raw`` until idle. Every record must be accounted for (in
``articles.enriched`` or in the DLQ with a reason), the pathological page must cost one extraction
timeout and one dead letter, the control article must come through, and the stage must stay within
its time and memory limits and exit cleanly.
"""

from __future__ import annotations

import time

import pytest

from newsflow.schema import Article
from tests.chaos import audit as au
from tests.chaos.procs import StageProcess, guard_violations
from tests.hostile.cases import (
    HTML, LATIN1_PAGE, UTF8_AS_LATIN1_PAGE, entity_expansion_page, pathological_table_page,
)
from tests.hostile.conftest import RESULTS, HostileResult
from tests.hostile.harness import (
    CASE_TIME_LIMIT_S, HOSTILE_OVERRIDES, PROCESSOR_RSS_LIMIT_MIB, poll_once, write_feeds,
)
from tests.hostile.test_hostile_poller import CONTROL_TEXT
from tests.support.feeds import rss
from tests.support.hostile import page_html

pytestmark = [pytest.mark.hostile, pytest.mark.integration, pytest.mark.timeout(300)]

EXTRACT_TIMEOUT_S = 5.0

PAGES = {
    # name: (body, content type, must end in the DLQ with one of these reasons (None: may be enriched))
    "pathologically slow extraction": (pathological_table_page(), HTML, {"extract_timeout"}),
    "XML entity expansion": (entity_expansion_page(), "application/xhtml+xml", None),
    "invalid UTF-8": (LATIN1_PAGE, HTML, None),
    "mis-declared charset": (UTF8_AS_LATIN1_PAGE, "text/html; charset=iso-8859-1", None),
    "deep nesting": (b"<html><body>" + b"<div>" * 20000 + b"deep words " * 100 + b"</div>" * 20000
                     + b"</body></html>", HTML, None),
    "control": (page_html("Pier repairs agreed", CONTROL_TEXT).encode(), HTML, None),
}


def test_hostile_pages_through_the_processor(site, make_settings, tmp_path):
    items = []
    for i, (name, (data, ctype, _)) in enumerate(PAGES.items()):
        site.add(f"/p/{i}.html", data, content_type=ctype)
        items.append({"link": site.url(f"/p/{i}.html"), "title": name, "guid": f"p{i}"})
    site.add("/p/feed.xml", rss("Hostile pages", items), content_type="application/rss+xml")
    settings = make_settings(feeds_file=write_feeds(tmp_path / "feeds.yaml", [site.url("/p/feed.xml")]),
                             extract_timeout_s=EXTRACT_TIMEOUT_S, extract_workers=2, **HOSTILE_OVERRIDES)
    cycle = poll_once(settings, tmp_path)
    assert cycle.code == 0 and len(cycle.raw_ids) == len(PAGES), f"poller: {cycle.code}\n{cycle.log_tail}"

    proc = StageProcess("processor", ["process", "--idle-exit", "8"], settings, tmp_path)
    started = time.monotonic()
    proc.start()
    code, timed_out = proc.wait_exit(CASE_TIME_LIMIT_S)
    seconds = time.monotonic() - started

    by_url = {item["link"]: item["title"] for item in items}
    enriched = {}
    for r in au.read_topic(settings, settings.topic_enriched):
        a = Article.from_bytes(r.value)
        enriched[by_url[a.url]] = a
    dead = {}
    for r in au.read_topic(settings, settings.topic_dlq):
        h = au.headers(r)
        if h.get("nf-stage") == "processor":
            dead[r.key] = h
    from newsflow.schema import RawArticle

    raw_names = {}
    for r in au.read_topic(settings, settings.topic_raw):
        raw_names[r.key] = by_url[RawArticle.from_bytes(r.value).url]
    dead_by_name = {raw_names[k]: h for k, h in dead.items() if k in raw_names}

    context = f"enriched={sorted(enriched)} dead={ {k: v.get('nf-error-class') for k, v in dead_by_name.items()} }" \
              f"\n{proc.tail(30)}"
    for name, (_data, _ctype, reasons) in PAGES.items():
        if name in enriched:
            a = enriched[name]
            outcome = f"enriched: {a.word_count} words, title {a.title!r:.40}"
        elif name in dead_by_name:
            outcome = f"dead-lettered: {dead_by_name[name].get('nf-error-class')}"
        else:
            outcome = "MISSING"
        RESULTS.append(HostileResult(name, "processor", outcome, seconds, proc.peak_rss_tree / 2**20,
                                     PROCESSOR_RSS_LIMIT_MIB))

    assert not timed_out and code == 0, f"processor exit {code}, timed out {timed_out}\n{context}"
    assert proc.peak_rss_tree / 2**20 < PROCESSOR_RSS_LIMIT_MIB, context
    assert not guard_violations(proc.guard_log), context
    assert not proc.orphans_reaped, f"extraction workers outlived the processor\n{context}"
    for name, (_data, _ctype, reasons) in PAGES.items():
        assert (name in enriched) != (name in dead_by_name), f"{name}: not accounted for exactly once\n{context}"
        if reasons is not None:
            assert name in dead_by_name and dead_by_name[name].get("nf-error-class") in reasons, context
        if name in dead_by_name:
            assert dead_by_name[name].get("nf-error"), f"{name}: dead letter without a reason\n{context}"
    assert "control" in enriched and "pier" in enriched["control"].text.lower(), context
    entity = enriched.get("XML entity expansion")
    assert entity is None or len(entity.text) + len(entity.title or "") < 100_000, "entities were expanded"
