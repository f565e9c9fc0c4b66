"""Per-feed state transitions (pure): conditional GET, lying validators, error classes, redirects,
seen entries and first_seen_at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest import state as S
from ingest import transitions as T
from ingest.parse import parse_feed
from tests.support import hostile

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = S.Policy(default_s=900.0, min_s=60.0, max_s=86400.0, max_entries=500, max_attempts=3)
URL = "https://news.example/feed.xml"


def feed(*items: tuple[str, str]) -> bytes:
    """items: (guid, title) -> an RSS document whose links are https://news.example/<guid>."""
    return hostile.rss_document(b"".join(
        f"<item><guid>{g}</guid><title>{t}</title><link>https://news.example/{g}</link></item>".encode()
        for g, t in items))


def parsed(*items):
    return parse_feed(feed(*items), url=URL, content_type="application/rss+xml", max_entries=500)


def fresh() -> S.FeedState:
    return S.FeedState(feed_id="f1", url=URL)


def poll(st, *items, headers=None, now=NOW, body_hash=None):
    return T.on_feed(st, parsed(*items), body_hash=body_hash or str(hash(items)), headers=headers or {},
                     status=200, now=now, policy=POLICY, rand=0.0)


def deliver_all(st, refs, now=NOW):
    outcomes = [T.PageOutcome(r, "delivered", "ok", f"{r.key}aid{'0' * 40}", T.first_seen_for(st, r, None, now))
                for r in refs]
    return T.record_page_outcomes(st, outcomes, delivered_ok={r.key for r in refs}, now=now, policy=POLICY)


# --- entries -----------------------------------------------------------------------------------------------
def test_new_entries_are_pending_until_delivered_then_seen():
    st, new = poll(fresh(), ("a", "A"), ("b", "B"))
    assert [r.guid for r in new] == ["a", "b"]
    assert {p.key for p in st.pending} == {r.key for r in new} and not st.seen
    st = deliver_all(st, new)
    assert not st.pending and set(st.seen) == {r.key for r in new}
    st2, again = poll(st, ("a", "A"), ("b", "B"), ("c", "C"), now=NOW + timedelta(hours=1))
    assert [r.guid for r in again] == ["c"]
    assert st2.last_new_entry_at == NOW + timedelta(hours=1)


def test_an_undelivered_record_leaves_the_entry_pending_and_a_failed_page_counts_an_attempt():
    st, new = poll(fresh(), ("a", "A"), ("b", "B"))
    outcomes = [T.PageOutcome(new[0], "delivered", "ok", "x" * 64), T.PageOutcome(new[1], "retry", "timeout")]
    st = T.record_page_outcomes(st, outcomes, delivered_ok=set(), now=NOW, policy=POLICY)  # the producer failed
    assert not st.seen
    assert {p.guid: p.attempts for p in st.pending} == {"a": 0, "b": 1}


def test_a_changed_entry_is_fetched_again_with_its_first_seen_time():
    st, new = poll(fresh(), ("a", "A"))
    st = deliver_all(st, new)
    later = NOW + timedelta(days=40)
    st2, again = poll(st, ("a", "A, corrected"), now=later)
    assert [r.guid for r in again] == ["a"]
    assert T.first_seen_for(st2, again[0], None, later) == NOW


def test_a_guid_that_changes_on_every_request_does_not_refetch_the_page():
    st, new = poll(fresh(), ("a", "A"))
    st = T.record_page_outcomes(st, [T.PageOutcome(new[0], "delivered", "ok", T.page_article_id(new[0]))],
                  delivered_ok={new[0].key}, now=NOW, policy=POLICY)
    body = feed(("a", "A")).replace(b"<guid>a</guid>", b"<guid>a-session-2</guid>")
    st2, again = T.on_feed(st, parse_feed(body, url=URL, content_type=None, max_entries=10), body_hash="h2",
                           headers={}, status=200, now=NOW, policy=POLICY, rand=0.0)
    assert again == []


def test_first_seen_comes_from_another_feed_of_the_process_when_this_one_never_saw_it():
    st, new = poll(fresh(), ("a", "A"))
    aid = T.page_article_id(new[0])
    earlier = NOW - timedelta(days=3)
    assert T.first_seen_for(st, new[0], aid, NOW, {aid[:16]: int(earlier.timestamp())}) == earlier
    assert T.first_seen_for(st, new[0], aid, NOW, {}) == NOW


def test_seen_entries_are_pruned_by_age_and_capped():
    seen = {f"k{i}": S.SeenEntry(version="v", first_seen=0, last_in_feed=int((NOW - timedelta(days=i)).timestamp())) for i in range(60)}
    kept = T.prune_seen(seen, {"k59"}, now=NOW, cap=1000)
    assert "k59" in kept and "k31" not in kept and "k29" in kept  # absent > 30 days: forgotten
    assert len(T.prune_seen(seen, {"k59"}, now=NOW, cap=10)) == 10
    assert "k59" in T.prune_seen(seen, {"k59"}, now=NOW, cap=10)  # still in the feed: kept first


