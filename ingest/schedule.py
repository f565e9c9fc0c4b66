"""Scheduling is a computation, not a loop with sleeps (STYLE #8). Everything here is pure.

After each poll the next check of a feed is::

    interval = max(own term, TTL / sy:updatePeriod, Cache-Control max-age, Expires, Retry-After)
    next     = now + clamp(interval, poll_min_interval_s, poll_max_interval_s)

The *own term* is our choice; only it carries jitter (never the server's terms, which are honoured
exactly, up to the maximum interval):

* after a success, the adaptive **policy interval** (``adapt_policy``): half the mean gap between the
  feed's recent entries (which grows by itself while a feed is quiet), else the previous policy
  interval; then x1.5 when every entry was already seen, x0.5 when half or more were new
  (we may be missing entries); jitter -0..10 %;
* after a failure, a capped **exponential backoff** (``backoff_s``) from a base that depends on the
  error kind (``ERROR_KINDS``): temporary failures start at the minimum interval, "soft" ones (404,
  other 4xx, oversized or non-feed documents) at the policy interval; jitter -0..20 %.

A feed that keeps failing is therefore polled at least every ``poll_max_interval_s``: never dropped.
Only a 410 retires a feed (see ``ingest.state``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

POLICY_JITTER = 0.10
BACKOFF_JITTER = 0.20
ALL_SEEN_FACTOR = 1.5
MOSTLY_NEW_FACTOR = 0.5
RATE_WINDOW = 10  # newest dated entries used for the entry rate

SY_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}

# error_class -> kind. "temporary": backoff from the minimum interval; "soft": from the policy interval;
# "gone": retire. Unknown classes are temporary.
ERROR_KINDS: dict[str, str] = {
    "gone": "gone",
    "not_found": "soft",
    "client_error": "soft",
    "too_large": "soft",
    "bad_content_type": "soft",
    "bad_url": "soft",
    "blocked": "soft",
    "parse": "soft",
    "redirect_loop": "soft",
    "too_many_redirects": "soft",
}


def error_kind(error_class: str) -> str:
    return ERROR_KINDS.get(error_class, "temporary")


# --- header and feed terms -----------------------------------------------------------------------
def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date. None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


def parse_max_age(cache_control: str | None, age: str | None = None) -> float | None:
    """Freshness from Cache-Control ``max-age`` minus ``Age``; None with no-cache/no-store or no max-age."""
    if not cache_control:
        return None
    directives = {}
    for part in cache_control.split(","):
        key, _, value = part.strip().partition("=")
        directives[key.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return None
    raw = directives.get("max-age")
    if raw is None or not raw.isdigit():
        return None
    used = int(age) if age and age.strip().isdigit() else 0
    return float(max(0, int(raw) - used))


def parse_expires(expires: str | None, date: str | None, now: datetime) -> float | None:
    """Freshness from Expires, measured against the response's Date header when there is one (clock skew)."""
    when = _http_date(expires)
    if when is None:
        return None
    base = _http_date(date) or now
    seconds = (when - base).total_seconds()
    return seconds if seconds > 0 else None


def header_terms(headers: Mapping[str, str], now: datetime) -> dict[str, float]:
    """Server-side freshness terms of one response: ``cache-control`` and/or ``expires`` (when set).

    As in HTTP caching, a ``max-age`` directive makes ``Expires`` irrelevant.
    """
    cache_control = headers.get("cache-control") or ""
    terms: dict[str, float] = {}
    max_age = parse_max_age(cache_control, headers.get("age"))
    if max_age is not None:
        terms["cache-control"] = max_age
    if "max-age" not in cache_control.lower():
        expires = parse_expires(headers.get("expires"), headers.get("date"), now)
        if expires is not None:
            terms["expires"] = expires
    return terms


def feed_ttl_s(ttl: str | int | None, sy_period: str | None, sy_frequency: str | int | None) -> float | None:
    """The feed's own hint: RSS ``<ttl>`` (minutes) or ``sy:updatePeriod`` / ``sy:updateFrequency``."""
    out: list[float] = []
    try:
        if ttl is not None and int(str(ttl).strip()) > 0:
            out.append(int(str(ttl).strip()) * 60.0)
    except ValueError:
        pass
    period = SY_PERIODS.get(str(sy_period or "").strip().lower())
    if period:
        try:
            freq = max(1, int(str(sy_frequency).strip())) if sy_frequency is not None else 1
        except ValueError:
            freq = 1
        out.append(period / freq)
    return max(out) if out else None


# --- policy ----------------------------------------------------------------------------------------
def entry_rate_interval(dates: Iterable[datetime], now: datetime) -> float | None:
    """Half the mean gap between the newest entries, measured up to *now* so that it grows while a feed
    is quiet. None with fewer than two plausible dates."""
    plausible = sorted(
        (d for d in dates if datetime(1995, 1, 1, tzinfo=UTC) < d <= now + timedelta(days=1)), reverse=True
    )[:RATE_WINDOW]
    if len(plausible) < 2:
        return None
    span = (now - plausible[-1]).total_seconds()
    if span <= 0:
        return None
    return span / len(plausible) / 2


def adapt_policy(
    previous_s: float | None,
    *,
    default_s: float,
    new: int,
    total: int,
    dates: Iterable[datetime],
    now: datetime,
    min_s: float,
    max_s: float,
) -> float:
    """The next policy interval after a successful poll that saw ``new`` unseen entries out of ``total``."""
    base = entry_rate_interval(dates, now) or previous_s or default_s
    if previous_s is None:  # first poll: everything is new, which says nothing about the rate
        factor = 1.0
    elif new == 0:
        factor = ALL_SEEN_FACTOR
    elif total and new / total >= 0.5:
        factor = MOSTLY_NEW_FACTOR
    else:
        factor = 1.0
    return clamp(base * factor, min_s, max_s)


def backoff_s(consecutive_errors: int, base_s: float, max_s: float) -> float:
    """Capped exponential backoff (before jitter): base, 2 base, 4 base, ... up to max."""
    n = max(1, consecutive_errors)
    if n > 60:
        return max_s
    return min(max_s, base_s * math.pow(2, n - 1))


def clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


@dataclass(frozen=True)
class NextCheck:
    at: datetime
    interval_s: float
    reason: str  # which term won: policy, backoff, ttl, cache-control, expires, retry-after, min, max


def next_check(
    now: datetime,
    *,
    own_term: tuple[str, float],
    server_terms: Mapping[str, float],
    jitter: float,
    rand: float,
    min_s: float,
    max_s: float,
) -> NextCheck:
    """``now + clamp(max(own term minus jitter, server terms), min, max)``; ``rand`` in [0, 1)."""
    own_name, own = own_term
    candidates = {own_name: own * (1 - jitter * rand)}
    candidates.update({k: v for k, v in server_terms.items() if v is not None})
    reason, interval = max(candidates.items(), key=lambda kv: kv[1])
    if interval < min_s:
        reason, interval = "min", min_s
    elif interval > max_s:
        reason, interval = "max", max_s
    return NextCheck(now + timedelta(seconds=interval), interval, reason)
