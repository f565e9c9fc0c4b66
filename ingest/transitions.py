"""The pure transitions of a feed's state: (state, what happened, now, policy, rand) -> new state.

The poller and its feed jobs do the I/O and call them (``ingest.feed_poll``, ``ingest.poller``); the
tests call them directly. The records themselves are in ``ingest.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ingest import schedule
from ingest.parse import EntryRef, ParsedFeed, page_article_id
from ingest.state import FeedDefinition, FeedState, Policy, SeenEntry, epoch, from_epoch, new_state

VERIFY_EVERY = 10  # after this many 304s in a row, one unconditional GET checks the validators
PERMANENT_REDIRECT_POLLS = 3  # a 301/308 seen on this many polls in a row moves the feed
SEEN_KEEP_S = 30 * 86400  # seen entries absent from the feed this long are forgotten ...
SEEN_MIN_CAP = 1000  # ... and never more than max(2 * max_entries, this) are kept
PENDING_SUMMARY_CHARS = 500


def reconcile(state: FeedState | None, definition: FeedDefinition) -> FeedState:
    """The state to poll ``definition`` with: fresh for a new feed; reactivated when the definition was
    re-added after the feed retired; pointed at the definition's URL when that changed."""
    if state is None:
        return new_state(definition)
    update: dict = {}
    if state.retired_at and definition.reset_at and definition.reset_at > state.retired_at:
        update |= {"retired_at": None, "retired_reason": None, "consecutive_errors": 0, "next_check_at": None,
                   "next_check_reason": "reactivated"}
    if state.url != definition.url:
        update |= {"url": definition.url, "etag": None, "last_modified": None, "redirect_target": None,
                   "redirect_streak": 0, "next_check_at": None}
    return state.model_copy(update=update) if update else state


def conditional_headers(state: FeedState) -> dict[str, str]:
    """If-None-Match / If-Modified-Since, unless the validators lied before, a verification is due, or the
    feed is a sitemap index (a 304 for the index says nothing about the child sitemaps; the hash of all
    the documents read tells whether anything changed)."""
    if state.validators_ignored or state.not_modified_streak >= VERIFY_EVERY or state.sitemap_index:
        return {}
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _strip_weak(tag: str | None) -> str | None:
    if tag is None:
        return None
    tag = tag.strip()
    return tag[2:] if tag.startswith(("W/", "w/")) else tag


def _schedule_success(state: FeedState, *, now: datetime, policy: Policy, rand: float, new: int, total: int,
                      dates: list[datetime], server_terms: dict[str, float]) -> dict:
    interval = schedule.adapt_policy(
        state.policy_interval_s, default_s=policy.default_s, new=new, total=total, dates=dates, now=now,
        min_s=policy.min_s, max_s=policy.max_s,
    )
    nxt = schedule.next_check(now, own_term=("policy", interval), server_terms=server_terms,
                              jitter=schedule.POLICY_JITTER, rand=rand, min_s=policy.min_s, max_s=policy.max_s)
    return {"policy_interval_s": interval, "next_check_at": nxt.at, "next_check_reason": nxt.reason}


def _success_common(now: datetime, status: int) -> dict:
    return {"last_checked_at": now, "last_success_at": now, "consecutive_errors": 0, "last_status": status,
            "updated_at": now}


def on_not_modified(state: FeedState, *, headers, now: datetime, policy: Policy, rand: float,
                    status: int = 304) -> FeedState:
    """A 304 (or a 200 whose body hash did not change). A 304 whose ETag differs from the one we sent
    is a lie ("unchanged" about another entity): validators are ignored from then on and the feed is
    polled again at once, unconditionally."""
    sent = _strip_weak(state.etag)
    got = _strip_weak(headers.get("etag"))
    update = _success_common(now, status)
    if status == 304 and sent and got and got != sent:
        return state.model_copy(update=update | {
            "validators_ignored": True,
            "validators_note": f"{now:%Y-%m-%d}: answered 304 to If-None-Match {sent} with ETag {got}",
            "next_check_at": now, "next_check_reason": "validators-ignored",
        })
    dates = [from_epoch(d) for d in state.entry_dates]
    update |= _schedule_success(state, now=now, policy=policy, rand=rand, new=0, total=state.entries_last,
                                dates=dates, server_terms=schedule.header_terms(headers, now))
    streak = state.not_modified_streak + 1 if status == 304 else 0
    update |= {"not_modified_streak": streak, "new_last": 0}
    if status != 304:
        update |= _validators(state, headers)
    return state.model_copy(update=update)


def _validators(state: FeedState, headers) -> dict:
    if state.validators_ignored:
        return {"etag": None, "last_modified": None}
    return {"etag": headers.get("etag"), "last_modified": headers.get("last-modified")}


def validators_lied(state: FeedState, *, headers, body_hash: str) -> str | None:
    """Why the validators cannot be trusted, when a changed body comes with the stored ETag or Last-Modified
    (so a conditional GET would have been answered 304 although the feed changed). None otherwise."""
    if not state.body_hash or state.body_hash == body_hash or state.validators_ignored:
        return None
    etag, lm = _strip_weak(headers.get("etag")), headers.get("last-modified")
    if etag and etag == _strip_weak(state.etag):
        return f"body changed but ETag {etag} did not"
    if lm and lm == state.last_modified:
        return f"body changed but Last-Modified {lm} did not"
    return None


