"""Prometheus metrics of the poller (feed health, polls, pages). Exposed by the shared /metrics endpoint.

Health gauges describe the feeds *this instance owns*; sum them over instances for the fleet.
Per-feed series exist only for unhealthy feeds (backing off or retired), so cardinality stays with
the number of feeds in trouble, not the number of feeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

FEEDS = Gauge("newsflow_ingest_feeds", "Feeds owned by this poller instance, by health", ["state"])
FEED_CONSECUTIVE_ERRORS = Gauge(
    "newsflow_ingest_feed_consecutive_errors", "Consecutive failed polls of a feed (only feeds with errors)",
    ["feed_id", "error_class"],
)
FEED_RETIRED = Gauge("newsflow_ingest_feed_retired", "1 for a feed retired after 410 Gone", ["feed_id"])
OLDEST_DUE = Gauge(
    "newsflow_ingest_oldest_due_timestamp_seconds",
    "Unix time the most overdue owned feed became due by its own schedule (its next check, or when this "
    "instance first saw a never-polled feed); +Inf when no feed is owned. time() minus it = how late polling is",
)
VALIDATORS_IGNORED = Gauge(
    "newsflow_ingest_feeds_validators_ignored", "Owned feeds whose ETag/Last-Modified lied and are ignored"
)
POLLS = Counter("newsflow_ingest_polls_total", "Feed polls by outcome (new, not_modified, unchanged, "
                "or the error class)", ["outcome"])
NEW_ENTRIES = Counter("newsflow_ingest_new_entries_total", "Entries seen for the first time (or changed)")
PAGES = Counter("newsflow_ingest_pages_total", "Article pages by result and reason", ["result", "reason"])
SITEMAPS = Counter("newsflow_ingest_sitemaps_total", "Child sitemaps of sitemap indexes: ok, the error class, or "
                   "not fetched (loop, too_deep, over_limit, deferred)", ["result"])
FETCH_SECONDS = Histogram(
    "newsflow_ingest_fetch_seconds", "Time to fetch a feed or a page, redirects included", ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
CYCLE_SECONDS = Histogram(
    "newsflow_ingest_batch_seconds", "Time of one batch of feed jobs (fetch, produce, persist)",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
FEEDS_MOVED = Counter("newsflow_ingest_feeds_moved_total", "Feed URLs updated after consistent 301/308")
BATCHES_NOT_COMMITTED = Counter(
    "newsflow_ingest_batches_not_committed_total",
    "Poll batches whose Kafka transaction did not commit: nothing of them was written, their pages are fetched again",
)


class HealthGauges:
    """Keeps the per-feed series in step with the feeds' states (and drops them when a feed leaves)."""

    def __init__(self) -> None:
        self._errors: dict[str, str] = {}
        self._retired: set[str] = set()
        self._unscheduled_since: dict[str, float] = {}  # feeds without a next check: due since first seen
        OLDEST_DUE.set(float("inf"))

    def update(self, states: Iterable, now: datetime | None = None) -> None:
        """Set every health gauge from the states of the feeds this instance owns. A stuck poller stops
        calling this: the oldest due time then stands still while the clock runs, so an alert on
        ``time() - newsflow_ingest_oldest_due_timestamp_seconds`` fires whatever the cause."""
        now_ts = (now or datetime.now(UTC)).timestamp()
        counts = {"active": 0, "backing-off": 0, "retired": 0}
        errors: dict[str, str] = {}
        retired: set[str] = set()
        unscheduled: dict[str, float] = {}
        due_at: list[float] = []
        ignored = 0
        for st in states:
            counts[st.health] += 1
            ignored += bool(st.validators_ignored)
            if st.retired_at is None:
                if st.next_check_at is None:
                    unscheduled[st.feed_id] = self._unscheduled_since.get(st.feed_id, now_ts)
                    due_at.append(unscheduled[st.feed_id])
                else:
                    due_at.append(st.next_check_at.timestamp())
            if st.health == "retired":
                retired.add(st.feed_id)
            elif st.consecutive_errors:
                errors[st.feed_id] = st.last_error_class or "unknown"
                FEED_CONSECUTIVE_ERRORS.labels(st.feed_id, errors[st.feed_id]).set(st.consecutive_errors)
        for fid, cls in self._errors.items():
            if errors.get(fid) != cls:
                FEED_CONSECUTIVE_ERRORS.remove(fid, cls)
        for fid in retired - self._retired:
            FEED_RETIRED.labels(fid).set(1)
        for fid in self._retired - retired:
            FEED_RETIRED.remove(fid)
        self._errors, self._retired, self._unscheduled_since = errors, retired, unscheduled
        OLDEST_DUE.set(min(due_at, default=float("inf")))
        for state, n in counts.items():
            FEEDS.labels(state).set(n)
        VALIDATORS_IGNORED.set(ignored)
