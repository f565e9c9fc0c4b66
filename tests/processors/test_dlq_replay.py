"""``dlq replay`` per stage: the rules table (no Kafka), then the poller's dead letters on the real local
Kafka and a FixtureSite: a page dead letter is fetched again (or re-queued with its new reason), feed-table
poison is refused. Processor dead letters: tests/processors/test_processor_kafka.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from ingest.poller import Poller
from ingest.store import definition_for, put_definition
from newsflow.kafka_io import make_producer
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from newsflow.stage.deadletters import (
    FEED_TABLE_POISON, H_STAGE, H_TOPIC, NO_TOPIC, Refetch, Refuse, Resend, replay_action,
)
from processors.dlq import list_dead, replay
from tests.processors.kafka_helpers import header_map, read_topic
from tests.support import hostile
from tests.support.feeds import rss
from tests.support.stages import newsflow

PAGE = hostile.page_html("Harbour wall", "The harbour wall of Eastvale will be rebuilt next spring. " * 5)
THREE_DAYS_AGO = timedelta(days=3)


# --- the rules (no Kafka) ---------------------------------------------------------------------------------
def _dead(headers: dict[str, str], value: bytes) -> ConsumerRecord:
    hs = [(k, v.encode()) for k, v in headers.items()]
    return ConsumerRecord("articles.dlq", 0, -1, 0, 0, 0, b"k", value, hs, None, 1, len(value), -1)


def _page(body: bytes) -> bytes:
    url = "https://council.example/items/1"
    return RawArticle(id="a" * 64, url=url, canonical_url=url, final_url=url, fetched_at=datetime.now(UTC),
                      first_seen_at=datetime.now(UTC), body_b64=RawArticle.encode_body(body)).to_bytes()


_S = Settings(metrics_port=0)
RULES = [
    # (nf-stage, nf-topic, value) -> action
    ("processor", _S.topic_raw, b"not json", Resend(_S.topic_raw)),
    ("indexer", _S.topic_enriched, b"{}", Resend(_S.topic_enriched)),
    (None, _S.topic_raw, b"x", Resend(_S.topic_raw)),
    ("poller", _S.topic_raw, _page(b""), Refetch),
    ("poller", _S.topic_raw, _page(b"<html>kept</html>"), Resend(_S.topic_raw)),
    ("poller", _S.topic_raw, b"{not json", Refuse),
    ("poller", _S.topic_feeds, b"{not json", Refuse(FEED_TABLE_POISON)),
    ("poller", _S.topic_feed_state, b"[]", Refuse(FEED_TABLE_POISON)),
    ("processor", _S.topic_feed_state, b"[]", Refuse(FEED_TABLE_POISON)),
    ("poller", "somewhere.else", b"x", Refuse),
    ("processor", None, b"x", Refuse(NO_TOPIC)),
    ("processor", "", b"x", Refuse(NO_TOPIC)),
]


@pytest.mark.parametrize(("stage", "topic", "value", "expected"), RULES)
def test_replay_action_per_stage(stage, topic, value, expected):
    headers = {k: v for k, v in ((H_STAGE, stage), (H_TOPIC, topic)) if v is not None}
    action = replay_action(_dead(headers, value), _S)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected
    if isinstance(action, Refetch):
        assert action.page.url == "https://council.example/items/1" and action.page.body_b64 == ""


# --- the poller's dead letters on the real Kafka -------------------------------------------------------------
def _page_dead_letter(site, make_settings, **overrides) -> tuple[Settings, RawArticle]:
    """A feed whose one page 404s, polled by a real poller whose clock runs three days behind (so the
    dead letter's first_seen_at cannot be confused with the time of the replay)."""
    site.add("/feed.xml", rss("Eastvale Post", [{"link": site.url("/a"), "title": "Harbour wall", "guid": "a"}]),
             content_type="application/rss+xml")
    s = make_settings(topic_partitions=1, **overrides)
    producer = make_producer(s)
    put_definition(producer, s, definition_for(site.url("/feed.xml")))
    producer.flush()
    producer.close()
    Poller(s, clock=lambda: datetime.now(UTC) - THREE_DAYS_AGO).run(once=True)
    [dead] = read_topic(s, s.topic_dlq)
    h = header_map(dead)
    assert (h["nf-stage"], h["nf-error-class"], h["nf-topic"]) == ("poller", "page_http_404", s.topic_raw)
    page = RawArticle.from_bytes(dead.value)
    assert page.body_b64 == "" and page.first_seen_at < datetime.now(UTC) - timedelta(days=2)
    return s, page


@pytest.mark.integration
def test_a_page_dead_letter_whose_page_is_back_is_fetched_again_into_articles_raw(site, make_settings):
    s, dead = _page_dead_letter(site, make_settings)
    site.add("/a", PAGE)

    result = replay(s)
    assert (result.refetched, result.replayed, result.kept) == (1, 1, 0)
    [record] = read_topic(s, s.topic_raw)
    raw = RawArticle.from_bytes(record.value)
    assert raw.body == PAGE.encode() and raw.status == 200 and raw.url == site.url("/a")
    assert raw.first_seen_at == dead.first_seen_at  # the dead letter's, three days old
    assert raw.fetched_at > dead.first_seen_at + timedelta(days=2)
    assert raw.entry.guid == "a" and raw.feed_url == dead.feed_url and raw.feed_title == "Eastvale Post"
    assert record.key == raw.id.encode() and not any(k.startswith("nf-") for k in header_map(record))
    assert list_dead(s) == []  # handled: not pending any more
    assert replay(s).replayed == 0 and len(read_topic(s, s.topic_raw)) == 1  # never twice


@pytest.mark.integration
def test_a_page_dead_letter_whose_page_still_404s_is_requeued_and_stays_pending(site, make_settings):
    s, dead = _page_dead_letter(site, make_settings)
    hits = site.hits("/a")

    result = replay(s)
    assert site.hits("/a") == hits + 1  # fetched again, by the poller's fetcher
    assert result.replayed == 0 and result.still_dead == {"page_http_404": 1} and result.kept == 1
    assert read_topic(s, s.topic_raw) == []
    [pending] = list_dead(s)
    assert (pending.stage, pending.error_class, pending.topic, pending.attempts) == (
        "poller", "page_http_404", s.topic_raw, 2)
    assert "HTTP 404" in (pending.message or "")
    requeued = RawArticle.from_bytes(read_topic(s, s.topic_dlq)[-1].value)
    assert requeued.body_b64 == "" and requeued.first_seen_at == dead.first_seen_at

    # Still replayable: once the page is back, the next replay fetches it, first_seen_at unchanged.
    site.add("/a", PAGE)
    assert replay(s).refetched == 1 and list_dead(s) == []
    [raw] = [RawArticle.from_bytes(r.value) for r in read_topic(s, s.topic_raw)]
    assert raw.body == PAGE.encode() and raw.first_seen_at == dead.first_seen_at


@pytest.mark.integration
def test_a_page_robots_txt_now_disallows_is_not_fetched_and_its_dead_letter_stays_as_it_was(site, make_settings):
    s, _dead = _page_dead_letter(site, make_settings, respect_robots=True)
    [before] = read_topic(s, s.topic_dlq)
    site.add("/robots.txt", "User-agent: *\nDisallow: /a\n", content_type="text/plain")
    site.add("/a", PAGE)
    hits = site.hits("/a")

    result = replay(s)
    assert result.not_fetched == {"skipped robots_disallowed": 1} and result.replayed == 0
    assert site.hits("/a") == hits and read_topic(s, s.topic_raw) == []
    [pending] = list_dead(s)
    after = read_topic(s, s.topic_dlq)[-1]
    assert pending.offset == after.offset > before.offset
    assert (after.key, after.value, after.headers) == (before.key, before.value, before.headers)  # the original

@pytest.mark.integration
def test_feed_table_poison_is_refused_and_stays_pending(site, tmp_path, make_settings):
    s, _dead = _page_dead_letter(site, make_settings)
    producer = make_producer(s)
    producer.send(s.topic_feeds, key=b"garbage", value=b"{not json")
    producer.send(s.topic_feed_state, key=b"0123456789abcdef", value=b"[]")
    producer.flush()
    producer.close()
    Poller(s).run(once=True)  # dead-letters the poison, tombstones it in the tables
    assert sorted(d.error_class for d in list_dead(s)) == ["invalid_feed_definition", "invalid_feed_state",
                                                           "page_http_404"]
    tables = {t: len(read_topic(s, t)) for t in (s.topic_feeds, s.topic_feed_state)}

    log = tmp_path / "replay.log"
    assert newsflow(s, "dlq", "replay", stderr=log).wait(timeout=120) == 0
    out = " ".join(log.read_text().split())
    assert "refused: 2 feed-table poison records (a replay never writes into a feed table; fix the feed with " \
           "`newsflow feeds add URL`" in out
    assert "still dead: 1 page(s) (page_http_404: 1)" in out and "replayed 0 record(s); 3 left pending" in out
    assert sorted(d.error_class for d in list_dead(s)) == ["invalid_feed_definition", "invalid_feed_state",
                                                           "page_http_404"]
    assert {t: len(read_topic(s, t)) for t in tables} == tables  # nothing written back into a table

    result = replay(s, limit=5)
    assert sum(result.refused.values()) == 2 and result.refused[FEED_TABLE_POISON] == 2 and result.replayed == 0
    assert len(list_dead(s)) == 3


def test_replay_report_lines_name_every_action():
    from processors.commands import replay_report
    from processors.dlq import ReplayResult

    r = ReplayResult(refetched=1, unmatched=4)
    r.resent.update({"articles.raw": 2, "articles.enriched": 1})
    r.still_dead["page_http_404"] += 1
    r.not_fetched["retry timeout"] += 1
    r.refused[FEED_TABLE_POISON] += 2
    text = [line.plain for line in replay_report(r, _S)]
    assert text[0] == "replayed 4 record(s); 8 left pending"
    assert text[1:] == [
        "  resent: 3 (1 -> articles.enriched, 2 -> articles.raw)",
        f"  refetched: 1 page(s) fetched again -> {_S.topic_raw}",
        f"  still dead: 1 page(s) (page_http_404: 1), re-queued in {_S.topic_dlq} with the new reason",
        "  not fetched now: 1 page(s) (retry timeout: 1), left pending as they were",
        f"  refused: 2 {FEED_TABLE_POISON}, left pending",
        "  not matching the filters: 4 record(s), left pending",
    ]