def on_feed(state: FeedState, parsed: ParsedFeed, *, body_hash: str, headers, status: int, now: datetime,
            policy: Policy, rand: float) -> tuple[FeedState, list[EntryRef]]:
    """A feed body that changed: returns the new state and the entries whose pages must be fetched
    (new entries, and seen ones whose version changed). They are *pending* until ``record_page_outcomes``
    marks them seen after their record was delivered."""
    # A sitemap index's hash covers its children, which change under an unchanged index: no lie.
    lie = None if parsed.version == "sitemapindex" else validators_lied(state, headers=headers, body_hash=body_hash)
    ignored = state.validators_ignored or lie is not None
    note = f"{now:%Y-%m-%d}: {lie}" if lie else state.validators_note
    ts = epoch(now)
    seen = dict(state.seen)
    by_article = {i: k for k, e in seen.items() for i in (e.article, e.link) if i}
    pending = {p.key: p for p in state.pending}
    fresh: list[EntryRef] = []
    present: set[str] = set()
    for ref in parsed.entries:
        if ref.key in present:
            continue
        present.add(ref.key)
        known = seen.get(ref.key)
        if known is not None:
            seen[ref.key] = known.model_copy(update={"last_in_feed": ts})
            if known.version == ref.version:
                continue
        aid = page_article_id(ref)
        alias = by_article.get(aid[:16]) if aid and known is None else None
        if alias is not None and seen[alias].version == ref.version:
            # A new GUID for a page already fetched from this feed (GUIDs that change on every request).
            seen[ref.key] = seen[alias].model_copy(update={"last_in_feed": ts})
            continue
        if ref.page_url is None:  # nothing to fetch: the entry is seen as it is
            seen[ref.key] = SeenEntry(version=ref.version, first_seen=known.first_seen if known else ts, last_in_feed=ts)
            continue
        fresh.append(ref)
        old = pending.get(ref.key)
        pending[ref.key] = _slim(ref).model_copy(update={"attempts": old.attempts if old else 0})
    new = len(fresh)
    dates = parsed.dates
    terms = schedule.header_terms(headers, now)
    ttl = schedule.feed_ttl_s(parsed.ttl, parsed.sy_period, parsed.sy_frequency)
    if ttl:
        terms["ttl"] = ttl
    update = _success_common(now, status)
    update |= _schedule_success(state, now=now, policy=policy, rand=rand, new=new, total=len(present),
                                dates=dates, server_terms=terms)
    update |= {
        "title": parsed.title or state.title,
        "body_hash": body_hash,
        "sitemap_index": parsed.version == "sitemapindex",
        "validators_ignored": ignored,
        "validators_note": note,
        "not_modified_streak": 0,
        "entries_last": len(present),
        "new_last": new,
        "entry_dates": sorted((epoch(d) for d in dates), reverse=True)[: schedule.RATE_WINDOW],
        "seen": prune_seen(seen, present, now=now, cap=max(2 * policy.max_entries, SEEN_MIN_CAP)),
        "pending": list(pending.values())[: policy.max_entries],
    }
    if new:
        update["last_new_entry_at"] = now
    if parsed.bozo:
        update |= {"last_error_class": parsed.bozo_class, "last_error": parsed.bozo[:500], "last_error_at": now}
    update |= _validators(state.model_copy(update={"validators_ignored": ignored}), headers)
    return state.model_copy(update=update), fresh


def _slim(ref: EntryRef) -> EntryRef:
    if ref.summary and len(ref.summary) > PENDING_SUMMARY_CHARS:
        return ref.model_copy(update={"summary": ref.summary[:PENDING_SUMMARY_CHARS]})
    return ref


def prune_seen(seen: dict[str, SeenEntry], present: set[str], *, now: datetime, cap: int) -> dict[str, SeenEntry]:
    """Keep entries still in the feed, and absent ones for SEEN_KEEP_S; at most ``cap``, newest first."""
    horizon = epoch(now) - SEEN_KEEP_S
    kept = {k: e for k, e in seen.items() if k in present or e.last_in_feed >= horizon}
    if len(kept) <= cap:
        return kept
    ranked = sorted(kept.items(), key=lambda kv: (kv[0] in present, kv[1].last_in_feed), reverse=True)
    return dict(ranked[:cap])