def test_entries_without_a_link_are_seen_without_a_page_fetch():
    body = hostile.rss_document(b"<item><guid>n1</guid><title>no link</title></item>")
    st, new = T.on_feed(fresh(), parse_feed(body, url=URL, content_type=None, max_entries=5), body_hash="h",
                        headers={}, status=200, now=NOW, policy=POLICY, rand=0.0)
    assert new == [] and len(st.seen) == 1 and not st.pending


# --- conditional GET and validators ---------------------------------------------------------------------------
def test_validators_are_stored_and_sent():
    st, _ = poll(fresh(), ("a", "A"), headers={"etag": '"v1"', "last-modified": "Sat, 01 Mar 2025 10:00:00 GMT"})
    assert T.conditional_headers(st) == {"If-None-Match": '"v1"', "If-Modified-Since": "Sat, 01 Mar 2025 10:00:00 GMT"}
    st = T.on_not_modified(st, headers={"etag": '"v1"'}, now=NOW, policy=POLICY, rand=0.0)
    assert st.not_modified_streak == 1 and st.consecutive_errors == 0 and st.last_success_at == NOW


def test_an_etag_that_stays_while_the_body_changes_gets_validators_ignored():
    st, _ = poll(fresh(), ("a", "A"), headers={"etag": '"static"'}, body_hash="h1")
    st, new = poll(st, ("a", "A"), ("b", "B"), headers={"etag": '"static"'}, body_hash="h2")
    assert st.validators_ignored
    assert "ETag" in st.validators_note
    assert T.conditional_headers(st) == {}
    assert st.etag is None
    st, _ = poll(st, ("a", "A"), ("b", "B"), ("c", "C"), headers={"etag": '"fresh"'}, body_hash="h3")
    assert st.validators_ignored and T.conditional_headers(st) == {}  # from then on


def test_a_last_modified_that_stays_while_the_body_changes_gets_validators_ignored():
    lm = {"last-modified": "Sat, 01 Mar 2025 10:00:00 GMT"}
    st, _ = poll(fresh(), ("a", "A"), headers=lm, body_hash="h1")
    st, _ = poll(st, ("b", "B"), headers=lm, body_hash="h2")
    assert st.validators_ignored and "Last-Modified" in st.validators_note


def test_a_304_about_another_etag_is_a_lie():
    st, _ = poll(fresh(), ("a", "A"), headers={"etag": '"v1"'})
    st = T.on_not_modified(st, headers={"etag": '"v2"'}, now=NOW, policy=POLICY, rand=0.0)
    assert st.validators_ignored and st.next_check_at == NOW  # polled again at once, unconditionally
    assert T.conditional_headers(st) == {}


def test_weak_etags_compare_equal():
    st, _ = poll(fresh(), ("a", "A"), headers={"etag": 'W/"v1"'})
    st = T.on_not_modified(st, headers={"etag": '"v1"'}, now=NOW, policy=POLICY, rand=0.0)
    assert not st.validators_ignored


def test_validators_are_verified_after_a_run_of_304s():
    st, _ = poll(fresh(), ("a", "A"), headers={"etag": '"v1"'})
    for _ in range(T.VERIFY_EVERY):
        assert T.conditional_headers(st)
        st = T.on_not_modified(st, headers={}, now=NOW, policy=POLICY, rand=0.0)
    assert T.conditional_headers(st) == {}  # one unconditional GET
    st = T.on_not_modified(st, headers={"etag": '"v1"'}, now=NOW, policy=POLICY, rand=0.0, status=200)
    assert T.conditional_headers(st) == {"If-None-Match": '"v1"'}


def test_unchanged_feed_backs_off_and_new_entries_speed_up():
    st, _ = poll(fresh(), ("a", "A"), ("b", "B"))
    assert st.policy_interval_s == 900.0
    st = T.on_not_modified(st, headers={}, now=NOW, policy=POLICY, rand=0.0)
    assert st.policy_interval_s == 1350.0
    st, _ = poll(st, ("c", "C"), ("d", "D"))
    assert st.policy_interval_s == 675.0


def test_server_freshness_and_feed_ttl_push_the_next_check_out():
    body = hostile.rss_document(b"<ttl>120</ttl><item><guid>a</guid><link>https://x.example/a</link></item>")
    st, _ = T.on_feed(fresh(), parse_feed(body, url=URL, content_type=None, max_entries=5), body_hash="h",
                      headers={"cache-control": "max-age=3600"}, status=200, now=NOW, policy=POLICY, rand=0.0)
    assert (st.next_check_reason, st.next_check_at) == ("ttl", NOW + timedelta(hours=2))
    st = T.on_not_modified(st, headers={"cache-control": "max-age=36000"}, now=NOW, policy=POLICY, rand=0.0)
    assert (st.next_check_reason, st.next_check_at) == ("cache-control", NOW + timedelta(hours=10))


