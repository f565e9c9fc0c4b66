"""`newsflow status`: the pure parts (lag, metrics parsing, feed ranking, rendering) and an outage."""

from __future__ import annotations

import pytest
from rich.console import Console

from newsflow.lag import PartitionLag
from newsflow.settings import Settings
from newsflow.status import feed_health, gather_report, parse_metrics, stage_numbers
from newsflow.status_view import render
from tests.ops.helpers import closed_port

METRICS = """\
# HELP newsflow_records_in_total Records consumed by a stage
# TYPE newsflow_records_in_total counter
newsflow_records_in_total{stage="processor"} 12.0
# TYPE newsflow_records_out_total counter
newsflow_records_out_total{stage="processor"} 10.0
# TYPE newsflow_records_dropped_total counter
newsflow_records_dropped_total{reason="not_article",stage="processor"} 1.0
newsflow_records_dropped_total{reason="too_short",stage="processor"} 1.0
# TYPE newsflow_paused gauge
newsflow_paused{stage="processor"} 1.0
"""


@pytest.mark.parametrize(("committed", "start", "end", "lag"), [
    (None, 0, 10, 10),    # never committed: everything retained is ahead
    (None, 4, 10, 6),     # ... but not what retention already deleted
    (7, 0, 10, 3),
    (10, 0, 10, 0),
    (2, 5, 10, 5),        # committed offset older than retention: from the start
])
def test_partition_lag(committed, start, end, lag):
    assert PartitionLag("g", "t", 0, committed, start, end).lag == lag


def test_stage_numbers_sum_over_labels():
    n = stage_numbers(parse_metrics(METRICS))
    assert n == {"in": 12.0, "out": 10.0, "dropped": 2.0, "dead_letters": 0, "paused": 1.0}


def test_feed_health_sums_pollers_and_ranks_retired_then_errors():
    a = parse_metrics(
        'newsflow_ingest_feeds{state="active"} 5\nnewsflow_ingest_feeds{state="backing-off"} 2\n'
        'newsflow_ingest_feed_consecutive_errors{feed_id="f1",error_class="timeout"} 3\n'
        'newsflow_ingest_feed_consecutive_errors{feed_id="f2",error_class="http_500"} 9\n')
    b = parse_metrics('newsflow_ingest_feeds{state="active"} 1\nnewsflow_ingest_feeds{state="retired"} 1\n'
                      'newsflow_ingest_feed_retired{feed_id="f3"} 1\n')
    health = feed_health([a, b])
    assert health["summary"] == {"active": 6, "backing-off": 2, "retired": 1}
    assert [w["feed_id"] for w in health["worst"]] == ["f3", "f2", "f1"]
    assert health["worst"][1]["error_class"] == "http_500"
    assert feed_health([parse_metrics(METRICS)]) is None


def report(**over) -> dict:
    base = {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "connection": {"kafka_bootstrap": "k:9092", "es_url": "http://es:9200", "es_auth": "none", "es_alias": "a"},
        "supervisors": [{"pid": 10, "children": {"processor": {"pid": None, "restarts": 2, "last_exit": -9},
                                                  "indexer": {"pid": 12, "restarts": 0, "last_exit": None}}}],
        "stages": [{"stage": "indexer", "pid": 12, "uptime_s": 4000, "rss_mb": 80.2,
                    "health": {"ok": True}, "ready": {"ok": False, "checks": {
                        "elasticsearch": {"ok": False, "detail": "ConnectionError: refused"},
                        "kafka": {"ok": True, "detail": "1 broker(s)"}}},
                    "counters": {"in": 5.0, "out": 5.0, "dropped": 0.0, "dead_letters": 0.0, "paused": 1.0}}],
        "kafka": {"ok": True, "lag": [{"stage": "indexer", "group": "g", "topic": "articles.enriched", "partition": 0,
                                       "committed": 3, "start": 0, "end": 4050, "lag": 4047}],
                  "dlq": {"topic": "articles.dlq", "records": 3, "exact": True}},
        "feeds": {"file": "feeds.yaml", "configured": 2, "source": "feed-state topic",
                  "summary": {"feeds": 2, "active": 1, "backing-off": 0, "retired": 1},
                  "worst": [{"id": "f3", "url": "https://gone.example/rss", "state": "retired",
                             "consecutive_errors": 0, "last_error_class": "http_410", "last_error": "410 Gone",
                             "last_success": "2025-12-30T08:00:00+00:00", "next_check": None}]},
        "elasticsearch": {"ok": True, "alias": "a", "docs": 7,
                          "indices": [{"index": "a-2026.01", "health": "green", "docs": 7, "size_bytes": 42_000}]},
    }
    return base | over


def rendered(rep: dict) -> str:
    console = Console(record=True, width=160)
    console.print(render(rep, console.width))
    return console.export_text()


def test_render_shows_what_is_stuck_and_why():
    text = rendered(report())
    assert "DOWN" in text and "restart 2 pending (last exit -9)" in text
    assert "paused: sink pushing back" in text and "elasticsearch: ConnectionError: refused" in text
    assert "4047" in text and "articles.dlq: 3 records" in text and "66m" in text
    assert "feed-state topic: 2 feeds, 1 active, 0 backing-off, 1 retired" in text
    assert "https://gone.example/rss" in text and "http_410" in text and "2025-12-30 08:00" in text
    assert "7 documents behind alias 'a'" in text and "41 KiB" in text


def test_render_survives_outages():
    text = rendered(report(kafka={"ok": False, "error": "KafkaTimeoutError: Unable to bootstrap"},
                           elasticsearch={"ok": False, "alias": "a", "error": "ConnectionError: refused"},
                           stages=[], supervisors=[]))
    assert "Kafka unreachable: KafkaTimeoutError" in text and "Elasticsearch unreachable" in text
    assert "no stage process is running" in text


@pytest.mark.integration
def test_collect_reports_unreachable_services_instead_of_failing(stack, tmp_path):
    dead = closed_port()
    s = Settings(kafka_bootstrap=f"127.0.0.1:{dead}", es_url=f"http://127.0.0.1:{dead}", state_dir=tmp_path,
                 feeds_file=tmp_path / "missing.yaml")
    rep = gather_report(s)
    assert rep["kafka"]["ok"] is False and "bootstrap" in rep["kafka"]["error"].lower()
    assert rep["elasticsearch"]["ok"] is False and rep["stages"] == []
    assert rep["feeds"]["configured"] is None and "FileNotFoundError" in rep["feeds"]["error"]


@pytest.mark.integration
def test_status_shows_failing_feeds_from_the_feed_state_topic(make_settings, tmp_path, site):
    from tests.ops.helpers import newsflow

    site.add("/ok.xml", b'<?xml version="1.0"?><rss version="2.0"><channel><title>ok</title></channel></rss>',
             content_type="application/rss+xml")
    broken = f"http://127.0.0.1:{closed_port()}/feed.xml"
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - url: {site.url('/ok.xml')}\n  - url: {broken}\n")
    s = make_settings(feeds_file=feeds, state_dir=tmp_path / "state")
    assert newsflow(s, "poll", "--once").wait(timeout=180) == 0
    rep = gather_report(s)
    f = rep["feeds"]
    assert f["configured"] == 2 and f["source"] == "feed-state topic"
    assert f["summary"]["feeds"] == 2 and f["summary"]["active"] + f["summary"]["backing-off"] == 2
    (worst,) = f["worst"]
    assert worst["url"] == broken and worst["consecutive_errors"] == 1 and worst["last_error_class"]
    assert broken in rendered(rep)
