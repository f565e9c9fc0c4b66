"""Pure parts of the indexer and the search: no Kafka, no Elasticsearch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from newsflow.elastic import check_generation, generations, index_name, month_of, split_index
from newsflow.stage.outcomes import Batch, DeadLetter, Drop, Out, Quarantine
from processors.index.bulk import BulkItem, classify, durable_offsets, error_text, record_key
from processors.index.indexer import Indexer
from processors.index.search import Filters, build_aggs, build_query, build_sort, marked, parse_when
from tests.processors.index.helpers import make_article


def rec(offset: int, value: bytes | None = b"{}", partition: int = 0, topic: str = "t") -> ConsumerRecord:
    return ConsumerRecord(topic=topic, partition=partition, leader_epoch=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"k", value=value, headers=[], checksum=None,
                          serialized_key_size=1, serialized_value_size=2, serialized_header_size=0)


# --- classification --------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "error", "outcome"), [
    (201, None, "ok"),
    (200, None, "ok"),
    (409, {"type": "version_conflict_engine_exception"}, "duplicate"),
    (429, {"type": "es_rejected_execution_exception"}, "retry"),
    (503, {"type": "unavailable_shards_exception"}, "retry"),
    (400, {"type": "document_parsing_exception", "reason": "failed to parse field [word_count]"}, "permanent"),
    (400, {"type": "mapper_parsing_exception"}, "permanent"),
    (400, {"type": "strict_dynamic_mapping_exception"}, "permanent"),
    (400, {"type": "illegal_argument_exception", "reason": "immense term"}, "permanent"),
    (400, "whole request failed: ApiError(400)", "retry"),  # not an item verdict
    (404, {"type": "index_not_found_exception"}, "retry"),
    (403, {"type": "cluster_block_exception"}, "retry"),
    (500, {"type": "something_new"}, "retry"),
    (429, "TransportError(429)", "retry"),
])
def test_classify(status, error, outcome):
    assert classify(status, error) == outcome


def test_error_text_follows_the_cause_chain():
    reason, message = error_text({"type": "document_parsing_exception", "reason": "failed to parse field",
                                  "caused_by": {"type": "input_coercion_exception", "reason": "out of range"}})
    assert reason == "document_parsing_exception"
    assert "failed to parse field" in message and "input_coercion_exception: out of range" in message
    assert error_text("boom") == ("es_error", "boom")


# --- what may be committed ---------------------------------------------------------------------------
def test_durable_offsets_stop_at_the_first_record_not_yet_durable():
    records = [rec(10), rec(11), rec(12), rec(5, partition=1), rec(6, partition=1), rec(7, partition=2)]
    outs = [(r, Out(b"k", b"v")) for r in records if r.offset != 11]
    batch = Batch(records=records, outputs=outs, dead=[DeadLetter(records[1], "invalid_article", "x", 1)])
    # partition 0: 10 acked, 11 (dead letter) not sent yet, 12 acked -> only 10 is committable
    # partition 1: nothing acked -> absent; partition 2: all acked -> 8
    done = {record_key(records[0]), record_key(records[2]), record_key(records[5])}
    assert durable_offsets(batch, done) == {
        TopicPartition("t", 0): (11, "", -1),
        TopicPartition("t", 2): (8, "", -1),
    }
    done.add(record_key(records[1]))
    assert durable_offsets(batch, done)[TopicPartition("t", 0)].offset == 13


def test_dropped_records_count_as_durable():
    records = [rec(1), rec(2), rec(3)]
    batch = Batch(records=records, outputs=[(records[2], Out(b"k", b"v"))])  # records 1 and 2 were dropped
    assert durable_offsets(batch, set()) == {TopicPartition("t", 0): (3, "", -1)}


# --- the transform -------------------------------------------------------------------------------
def test_indexer_turns_an_article_into_one_bulk_item():
    a = make_article(first_seen_at=datetime(2024, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2))))
    item = out = Indexer().process(rec(0, a.to_bytes()))
    assert isinstance(item, BulkItem)  # typed: the sink writes it as it is
    assert out.key == a.id.encode()
    assert item.month == "2024.04"  # the UTC month of first_seen_at
    assert item.version == int(a.processed_at.timestamp() * 1000)
    header, body = item.action("articles-v2", b"2024-05-01T00:00:00+00:00")
    assert header == {"index": {"_index": "articles-v2-2024.04", "_id": a.id, "version": item.version,
                                "version_type": "external"}}
    doc = json.loads(body)
    assert doc.pop("indexed_at") == "2024-05-01T00:00:00+00:00"
    assert doc == json.loads(a.to_bytes())


@pytest.mark.parametrize(("value", "error"), [
    (b"{not json", Quarantine), (b"\xff\xfe", Quarantine), (b'{"schema_version": 99}', Quarantine),
    (None, Drop),
])
def test_indexer_rejects_what_is_not_an_article(value, error):
    with pytest.raises(error):
        Indexer().process(rec(0, value))


def test_indexer_writes_a_v1_record_as_today_s_article_and_other_records_as_they_came():
    a = make_article(authors=["Jane Roe"])
    v1 = {k: v for k, v in json.loads(a.to_bytes()).items() if k != "authors"} | {"schema_version": 1,
                                                                                  "author": "Jane Roe"}
    item = Indexer().process(rec(0, json.dumps(v1).encode()))
    assert json.loads(item.value) == json.loads(a.to_bytes())  # "author" became "authors", version 2
    # A field the Article does not know is not the indexer's to judge: the strict mapping refuses it
    # (tests/processors/index/test_indexer_es.py), with Elasticsearch's reason in the dead letter.
    extra = a.to_bytes()[:-1] + b',"colour":"red"}'
    assert Indexer().process(rec(0, extra)).value == extra


def test_indexer_rejects_an_id_that_is_not_the_url_hash():
    a = make_article()
    forged = json.loads(a.to_bytes()) | {"id": "0" * 64}
    with pytest.raises(Quarantine, match="id_mismatch"):
        Indexer().process(rec(0, json.dumps(forged).encode()))


# --- naming ------------------------------------------------------------------------------------------
def test_index_naming_and_generations():
    assert month_of(datetime(2024, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "2023.12"
    assert month_of(datetime(2024, 1, 1, 0, 30)) == "2024.01"  # naive = UTC
    assert index_name("articles", datetime(2024, 3, 5, tzinfo=UTC)) == "articles-2024.03"
    assert split_index("articles-v2-2024.03") == ("articles-v2", "2024.03")
    assert split_index("articles") is None
    assert generations(["articles-2024.03", "articles-v2-2024.04", "other"]) == {"articles", "articles-v2"}
    assert check_generation("articles", "articles-v2") == "articles-v2"
    for bad in ["other-v2", "Articles-V2", "articles-", "articles-2024.03", "articles v2", "articles*"]:
        with pytest.raises(ValueError):
            check_generation("articles", bad)


# --- search, pure parts ---------------------------------------------------------------------------------
NOW = datetime(2024, 4, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - timedelta(days=7)), ("12h", NOW - timedelta(hours=12)), ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)), ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
    ("2024-03-01T10:00:00+02:00", datetime(2024, 3, 1, 8, tzinfo=UTC)),
])
def test_parse_when(text, expected):
    assert parse_when(text, NOW) == expected


def test_until_a_date_includes_that_day():
    assert parse_when("2024-03-01", NOW, end_of_day=True) == datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_when("last tuesday", NOW)


def test_build_query_filters():
    q = build_query("harbour", Filters(languages=("en", "de"), persons=("A", "B"), sources=("x.org",),
                                       since=NOW, stories=("s1",)))
    must, flt = q["bool"]["must"], q["bool"]["filter"]
    assert must[0]["simple_query_string"]["query"] == "harbour"
    terms = json.dumps(flt)
    assert terms.count('"case_insensitive": true') == 2 + 2 + 3 + 1  # langs, persons, 3 source fields, story
    persons = [f for f in flt if "term" in f and "persons" in f["term"]]
    assert [p["term"]["persons"]["value"] for p in persons] == ["A", "B"]  # all of them
    assert build_query("") == {"match_all": {}}
    assert build_sort("newest")[0] == {"published_at": {"order": "desc", "missing": "_last"}}
    with pytest.raises(ValueError):
        build_sort("random")


def test_access_filter_and_facet():
    q = build_query("", Filters(access=("paywalled",)))
    assert q["bool"]["filter"] == [{"bool": {"should": [
        {"term": {"access": {"value": "paywalled", "case_insensitive": True}}}], "minimum_should_match": 1}}]
    unknown = json.dumps(build_query("", Filters(access=("unknown",))))
    assert '"must_not": [{"exists": {"field": "access"}}]' in unknown  # indexed before the field existed
    aggs = build_aggs(5)
    assert aggs["access"] == {"terms": {"field": "access", "size": 5, "missing": "unknown"}}
    assert "missing" not in aggs["languages"]["terms"]


def test_marked_highlights_only_the_marked_spans():
    t = marked("a <mark>b</mark> [not markup] <mark>c</mark>")
    assert t.plain == "a b [not markup] c"
    assert [(t.plain[s.start:s.end]) for s in t.spans] == ["b", "c"]


def test_the_indexer_s_head_check_types_its_fields_as_the_article_does():
    """``ArticleHead`` is a subset of ``Article``: same names, same types, so the two cannot drift apart."""
    from newsflow.schema import Article, ArticleHead

    for name, head_field in ArticleHead.model_fields.items():
        assert name in Article.model_fields
        assert head_field.annotation == Article.model_fields[name].annotation, name
        assert Article.model_fields[name].is_required() or name == "schema_version", name
