"""``newsflow feeds status``: one row per feed, from the feeds and feed-state tables (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.state import FeedDefinition, FeedState

COLUMNS = ("url", "state", "last_success", "last_new_entry", "next_check", "consecutive_errors",
           "last_error_class", "last_error")


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def status_row(definition: FeedDefinition, state: FeedState | None) -> dict[str, Any]:
    """Everything an operator asks about one feed. A feed never polled yet is active and due now."""
    st = state or FeedState(feed_id=definition.id, url=definition.url)
    return {
        "id": definition.id,
        "url": definition.url,
        "title": st.title or definition.title,
        "state": st.health,
        "last_success": _iso(st.last_success_at),
        "last_new_entry": _iso(st.last_new_entry_at),
        "next_check": None if st.retired_at else _iso(st.next_check_at),
        "next_check_reason": st.next_check_reason if not st.retired_at else None,
        "consecutive_errors": st.consecutive_errors,
        "last_error_class": st.last_error_class,
        "last_error": st.last_error,
        "last_error_at": _iso(st.last_error_at),
        "last_status": st.last_status,
        "last_checked": _iso(st.last_checked_at),
        "retired_at": _iso(st.retired_at),
        "retired_reason": st.retired_reason,
        "policy_interval_s": st.policy_interval_s,
        "validators_ignored": st.validators_ignored,
        "validators_note": st.validators_note,
        "etag": st.etag,
        "last_modified": st.last_modified,
        "moved_from": definition.moved_from,
        "added_url": definition.added_url,
        "last_page_error": st.last_page_error,
        "last_page_error_at": _iso(st.last_page_error_at),
        "entries_last_poll": st.entries_last,
        "new_last_poll": st.new_last,
        "seen_entries": len(st.seen),
        "pending_pages": len(st.pending),
        "polled": state is not None,
    }


def status_rows(defs: dict[str, tuple[int, FeedDefinition]], states: dict[str, FeedState]) -> list[dict[str, Any]]:
    order = {"retired": 0, "backing-off": 1, "active": 2}
    rows = [status_row(d, states.get(fid)) for fid, (_p, d) in defs.items()]
    return sorted(rows, key=lambda r: (order[r["state"]], -r["consecutive_errors"], r["url"]))


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {"feeds": len(rows), "active": 0, "backing-off": 0, "retired": 0}
    for r in rows:
        out[r["state"]] += 1
    return out
