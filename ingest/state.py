"""Feed definitions and per-feed state: the records of the feed tables, and the scheduling policy.

Both live in compacted Kafka topics keyed by feed id (``ingest.store``): ``FeedDefinition`` in
``topic_feeds`` (written by ``newsflow feeds ...`` and by the poller when a feed moved permanently),
``FeedState`` in ``topic_feed_state`` (written by the poller that owns the feed). The pure transitions
from one state to the next are in ``ingest.transitions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.parse import EntryRef
from newsflow.settings import Settings

STATE_SCHEMA_VERSION = 1
STATE_MAX_BYTES = 900_000  # below the broker's default max.message.bytes of the state topic

Health = Literal["active", "backing-off", "retired"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def from_epoch(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True, exclude_defaults=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.model_validate_json(data)


class FeedDefinition(_Model):
    id: str
    url: str
    added_url: str
    title: str | None = None
    category: str | None = None
    added_at: datetime
    reset_at: datetime | None = None  # set by `feeds add` on a retired feed: the poller reactivates it
    moved_from: str | None = None
    moved_at: datetime | None = None


class SeenEntry(_Model):
    """An entry of the feed whose fate is final (its page delivered, dead-lettered, a duplicate, ...).

    Stored under one-letter keys (``v f l a k``): a state holds up to thousands of them below
    ``STATE_MAX_BYTES``, and the records stay what the previous release reads (a rollback loads them).
    Both the keys and the field names are read."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_alias=True, validate_by_name=True,
                              serialize_by_alias=True)

    version: str = Field(alias="v")  # the entry's version (``EntryRef.version``)
    first_seen: int = Field(alias="f")  # epoch seconds: RawArticle.first_seen_at
    last_in_feed: int = Field(alias="l")  # epoch seconds: the last poll that found the entry in the feed
    article: str | None = Field(None, alias="a")  # article id prefix (16 hex) of the page produced for it
    link: str | None = Field(None, alias="k")  # link id prefix (16 hex) of the entry's link, when not ``article``


class FeedState(_Model):
    schema_version: int = STATE_SCHEMA_VERSION
    feed_id: str
    url: str
    title: str | None = None
    # conditional GET
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    validators_ignored: bool = False
    validators_note: str | None = None
    not_modified_streak: int = 0
    sitemap_index: bool = False  # a sitemap index: always fetched in full (its children change, not it)
    # schedule
    last_checked_at: datetime | None = None
    last_success_at: datetime | None = None
    last_new_entry_at: datetime | None = None
    next_check_at: datetime | None = None
    next_check_reason: str | None = None
    policy_interval_s: float | None = None
    entry_dates: list[int] = Field(default_factory=list)
    # health
    consecutive_errors: int = 0
    last_status: int | None = None
    last_error_class: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    retired_at: datetime | None = None
    retired_reason: str | None = None
    # redirects
    redirect_target: str | None = None
    redirect_streak: int = 0
    # article pages of this feed that could not be fetched (dead-lettered, or pending a retry)
    last_page_error: str | None = None
    last_page_error_at: datetime | None = None
    # entries
    entries_last: int = 0
    new_last: int = 0
    seen: dict[str, SeenEntry] = Field(default_factory=dict)
    pending: list[EntryRef] = Field(default_factory=list)
    updated_at: datetime | None = None

    @property
    def health(self) -> Health:
        if self.retired_at is not None:
            return "retired"
        if self.consecutive_errors > 0:
            return "backing-off"
        return "active"

    def is_due(self, now: datetime) -> bool:
        return self.retired_at is None and (self.next_check_at is None or self.next_check_at <= now)

    def to_bytes(self) -> bytes:
        data = super().to_bytes()
        if len(data) <= STATE_MAX_BYTES:
            return data
        slim = self.model_copy(update={"pending": [p.model_copy(update={"summary": None}) for p in self.pending]})
        data = _Model.to_bytes(slim)
        if len(data) <= STATE_MAX_BYTES:
            return data
        keep = dict(sorted(self.seen.items(), key=lambda kv: kv[1].last_in_feed, reverse=True)[: len(self.seen) // 2])
        return _Model.to_bytes(slim.model_copy(update={"seen": keep}))


@dataclass(frozen=True)
class Policy:
    """The scheduling knobs, from Settings."""

    default_s: float
    min_s: float
    max_s: float
    max_entries: int
    max_attempts: int

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(s.poll_interval_s, s.poll_min_interval_s, s.poll_max_interval_s, s.max_entries_per_feed,
                   s.max_attempts)


def new_state(definition: FeedDefinition) -> FeedState:
    return FeedState(feed_id=definition.id, url=definition.url)