# --- error classes ----------------------------------------------------------------------------------------------
def err(st, error_class, status=None, headers=None, now=NOW):
    return T.on_error(st, error_class=error_class, message="m", status=status, headers=headers, now=now,
                      policy=POLICY, rand=0.0)


def test_410_retires_the_feed():
    st = err(fresh(), "gone", 410)
    assert st.health == "retired" and st.retired_at == NOW and st.next_check_at is None
    assert not st.is_due(NOW + timedelta(days=365))


def test_404_is_soft_backoff_from_the_policy_interval_and_never_drops_the_feed():
    st = fresh().model_copy(update={"policy_interval_s": 1800.0})
    delays = []
    for i in range(12):
        st = err(st, "not_found", 404, now=NOW)
        delays.append((st.next_check_at - NOW).total_seconds())
        assert st.health == "backing-off" and st.is_due(NOW + timedelta(seconds=POLICY.max_s))
    assert delays[:3] == [1800.0, 3600.0, 7200.0]
    assert max(delays) == POLICY.max_s  # capped: polled at least daily, forever


@pytest.mark.parametrize("error_class", ["server_error", "timeout", "dns", "tls", "connect"])
def test_temporary_errors_back_off_exponentially_from_the_minimum_with_jitter(error_class):
    st = fresh()
    for n in range(1, 5):
        st = T.on_error(st, error_class=error_class, message="m", status=None, headers=None, now=NOW,
                        policy=POLICY, rand=0.5)
        assert (st.next_check_at - NOW).total_seconds() == pytest.approx(max(60.0, 60.0 * 2 ** (n - 1) * 0.9))
    assert st.consecutive_errors == 4
    st, _ = poll(st, ("a", "A"))
    assert st.consecutive_errors == 0 and st.health == "active" and st.last_error_class == error_class


@pytest.mark.parametrize("status, error_class", [(429, "rate_limited"), (503, "unavailable")])
@pytest.mark.parametrize("retry_after, seconds", [("7200", 7200.0), ("Sat, 01 Mar 2025 15:00:00 GMT", 10800.0)])
def test_retry_after_is_honoured_in_both_forms(status, error_class, retry_after, seconds):
    st = err(fresh(), error_class, status, headers={"retry-after": retry_after})
    assert st.next_check_reason == "retry-after"
    assert st.next_check_at == NOW + timedelta(seconds=seconds)


def test_bozo_is_recorded_without_counting_as_a_failure():
    body = hostile.rss_document(b"<item><guid>a</guid><link>https://x.example/a</link></item><item><title>&x;")
    st, new = T.on_feed(fresh(), parse_feed(body, url=URL, content_type=None, max_entries=5), body_hash="h",
                        headers={}, status=200, now=NOW, policy=POLICY, rand=0.0)
    assert len(new) == 1 and st.consecutive_errors == 0 and st.last_error_class == "parse"


# --- redirects --------------------------------------------------------------------------------------------------
def test_a_permanent_redirect_seen_three_polls_in_a_row_moves_the_feed():
    st, target = fresh(), "https://news.example/new.xml"
    moved = []
    for _ in range(T.PERMANENT_REDIRECT_POLLS):
        st, m = T.on_redirects(st, permanent=True, final_url=target, redirected=True)
        moved.append(m)
    assert moved == [None, None, target] and st.url == target


@pytest.mark.parametrize("sequence", [
    [(True, "https://n.example/a"), (False, "https://n.example/a"), (True, "https://n.example/a")],  # a 302 between
    [(True, "https://n.example/a"), (True, "https://n.example/b"), (True, "https://n.example/a")],  # target changed
])
def test_temporary_or_inconsistent_redirects_never_move_the_feed(sequence):
    st = fresh()
    for permanent, target in sequence * 2:
        st, moved = T.on_redirects(st, permanent=permanent, final_url=target, redirected=True)
        assert moved is None
    assert st.url == URL


def test_re_adding_a_retired_feed_reactivates_it_and_a_moved_definition_repoints_the_state():
    d = S.FeedDefinition(id="f1", url=URL, added_url=URL, added_at=NOW)
    st = err(fresh(), "gone", 410)
    assert T.reconcile(st, d).health == "retired"
    again = d.model_copy(update={"reset_at": NOW + timedelta(days=1)})
    assert T.reconcile(st, again).health == "active"
    st2, _ = poll(fresh(), ("a", "A"), headers={"etag": '"v1"'})
    moved = T.reconcile(st2, T.moved_definition(d, "https://news.example/v2.xml", NOW))
    assert moved.url == "https://news.example/v2.xml" and moved.etag is None and moved.seen == st2.seen