def on_error(state: FeedState, *, error_class: str, message: str, status: int | None, headers, now: datetime,
             policy: Policy, rand: float) -> FeedState:
    """A failed poll. 410 retires the feed; everything else backs off (never dropped)."""
    base = {"last_checked_at": now, "last_status": status, "last_error_class": error_class,
            "last_error": message[:500], "last_error_at": now, "updated_at": now}
    if schedule.error_kind(error_class) == "gone":
        return state.model_copy(update=base | {
            "retired_at": now, "retired_reason": f"{status or ''} {message}".strip()[:500],
            "consecutive_errors": state.consecutive_errors + 1, "next_check_at": None,
            "next_check_reason": "retired",
        })
    errors = state.consecutive_errors + 1
    start = policy.min_s if schedule.error_kind(error_class) == "temporary" else (
        state.policy_interval_s or policy.default_s)
    terms: dict[str, float] = {}
    if headers is not None and error_class in ("rate_limited", "unavailable"):
        delay = schedule.parse_retry_after(headers.get("retry-after"), now)
        if delay is not None:
            terms["retry-after"] = delay
    nxt = schedule.next_check(now, own_term=("backoff", schedule.backoff_s(errors, start, policy.max_s)),
                              server_terms=terms, jitter=schedule.BACKOFF_JITTER, rand=rand,
                              min_s=policy.min_s, max_s=policy.max_s)
    return state.model_copy(update=base | {
        "consecutive_errors": errors, "next_check_at": nxt.at, "next_check_reason": nxt.reason,
    })


def on_redirects(state: FeedState, *, permanent: bool, final_url: str, redirected: bool) -> tuple[FeedState, str | None]:
    """Track permanent redirects. Returns (state, new URL) once a 301/308 chain led to the same target on
    PERMANENT_REDIRECT_POLLS polls in a row; a 302/307 anywhere in the chain (or no redirect) resets it."""
    if not (redirected and permanent):
        if state.redirect_streak or state.redirect_target:
            return state.model_copy(update={"redirect_streak": 0, "redirect_target": None}), None
        return state, None
    streak = state.redirect_streak + 1 if state.redirect_target == final_url else 1
    if streak >= PERMANENT_REDIRECT_POLLS:
        return state.model_copy(update={"redirect_streak": 0, "redirect_target": None, "url": final_url}), final_url
    return state.model_copy(update={"redirect_streak": streak, "redirect_target": final_url}), None


# --- pages ----------------------------------------------------------------------------------------
PageResult = Literal["delivered", "duplicate", "skipped", "dead", "retry"]


@dataclass(frozen=True)
class PageOutcome:
    ref: EntryRef
    result: PageResult
    reason: str
    article_id: str | None = None  # of the page (its canonical URL); the link id when it was not fetched
    first_seen: datetime | None = None
    message: str = ""
    link_id: str | None = None  # article_id of the entry's link

    def prefixes(self) -> set[str]:
        """The identity prefixes this outcome makes known (article id and link id)."""
        return {i[:16] for i in (self.article_id, self.link_id) if i}


def first_seen_for(state: FeedState, ref: EntryRef, article: str | None, now: datetime,
                   known_articles: dict[str, int] | None = None) -> datetime:
    """``first_seen_at`` for an entry's page: when this feed first saw the entry (or its page), else when
    another feed of this process did, else now. It never changes for an article once produced."""
    known = state.seen.get(ref.key)
    if known is not None:
        return from_epoch(known.first_seen)
    prefix = article[:16] if article else None
    if prefix:
        for e in state.seen.values():
            if prefix in (e.article, e.link):
                return from_epoch(e.first_seen)
        if known_articles and prefix in known_articles:
            return from_epoch(known_articles[prefix])
    return now.replace(microsecond=0)  # stored as epoch seconds: the same value on every later fetch


def record_page_outcomes(state: FeedState, outcomes: list[PageOutcome], *, delivered_ok: set[str],
                         now: datetime, policy: Policy) -> FeedState:
    """Mark entries seen once their fate is final, *after* the producer flushed (``delivered_ok`` holds
    the keys whose records were acknowledged). Retries stay pending until ``max_attempts``."""
    seen = dict(state.seen)
    pending = {p.key: p for p in state.pending}
    ts = epoch(now)
    page_error: dict = {}
    for o in outcomes:
        if o.result in ("dead", "retry"):
            page_error = {"last_page_error": f"{o.reason}: {o.ref.page_url}: {o.message}"[:500],
                          "last_page_error_at": now}
        key = o.ref.key
        if o.result in ("skipped", "duplicate") or (o.result in ("delivered", "dead") and key in delivered_ok):
            known = seen.get(key)
            first = known.first_seen if known else epoch(o.first_seen or now)
            a = o.article_id[:16] if o.article_id else None
            k = o.link_id[:16] if o.link_id and o.link_id[:16] != a else None
            seen[key] = SeenEntry(version=o.ref.version, first_seen=first, last_in_feed=ts, article=a, link=k)
            pending.pop(key, None)
        elif o.result == "retry" and key in pending:
            pending[key] = pending[key].model_copy(update={"attempts": pending[key].attempts + 1})
        # a record the producer could not deliver stays pending as it was: fetched again next time
    return state.model_copy(update={"seen": seen, "pending": list(pending.values()), "updated_at": now} | page_error)


def moved_definition(definition: FeedDefinition, new_url: str, now: datetime) -> FeedDefinition:
    return definition.model_copy(update={"url": new_url, "moved_from": definition.url, "moved_at": now})

