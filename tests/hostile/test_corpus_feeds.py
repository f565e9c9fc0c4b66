"""Every feed of the shared corpus (1,850 of feedparser's test feeds: ill-formed, odd encodings,
every dialect) served over HTTP with its recorded headers, through one real poller cycle: 0 crashes.

"No crash" means: the cycle ends by itself with exit code 0, within its time and memory limits;
every feed was polled and has a health row; no feed's health records an internal error (a bug
rather than a feed problem); and no connection left loopback (entries linking to the outside world
meet the stub resolver, which refuses every name, and fail as DNS errors).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import CORPUS
from tests.hostile.conftest import RESULTS, HostileResult
from tests.hostile.harness import HOSTILE_OVERRIDES, POLLER_RSS_LIMIT_MIB, poll_once, write_feeds

pytestmark = [pytest.mark.hostile, pytest.mark.integration, pytest.mark.corpus, pytest.mark.timeout(600)]

FEEDS = CORPUS / "feeds"
TIME_LIMIT_S = 240.0


def test_every_corpus_feed_through_the_poller(site, make_settings, tmp_path):
    if not (FEEDS / "index.json").is_file():
        pytest.fail(f"corpus feeds not found at {FEEDS}: set NEWSFLOW_CORPUS to the shared corpus directory")
    index = json.loads((FEEDS / "index.json").read_text(encoding="utf-8"))
    urls = []
    for item in index:
        headers = {k: v for k, v in item.get("headers") or [] if k.lower() != "content-length"}
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "text/xml")
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        path = "/tests/" + item["path"]
        site.add(path, (FEEDS / item["path"]).read_bytes(), content_type=ctype, headers=headers)
        urls.append(site.url(path))
    settings = make_settings(feeds_file=write_feeds(tmp_path / "feeds.yaml", urls),
                             **(HOSTILE_OVERRIDES | {"host_rate_per_s": 2000.0, "host_concurrency": 16}))

    cycle = poll_once(settings, tmp_path, limit_s=TIME_LIMIT_S)

    rows = [cycle.health.get(u) for u in urls]
    classes = Counter((r or {}).get("last_error_class") or "ok" for r in rows)
    summary = ", ".join(f"{k} {v}" for k, v in classes.most_common())
    RESULTS.append(HostileResult(f"corpus feeds ({len(urls)})", "feed", summary, cycle.seconds,
                                 cycle.peak_rss_mib, POLLER_RSS_LIMIT_MIB))
    context = f"{summary}\n{cycle.log_tail}"
    assert not cycle.timed_out, f"the cycle did not end within {TIME_LIMIT_S:.0f}s\n{context}"
    assert cycle.code == 0, f"the poller exited with {cycle.code}\n{context}"
    assert cycle.peak_rss_mib < POLLER_RSS_LIMIT_MIB, context
    assert not cycle.guard, f"connections outside loopback: {cycle.guard[:5]}"
    never = [u for u, r in zip(urls, rows) if not (r and r.get("polled"))]
    assert not never, f"{len(never)} feeds never polled, e.g. {never[:5]}"
    assert classes.get("internal", 0) == 0, f"internal errors (bugs):\n{context}"
    assert classes["ok"] > len(urls) // 2, f"most corpus feeds should be read\n{context}"
