"""The dead-letter record (``newsflow.stage.deadletters``): the headers written, read back, and the
replay's header rules. Pure: no Kafka."""

from __future__ import annotations

from newsflow.stage.deadletters import (
    H_ATTEMPTS, H_ERROR, H_ERROR_CLASS, H_OFFSET, H_PARTITION, H_STAGE, H_TOPIC, MAX_ERROR_BYTES, DeadRecord,
    attempts_so_far, build_headers, dead_again_headers, dead_letter_headers, replay_headers,
)
from newsflow.stage.outcomes import DeadLetter
from tests.stage.fakes import Rec


def test_a_stage_dead_letter_keeps_the_records_own_headers_and_replaces_old_bookkeeping():
    replayed = Rec("articles.raw", 3, 41, b"id", b"v", headers=(
        ("trace", b"t1"), (H_STAGE, b"processor"), (H_ERROR_CLASS, b"old"), (H_ATTEMPTS, b"2")))
    headers = dead_letter_headers("processor", DeadLetter(replayed, "empty_extraction", "no text", 3))
    assert headers == [
        ("trace", b"t1"), (H_STAGE, b"processor"), (H_ERROR_CLASS, b"empty_extraction"), (H_ERROR, b"no text"),
        (H_TOPIC, b"articles.raw"), (H_PARTITION, b"3"), (H_OFFSET, b"41"), (H_ATTEMPTS, b"3"),
    ]


def test_a_page_dead_letter_has_no_origin_offset_and_a_capped_message():
    headers = build_headers("poller", "page_http_404", "é" * 5000, topic="articles.raw", attempts=1)
    assert [k for k, _v in headers] == [H_STAGE, H_ERROR_CLASS, H_ERROR, H_TOPIC, H_ATTEMPTS]
    assert len(dict(headers)[H_ERROR]) <= MAX_ERROR_BYTES


def test_a_dead_letter_reads_back_as_it_was_written():
    original = Rec("articles.enriched", 1, 7, b"abc", b"{}")
    dead = Rec("articles.dlq", 0, 99, b"abc", b"{}", timestamp=1_700_000_000_000,
               headers=tuple(dead_letter_headers("indexer", DeadLetter(original, "id_mismatch", "forged", 2))))
    r = DeadRecord.of(dead)
    assert (r.stage, r.error_class, r.message, r.topic) == ("indexer", "id_mismatch", "forged", "articles.enriched")
    assert (r.original_partition, r.original_offset, r.attempts, r.key) == (1, 7, 2, "abc")
    assert r.as_json()["timestamp"].startswith("2023-11-14")


def test_replay_keeps_only_the_records_own_headers_and_the_attempts():
    dead = Rec("articles.dlq", 0, 5, b"k", b"v", headers=tuple(
        build_headers("processor", "boom", "x", topic="articles.raw", partition=0, offset=4, attempts=3,
                      kept=[("trace", b"t")])))
    assert replay_headers(dead) == [("trace", b"t"), (H_ATTEMPTS, b"3")]
    assert attempts_so_far(Rec("t", 0, 0, b"", b"", headers=((H_ATTEMPTS, b"junk"),))) == 0


def test_a_refetched_page_dead_again_counts_one_more_attempt_than_its_old_dead_letter():
    old = Rec("articles.dlq", 0, 5, b"k", b"v", headers=((H_ATTEMPTS, b"2"),))
    new = build_headers("poller", "page_http_404", "gone", topic="articles.raw", attempts=1)
    again = dead_again_headers(old, new)
    assert again[-1] == (H_ATTEMPTS, b"3") and [k for k, _v in again].count(H_ATTEMPTS) == 1
