"""The dead-letter record, in one place: the headers every stage writes, how to read a dead letter
back, and what replaying one means (``replay_action``, ``replay_headers``).

A dead letter is the original record (key, value, its own headers) plus the bookkeeping headers
``nf-stage``, ``nf-error-class``, ``nf-error``, ``nf-topic``, ``nf-partition``, ``nf-offset`` and
``nf-attempts``. The poller's page dead letters have no original record: their value is the
RawArticle without its body, and they carry no ``nf-partition``/``nf-offset``.

Pure: no Kafka client here. Sending is the caller's (``send_dead_letters`` takes the producer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from newsflow import metrics
from newsflow.schema import RawArticle
from newsflow.stage.outcomes import DeadLetter

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from newsflow.settings import Settings

log = logging.getLogger(__name__)

H_STAGE = "nf-stage"
H_ERROR_CLASS = "nf-error-class"
H_ERROR = "nf-error"
H_TOPIC = "nf-topic"
H_PARTITION = "nf-partition"
H_OFFSET = "nf-offset"
H_ATTEMPTS = "nf-attempts"
# Dropped when a dead letter is sent back to its topic; ``nf-attempts`` is carried so the stage keeps counting.
_BOOKKEEPING = {H_STAGE, H_ERROR_CLASS, H_ERROR, H_TOPIC, H_PARTITION, H_OFFSET}
_NF_HEADERS = _BOOKKEEPING | {H_ATTEMPTS}
MAX_ERROR_BYTES = 2000

Headers = list[tuple[str, bytes]]


# --- writing ------------------------------------------------------------------------------------------


def build_headers(stage: str, reason: str, message: str, *, topic: str, attempts: int,
                  partition: int | None = None, offset: int | None = None, kept: Sequence[tuple[str, bytes]] = ()
                  ) -> Headers:
    """The headers of a dead letter: ``kept`` (the original record's own, bookkeeping removed), then ours."""
    where = [] if partition is None else [(H_PARTITION, str(partition).encode()), (H_OFFSET, str(offset).encode())]
    return [(k, v) for k, v in kept if k not in _NF_HEADERS] + [
        (H_STAGE, stage.encode()),
        (H_ERROR_CLASS, reason.encode()),
        (H_ERROR, message.encode("utf-8", "replace")[:MAX_ERROR_BYTES]),
        (H_TOPIC, topic.encode()),
        *where,
        (H_ATTEMPTS, str(attempts).encode()),
    ]


def dead_letter_headers(stage: str, dead: DeadLetter) -> Headers:
    r = dead.record
    return build_headers(stage, dead.reason, dead.message, topic=r.topic, partition=r.partition, offset=r.offset,
                         attempts=dead.attempts, kept=r.headers or ())


def send_dead_letters(producer: KafkaProducer, topic: str, stage: str, dead: Sequence[DeadLetter]) -> list[Any]:
    """Send (not flush) the dead letters; returns the send futures for callers that must know."""
    futures = []
    for d in dead:
        futures.append(producer.send(topic, key=d.record.key, value=d.record.value or b"",
                                     headers=dead_letter_headers(stage, d)))
        metrics.DEAD_LETTERS.labels(stage, d.reason).inc()
        log.warning(
            "dead-lettered %s/%s@%s: %s: %s",
            d.record.topic, d.record.partition, d.record.offset, d.reason, d.message[:300],
            extra={"article_id": (d.record.key or b"").decode("ascii", "replace"), "stage": stage},
        )
    return futures


# --- reading ------------------------------------------------------------------------------------------


def header(record: Any, name: str) -> bytes | None:
    for k, v in record.headers or ():
        if k == name:
            return v
    return None


def header_text(record: Any, name: str) -> str | None:
    value = header(record, name)
    return value.decode("utf-8", "replace") if value is not None else None


def header_int(record: Any, name: str) -> int | None:
    value = header_text(record, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def attempts_so_far(record: Any) -> int:
    """The attempts a record has had (``nf-attempts`` of a replayed record; 0 for a fresh one)."""
    return header_int(record, H_ATTEMPTS) or 0


@dataclass(frozen=True)
class DeadRecord:
    """One DLQ record, as ``dlq list`` shows it."""

    partition: int
    offset: int
    timestamp: datetime | None
    stage: str | None
    error_class: str | None
    message: str | None
    topic: str | None
    original_partition: int | None
    original_offset: int | None
    attempts: int
    key: str | None
    value_bytes: int

    @classmethod
    def of(cls, record: Any) -> DeadRecord:
        ts = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC) if record.timestamp and record.timestamp > 0 else None
        return cls(
            partition=record.partition, offset=record.offset, timestamp=ts,
            stage=header_text(record, H_STAGE), error_class=header_text(record, H_ERROR_CLASS),
            message=header_text(record, H_ERROR), topic=header_text(record, H_TOPIC),
            original_partition=header_int(record, H_PARTITION), original_offset=header_int(record, H_OFFSET),
            attempts=attempts_so_far(record),
            key=record.key.decode("utf-8", "replace") if record.key else None,
            value_bytes=len(record.value or b""),
        )

    def as_json(self) -> dict:
        out = self.__dict__.copy()
        out["timestamp"] = self.timestamp.isoformat() if self.timestamp else None
        return out


# --- replaying ----------------------------------------------------------------------------------------


def replay_headers(record: Any) -> Headers:
    """The record's own headers plus ``nf-attempts``; the DLQ bookkeeping is dropped."""
    return [(k, v) for k, v in (record.headers or ()) if k not in _BOOKKEEPING]


def dead_again_headers(dead_letter: Any, new_headers: Sequence[tuple[str, bytes]]) -> Headers:
    """A replayed dead letter that is dead again: its new headers, ``nf-attempts`` one more than the old one's."""
    attempts = str(attempts_so_far(dead_letter) + 1).encode()
    return [(k, v) for k, v in new_headers if k != H_ATTEMPTS] + [(H_ATTEMPTS, attempts)]


@dataclass(frozen=True)
class Resend:
    """Send the record back to ``topic`` as it is: its value is the original record."""

    topic: str


@dataclass(frozen=True)
class Refetch:
    """Fetch the page of a poller page dead letter again (``page`` is the dead letter, without body)."""

    page: RawArticle


@dataclass(frozen=True)
class Refuse:
    """Sent nowhere: the record stays pending, and ``why`` is reported."""

    why: str


Action = Resend | Refetch | Refuse

FEED_TABLE_POISON = ("feed-table poison records (a replay never writes into a feed table; fix the feed with "
                     "`newsflow feeds add URL`, the poller rebuilds its state)")
NO_TOPIC = "records without an original topic (no nf-topic header): nowhere to send them"


def replay_action(record: Any, settings: Settings) -> Action:
    """The replay rules, per stage, in order:

    ===========================================================  ==========================================
    dead letter                                                  action
    ===========================================================  ==========================================
    ``nf-topic`` empty or absent                                 refuse (``NO_TOPIC``)
    ``nf-topic`` is a feed table (any stage)                     refuse (``FEED_TABLE_POISON``)
    poller, ``nf-topic`` = ``topic_raw``, RawArticle, no body    refetch the page
    poller, ``nf-topic`` = ``topic_raw``, RawArticle with body   resend
    poller, anything else                                        refuse
    processor, indexer, any other stage                          resend (the value is the original record)
    ===========================================================  ==========================================
    """
    target = header_text(record, H_TOPIC)
    if not target:
        return Refuse(NO_TOPIC)
    if target in (settings.topic_feeds, settings.topic_feed_state):
        return Refuse(FEED_TABLE_POISON)
    if header_text(record, H_STAGE) != "poller":
        return Resend(target)
    if target != settings.topic_raw:
        return Refuse(f"poller records for {target} (the poller dead-letters only pages and feed-table poison)")
    try:
        page = RawArticle.from_bytes(record.value or b"")
    except ValidationError:
        return Refuse("poller page dead letters that are not a RawArticle (nothing to fetch again)")
    return Refetch(page) if not page.body_b64 else Resend(target)
