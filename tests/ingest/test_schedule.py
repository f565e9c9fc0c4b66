"""Scheduling is a pure computation: header parsing, policy adaptation, backoff, next check (table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest import schedule as sch

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

RETRY_AFTER = [
    ("120", 120.0),
    ("0", 0.0),
    (" 30 ", 30.0),
    ("Sat, 01 Mar 2025 12:10:00 GMT", 600.0),  # HTTP-date
    ("Saturday, 01-Mar-25 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
    ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: no wait
    ("soon", None),
    ("-5", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize("value, expected", RETRY_AFTER)
def test_parse_retry_after_both_forms(value, expected):
    assert sch.parse_retry_after(value, NOW) == expected


MAX_AGE = [
    ("max-age=300", None, 300.0),
    ("public, max-age=600, must-revalidate", None, 600.0),
    ("max-age=600", "100", 500.0),
    ("max-age=60", "100", 0.0),
    ("no-cache, max-age=600", None, None),
    ("no-store", None, None),
    ("private", None, None),
    ('max-age="90"', None, 90.0),
    (None, None, None),
]


@pytest.mark.parametrize("cc, age, expected", MAX_AGE)
def test_parse_max_age(cc, age, expected):
    assert sch.parse_max_age(cc, age) == expected


def test_expires_is_measured_against_the_date_header_and_loses_to_max_age():
    headers = {"expires": "Sat, 01 Mar 2025 13:00:00 GMT", "date": "Sat, 01 Mar 2025 12:30:00 GMT"}
    assert sch.header_terms(headers, NOW) == {"expires": 1800.0}  # server clock, not ours
    assert sch.header_terms({"expires": "Sat, 01 Mar 2025 13:00:00 GMT"}, NOW) == {"expires": 3600.0}
    assert sch.header_terms(headers | {"cache-control": "max-age=60"}, NOW) == {"cache-control": 60.0}
    assert sch.header_terms({"expires": "0"}, NOW) == {}
    assert sch.header_terms({"expires": "Sat, 01 Mar 2025 11:00:00 GMT"}, NOW) == {}


TTL = [
    ("60", None, None, 3600.0),
    (None, "hourly", "2", 1800.0),
    (None, "daily", None, 86400.0),
    (None, "weekly", "7", 86400.0),
    ("30", "daily", "1", 86400.0),  # the longer of the two
    ("x", "fortnightly", "z", None),
    (None, None, None, None),
]


@pytest.mark.parametrize("ttl, period, freq, expected", TTL)
def test_feed_ttl(ttl, period, freq, expected):
    assert sch.feed_ttl_s(ttl, period, freq) == expected


def test_entry_rate_interval_is_half_the_mean_gap_and_grows_while_the_feed_is_quiet():
    hourly = [NOW - timedelta(hours=h) for h in range(1, 11)]  # 10 entries over 10 hours
    assert sch.entry_rate_interval(hourly, NOW) == pytest.approx(1800.0)
    later = NOW + timedelta(hours=10)
    assert sch.entry_rate_interval(hourly, later) == pytest.approx(3600.0)
    assert sch.entry_rate_interval([NOW], NOW) is None
    assert sch.entry_rate_interval([datetime(1970, 1, 2, tzinfo=UTC), NOW + timedelta(days=30)], NOW) is None


POLICY = [
    # previous, new, total, expected (no dated entries: the previous interval is the base)
    (None, 10, 10, 900.0),  # first poll: default, no factor
    (1000.0, 0, 10, 1500.0),  # all seen: x1.5
    (1000.0, 5, 10, 500.0),  # half new: x0.5
    (1000.0, 2, 10, 1000.0),  # a few new: unchanged
    (100.0, 9, 10, 60.0),  # bounded below by min
    (80000.0, 0, 10, 86400.0),  # bounded above by max
]


@pytest.mark.parametrize("previous, new, total, expected", POLICY)
def test_adapt_policy_follows_the_share_of_seen_entries(previous, new, total, expected):
    got = sch.adapt_policy(previous, default_s=900.0, new=new, total=total, dates=[], now=NOW, min_s=60.0,
                           max_s=86400.0)
    assert got == pytest.approx(expected)


def test_adapt_policy_uses_the_entry_rate_when_entries_are_dated():
    dates = [NOW - timedelta(minutes=20 * i) for i in range(1, 7)]  # every 20 min: half gap = 10 min
    assert sch.adapt_policy(5000.0, default_s=900.0, new=1, total=6, dates=dates, now=NOW, min_s=60.0,
                            max_s=86400.0) == pytest.approx(600.0)


BACKOFF = [(1, 60.0), (2, 120.0), (3, 240.0), (10, 30720.0), (12, 86400.0), (500, 86400.0)]


@pytest.mark.parametrize("errors, expected", BACKOFF)
def test_backoff_is_exponential_and_capped(errors, expected):
    assert sch.backoff_s(errors, 60.0, 86400.0) == expected


def test_next_check_takes_the_largest_term_and_jitters_only_our_own():
    kw = dict(min_s=60.0, max_s=86400.0)
    n = sch.next_check(NOW, own_term=("policy", 1000.0), server_terms={"ttl": 3600.0}, jitter=0.1, rand=0.99, **kw)
    assert (n.reason, n.interval_s) == ("ttl", 3600.0)  # server term exact, no jitter
    n = sch.next_check(NOW, own_term=("policy", 1000.0), server_terms={"ttl": 300.0}, jitter=0.1, rand=0.5, **kw)
    assert (n.reason, n.interval_s) == ("policy", pytest.approx(950.0))
    assert n.at == NOW + timedelta(seconds=950.0)
    n = sch.next_check(NOW, own_term=("backoff", 60.0), server_terms={"retry-after": 7200.0}, jitter=0.2, rand=0.0,
                       **kw)
    assert (n.reason, n.interval_s) == ("retry-after", 7200.0)
    n = sch.next_check(NOW, own_term=("policy", 10.0), server_terms={}, jitter=0.1, rand=0.0, **kw)
    assert (n.reason, n.interval_s) == ("min", 60.0)
    n = sch.next_check(NOW, own_term=("policy", 10.0), server_terms={"retry-after": 10 * 86400.0}, jitter=0.1,
                       rand=0.0, **kw)
    assert (n.reason, n.interval_s) == ("max", 86400.0)  # never parked beyond the maximum


@pytest.mark.parametrize("error_class, kind", [
    ("gone", "gone"), ("not_found", "soft"), ("client_error", "soft"), ("server_error", "temporary"),
    ("timeout", "temporary"), ("dns", "temporary"), ("tls", "temporary"), ("rate_limited", "temporary"),
    ("unavailable", "temporary"), ("parse", "soft"), ("blocked", "soft"),
])
def test_error_kinds(error_class, kind):
    assert sch.error_kind(error_class) == kind


def test_a_batch_waits_for_the_feeds_due_right_after_its_first_and_only_once():
    """``Poller._gather_ms``: one transaction for the feeds due within ``BATCH_GATHER``, never an early poll."""
    from types import SimpleNamespace

    from ingest.poller import BATCH_GATHER, Poller

    def slot(fid: str, due_ms: float, retired: bool = False):
        return SimpleNamespace(definition=SimpleNamespace(id=fid), state=SimpleNamespace(
            next_check_at=NOW + timedelta(milliseconds=due_ms), retired_at=NOW if retired else None))

    first = slot("a", 0)
    others = {"b": slot("b", 50), "late": slot("late", BATCH_GATHER.total_seconds() * 1000 + 100),
              "retired": slot("retired", 120, retired=True)}
    poller = Poller.__new__(Poller)
    poller._gathered_for = None
    poller.table = SimpleNamespace(slots={"a": first, **others})
    assert poller._gather_ms([(first, True)], NOW) == 51  # until "b" is due, not "late", not the retired one
    assert poller._gather_ms([(first, True)], NOW + timedelta(milliseconds=51)) == 0  # it waited once already
    alone = Poller.__new__(Poller)
    alone._gathered_for = None
    alone.table = SimpleNamespace(slots={"a": first, "late": others["late"]})
    assert alone._gather_ms([(first, True)], NOW) == 0  # nothing due soon: no wait
