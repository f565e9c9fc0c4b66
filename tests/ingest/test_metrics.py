"""Feed-health gauges follow the owned feeds' states; per-feed series exist only for feeds in trouble."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from ingest.metrics import HealthGauges
from ingest.state import FeedState

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def test_health_gauges_track_backing_off_retired_and_consecutive_errors():
    g = HealthGauges()
    ok = FeedState(feed_id="m-ok", url="https://a.example/1")
    failing = FeedState(feed_id="m-bad", url="https://a.example/2", consecutive_errors=3,
                        last_error_class="timeout")
    retired = FeedState(feed_id="m-gone", url="https://a.example/3", retired_at=NOW, consecutive_errors=1,
                        last_error_class="gone")
    liar = FeedState(feed_id="m-liar", url="https://a.example/4", validators_ignored=True)
    g.update([ok, failing, retired, liar])
    assert sample("newsflow_ingest_feeds", state="active") == 2
    assert sample("newsflow_ingest_feeds", state="backing-off") == 1
    assert sample("newsflow_ingest_feeds", state="retired") == 1
    assert sample("newsflow_ingest_feed_consecutive_errors", feed_id="m-bad", error_class="timeout") == 3
    assert sample("newsflow_ingest_feed_consecutive_errors", feed_id="m-ok", error_class="timeout") is None
    assert sample("newsflow_ingest_feed_retired", feed_id="m-gone") == 1
    assert sample("newsflow_ingest_feeds_validators_ignored") == 1

    g.update([ok, failing.model_copy(update={"consecutive_errors": 0})])  # recovered; the retired feed left
    assert sample("newsflow_ingest_feed_consecutive_errors", feed_id="m-bad", error_class="timeout") is None
    assert sample("newsflow_ingest_feed_retired", feed_id="m-gone") is None
    assert sample("newsflow_ingest_feeds", state="active") == 2


def test_oldest_due_time_follows_each_feeds_own_schedule():
    """The stuck-feeds alert is time() minus this gauge: a feed checked every 6 h is not late after an
    hour, a never-polled feed is due from the moment this instance saw it, retired feeds never count."""
    from datetime import timedelta

    g = HealthGauges()
    assert sample("newsflow_ingest_oldest_due_timestamp_seconds") == float("inf")  # nothing owned yet
    slow = FeedState(feed_id="d-slow", url="https://a.example/slow", next_check_at=NOW + timedelta(hours=6))
    g.update([slow], now=NOW)
    assert sample("newsflow_ingest_oldest_due_timestamp_seconds") == (NOW + timedelta(hours=6)).timestamp()

    never = FeedState(feed_id="d-new", url="https://a.example/new")  # no next check: due since first seen
    gone = FeedState(feed_id="d-gone", url="https://a.example/gone", retired_at=NOW - timedelta(days=9),
                     next_check_at=NOW - timedelta(days=9))
    g.update([slow, never, gone], now=NOW)
    assert sample("newsflow_ingest_oldest_due_timestamp_seconds") == NOW.timestamp()
    g.update([slow, never, gone], now=NOW + timedelta(hours=2))  # still never polled: still due since NOW
    assert sample("newsflow_ingest_oldest_due_timestamp_seconds") == NOW.timestamp()
    g.update([], now=NOW)
    assert sample("newsflow_ingest_oldest_due_timestamp_seconds") == float("inf")
