"""``newsflow reprocess`` on the real local Kafka and Elasticsearch: index pages, change a rule,
reprocess, see the indexed documents replaced (none duplicated), and resume an interrupted run."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from newsflow.elastic import make_es
from newsflow.kafka_io import make_admin
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from newsflow.topology import ensure_topics, retention_ms
from processors.index.reindex import committed_offsets
from processors.processor import make_runner as make_processor
from processors.reprocess import Selection, group_for, reprocess, selection_label
from tests.processors.index.helpers import all_docs
from tests.processors.index.helpers import make_runner as make_indexer
from tests.processors.kafka_helpers import PEOPLE, TOWNS, produce, raw_record, read_topic, stable_end
from tests.support.stages import newsflow, wait_until

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def long_page(i: int) -> bytes:
    """A unique page whose main text is well over 1 KiB (so a smaller max_text_bytes shows)."""
    town, who = TOWNS[i % len(TOWNS)], PEOPLE[i % len(PEOPLE)]
    paras = "".join(
        f"<p>Paragraph {n} of report {i}: the council of {town} debated the harbour plan again, and {who} "
        f"said the vote on item {i} would come before the summer break, after the residents were heard.</p>"
        for n in range(14))
    return (f"<html lang='en'><head><title>Report {i} from {town}</title></head>"
            f"<body><article><h1>Report {i}</h1>{paras}</article></body></html>").encode()


def page_record(host: str, i: int, fetched: datetime | None = None) -> RawArticle:
    raw = raw_record(f"https://{host}/reports/{i}", long_page(i))
    return raw.model_copy(update={"fetched_at": fetched} if fetched else {})


def changed(s: Settings, **rule: object) -> Settings:
    """The same river with a processing rule changed (a new release, a new setting)."""
    return Settings(**({k: getattr(s, k) for k in Settings.model_fields} | rule))


def per_key(s: Settings) -> Counter[str]:
    return Counter(r.key.decode() for r in read_topic(s, s.topic_enriched))


@pytest.mark.parametrize(("since", "host", "raw", "selected"), [
    (None, None, page_record("a.example", 1), True),
    (NOW, None, page_record("a.example", 1, NOW - timedelta(seconds=1)), False),
    (NOW, None, page_record("a.example", 1, NOW), True),
    (None, "a.example", page_record("www.a.example", 1), True),
    (None, "www.A.example", page_record("a.example", 1), True),
    (None, "a.example", page_record("news.a.example", 1), True),
    (None, "a.example", page_record("ba.example", 1), False),
    (None, "a.example", page_record("b.example", 1), False),
])
def test_selection(since, host, raw, selected):
    assert Selection(since=since, host=host).matches(raw) is selected


def test_selection_label_names_the_group_as_typed():
    assert selection_label(None, None) == "all"
    assert selection_label("7d", "News.Example") == "since-7d-host-news.example"
    assert selection_label("2024-03-01T10:00:00+02:00", None) == "since-2024-03-01t10_00_00_02_00"


@pytest.mark.integration
def test_raw_retention_is_a_setting_applied_to_existing_topics(make_settings):
    s = make_settings(raw_retention_days=7)
    admin = make_admin(s)
    try:
        from kafka.admin import ConfigResource, ConfigResourceType

        def retention() -> str | None:  # a topic's configs show a moment after its creation
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.topic_raw)])
            return described["topic"].get(s.topic_raw, {}).get("retention.ms", {}).get("value")

        assert retention_ms(7) == str(7 * 24 * 3600 * 1000)
        wait_until(lambda: retention() == retention_ms(7), timeout=30, what="the topic's retention")
        assert ensure_topics(changed(s, raw_retention_days=-1)) == []  # nothing created: the topic exists
        wait_until(lambda: retention() == "-1", timeout=30, what="the retention set on the existing topic")
    finally:
        admin.close()


@pytest.mark.integration
def test_reprocess_after_a_rule_change_replaces_the_indexed_documents(make_settings):
    s = make_settings(enrich=False, extract_workers=1)
    pages = [page_record("a.example", i) for i in range(8)] + [page_record("b.example", i) for i in range(4)]
    produce(s, [(p.id.encode(), p.to_bytes()) for p in pages])
    make_processor(s).run(idle_exit_s=3)
    make_indexer(s).run(idle_exit_s=3)
    before = {d["_id"]: d for d in all_docs(s)}
    assert len(before) == 12 and all(len(d["text"].encode()) > 1500 for d in before.values())

    es = make_es(s)
    try:
        versions = {d: es.get(index=before[d]["_index"], id=d)["_version"] for d in before}
    finally:
        es.close()

    # The rule changes: texts are now cut at 1 KiB. Reprocess a.example, 3 pages first (--limit) ...
    s2 = changed(s, max_text_bytes=1024)
    only_a = Selection(host="a.example", label=selection_label(None, "a.example"))
    first = reprocess(s2, only_a, limit=3)
    assert (first.finished, first.resumed, first.counts["reprocessed"]) == (False, False, 3)
    assert committed_offsets(s2, group_for(s2, only_a))  # progress kept for the next run
    # ... then the rest: the same command continues where the first stopped.
    rest = reprocess(s2, only_a)
    assert (rest.finished, rest.resumed, rest.counts["reprocessed"], rest.counts["dead_letters"]) == (True, True, 5, 0)
    # b.example: each of its 4 pages skipped once, by whichever run read past it (the first run reads
    # whole fetches, so it may already have passed some of them before its 3rd a.example page)
    assert first.counts["skipped"] + rest.counts["skipped"] == 4
    assert not committed_offsets(s2, group_for(s2, only_a))  # done: the next reprocess starts afresh

    a_ids = {p.id for p in pages[:8]}
    assert per_key(s) == Counter({i: 2 if i in a_ids else 1 for i in before})  # each page reprocessed once

    make_indexer(s).run(idle_exit_s=3)
    after = {d["_id"]: d for d in all_docs(s)}
    assert set(after) == set(before)  # replaced, not duplicated
    es = make_es(s)
    try:
        for doc_id, doc in after.items():
            version = es.get(index=doc["_index"], id=doc_id)["_version"]
            if doc_id in a_ids:
                assert len(doc["text"].encode()) <= 1024 < len(before[doc_id]["text"].encode())
                assert doc["processed_at"] > before[doc_id]["processed_at"] and version > versions[doc_id]
                assert doc["_index"] == before[doc_id]["_index"]
            else:
                assert doc == before[doc_id] and version == versions[doc_id]
    finally:
        es.close()


@pytest.mark.integration
def test_a_killed_reprocess_resumes_without_duplicates(make_settings, tmp_path):
    s = make_settings(enrich=False, extract_workers=1, batch_size=1)
    pages = [page_record("c.example", i) for i in range(40)]
    produce(s, [(p.id.encode(), p.to_bytes()) for p in pages])
    make_processor(s).run(idle_exit_s=3)
    processed = stable_end(s, s.topic_enriched)
    assert set(per_key(s)) == {p.id for p in pages}

    proc = newsflow(s, "reprocess", stderr=tmp_path / "reprocess.log")
    try:
        # a few transactions committed (each batch: one record and its commit marker), then kill -9
        wait_until(lambda: stable_end(s, s.topic_enriched) >= processed + 6, timeout=240,
                   what="the reprocess to commit its first batches", every=0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = per_key(s)
    assert 3 <= sum(done_before.values()) - 40 < 40, "the kill must land in the middle of the run"

    report = reprocess(s, Selection())  # the same command again
    assert report.resumed and report.finished
    assert sum(done_before.values()) - 40 + report.counts["reprocessed"] == 40
    assert per_key(s) == Counter({p.id: 2 for p in pages})  # every page reprocessed exactly once
