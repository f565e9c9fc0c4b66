"""The indexer against the real local Kafka and Elasticsearch."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from newsflow.elastic import index_name, make_es
from newsflow.kafka_io import make_consumer
from newsflow.schema import Article, article_id
from processors.index.sink import ElasticsearchSink
from tests.processors.index.helpers import (
    BulkFaults,
    all_docs,
    faulty_es,
    header,
    make_article,
    make_runner,
    produce,
    read_topic,
    seed_article,
    wait_assigned,
)

pytestmark = pytest.mark.integration


def committed(settings, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = make_consumer(settings, group)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_seed_article_round_trips_through_the_mapping(make_settings):
    s = make_settings()
    article = seed_article()
    produce(s, [article])
    make_runner(s).run(idle_exit_s=3)

    docs = all_docs(s)
    assert len(docs) == 1
    doc = docs[0]
    assert doc.pop("_index") == index_name(s.es_index, article.first_seen_at)
    assert doc.pop("_id") == article.id == article_id(article.canonical_url)
    assert datetime.fromisoformat(doc.pop("indexed_at")) > article.processed_at
    assert doc == json.loads(article.to_bytes())
    assert Article.model_validate(doc) == article

    es = make_es(s)
    try:
        index = index_name(s.es_index, article.first_seen_at)
        meta = es.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
        assert meta["newsflow_template_version"] >= 2
        assert list(es.indices.get_alias(name=s.es_index).body) == [index]

        def count(query):
            return es.count(index=s.es_index, query=query)["count"]

        kirby = es.search(index=s.es_index, query={"nested": {
            "path": "quotes", "query": {"term": {"quotes.speaker": "John Kirby"}}, "inner_hits": {}}})
        inner = kirby["hits"]["hits"][0]["inner_hits"]["quotes"]["hits"]["hits"]
        assert sorted(h["_source"]["text"] for h in inner) == sorted(
            q.text for q in article.quotes if q.speaker == "John Kirby")
        psaki = [q.text for q in article.quotes if q.speaker == "Jen Psaki"]
        assert psaki, "the seed quotes Jen Psaki"
        assert count({"nested": {"path": "quotes", "query": {"match_phrase": {"quotes.text": psaki[0]}}}}) == 1
        assert count({"nested": {"path": "quotes", "query": {"bool": {"must": [
            {"term": {"quotes.speaker": "Jen Psaki"}}, {"match": {"quotes.text": "numbers grow"}}]}}}}) == 0
        for field in ("persons", "organizations", "places"):
            for value in getattr(article, field):
                assert count({"term": {field: value}}) == 1, (field, value)
        assert count({"match": {"text": "battalion tactical groups"}}) == 1
        assert count({"match": {"text": "the"}}) == 0  # English stopwords
        assert count({"range": {"published_at": {"gte": "2022-02-09", "lt": "2022-02-10"}}}) == 1
        assert count({"range": {"word_count": {"gte": article.word_count}}}) == 1
        if article.story_id:
            assert count({"term": {"story_id": article.story_id}}) == 1
    finally:
        es.close()


def test_same_article_three_times_across_a_month_boundary_is_one_document(make_settings):
    s = make_settings()
    url = "https://news.example.org/2024/03/31/late-edit.html"
    seen = datetime(2024, 3, 31, 23, 50, tzinfo=UTC)
    versions = [
        make_article(url, title=f"v{i}", published_at=published, first_seen_at=seen, fetched_at=seen + timedelta(hours=i),
                     processed_at=seen + timedelta(hours=i, minutes=1))
        for i, published in enumerate([datetime(2024, 3, 31, 23, 0, tzinfo=UTC),   # March
                                       datetime(2024, 4, 1, 1, 0, tzinfo=UTC),     # April (edited)
                                       datetime(2024, 2, 29, 12, 0, tzinfo=UTC)],  # February (edited again)
                                      start=1)
    ]
    v1, v2, v3 = versions
    first = ElasticsearchSink(s)
    produce(s, [v1, v3])
    make_runner(s, sink=first).run(idle_exit_s=3)
    again = ElasticsearchSink(s)
    produce(s, [v2, v3])  # an older version late, and the newest one again
    make_runner(s, sink=again).run(idle_exit_s=3)

    docs = all_docs(s)  # every index of every generation under the alias prefix
    assert [(d["_id"], d["_index"], d["title"]) for d in docs] == [(v3.id, f"{s.es_index}-2024.03", "v3")]
    assert docs[0]["published_at"] == v3.published_at.isoformat().replace("+00:00", "Z")
    assert (first.counts["indexed"], first.counts["duplicate"]) == (2, 0)  # v1, then v3 replaces it
    assert (again.counts["indexed"], again.counts["duplicate"]) == (0, 2)  # counted duplicates


def test_malformed_documents_go_to_the_dlq_while_the_rest_of_the_batch_is_indexed(make_settings):
    s = make_settings(topic_partitions=1)
    good = [make_article() for _ in range(4)]
    too_big = make_article(word_count=2**40)  # a valid Article that the integer mapping refuses
    unknown_field = make_article().to_bytes()[:-1] + b',"colour":"red"}'  # passes the indexer's head check
    values = [good[0], b'{"title": "truncated', good[1], too_big, good[2], b"\xff\xfe not utf-8", good[3],
              unknown_field]
    offsets = produce(s, values, partition=0)
    sink = ElasticsearchSink(s)
    runner = make_runner(s, sink=sink)
    try:
        deadline = time.monotonic() + 30
        consumed = 0
        while consumed == 0 and time.monotonic() < deadline:
            consumed = runner.step()
        assert consumed == len(values), "the test needs the whole batch in one poll"
    finally:
        runner.close()

    assert {d["_id"] for d in all_docs(s)} == {a.id for a in good}
    dlq = read_topic(s, s.topic_dlq)
    by_offset = {int(header(r, "nf-offset")): r for r in dlq}
    assert sorted(by_offset) == [offsets[1][1], offsets[3][1], offsets[5][1], offsets[7][1]]
    assert {header(by_offset[offsets[i][1]], "nf-error-class") for i in (1, 5)} == {"invalid_article"}
    assert header(by_offset[offsets[7][1]], "nf-error-class") == "strict_dynamic_mapping_exception"
    mapping_error = by_offset[offsets[3][1]]
    assert header(mapping_error, "nf-error-class") == "document_parsing_exception"
    assert "word_count" in header(mapping_error, "nf-error")
    assert header(mapping_error, "nf-stage") == "indexer"
    assert mapping_error.value == too_big.to_bytes()  # the original record, for a replay after a fix
    assert sink.counts["dead_letter"] == 4 and sink.counts["commits"] == 1
    assert committed(s, s.group("indexer"), s.topic_enriched, 1) == {0: len(values)}


def test_keyword_values_beyond_the_term_limit_do_not_reject_the_document(make_settings):
    s = make_settings()
    immense = "é" * 20000  # 40,000 bytes: Lucene refuses terms over 32,766
    a = make_article(persons=["Jen Psaki", immense], keywords=[immense], authors=[immense], source=immense)
    long_url = "https://news.example.org/" + "a" * 40000
    b = make_article(long_url, provenance=a.provenance.model_copy(update={"fields": {"title": immense}}))
    produce(s, [a, b])
    make_runner(s).run(idle_exit_s=3)

    docs = {d["_id"]: d for d in all_docs(s)}
    assert set(docs) == {a.id, b.id}
    assert docs[a.id]["persons"] == ["Jen Psaki", immense]  # kept in _source, just not indexed
    assert docs[b.id]["canonical_url"] == long_url
    assert read_topic(s, s.topic_dlq, timeout_s=1) == []
    es = make_es(s)
    try:
        es.indices.refresh(index=s.es_index)
        assert es.count(index=s.es_index, query={"term": {"persons": "Jen Psaki"}})["count"] == 1
        facets = es.search(index=s.es_index, size=0, aggs={"p": {"terms": {"field": "persons"}}})
        assert [b["key"] for b in facets["aggregations"]["p"]["buckets"]] == ["Jen Psaki"]
    finally:
        es.close()


def test_rejected_items_alone_are_retried_with_capped_backoff(make_settings):
    s = make_settings(topic_partitions=1)
    articles = [make_article() for _ in range(6)]
    produce(s, articles, partition=0)
    flaky = {articles[1].id, articles[4].id}
    rejections: Counter[str] = Counter()

    def reject(ids):
        out = {i for i, d in enumerate(ids) if d in flaky and rejections[d] < 2}
        rejections.update(ids[i] for i in out)
        return out

    faults = BulkFaults(reject)
    sleeps: list[float] = []
    sink = ElasticsearchSink(s, es=faulty_es(s, faults), sleep=sleeps.append)
    retries_before = metric("newsflow_es_bulk_retries_total")
    paused_before = metric("newsflow_sink_unavailable_total", stage="indexer")
    make_runner(s, sink=sink).run(idle_exit_s=3)

    assert {d["_id"] for d in all_docs(s)} == {a.id for a in articles}
    sent = Counter(d for call in faults.calls for d in call)
    assert all(sent[a.id] == 1 for a in articles if a.id not in flaky)  # never re-sent
    assert all(sent[d] == 3 for d in flaky)
    retried_calls = [c for c in faults.calls if set(c) <= flaky]
    assert sorted(map(sorted, retried_calls)) == [sorted(flaky)] * 2  # only the failed items
    assert sleeps == [0.25, 0.5]  # exponential
    assert metric("newsflow_es_bulk_retries_total") - retries_before == 4 == sink.counts["retried"]
    assert metric("newsflow_sink_unavailable_total", stage="indexer") == paused_before  # no pause needed


def test_backoff_is_capped(make_settings):
    s = make_settings(topic_partitions=1, es_bulk_max_retries=6, es_bulk_max_backoff_s=1.0)
    articles = [make_article() for _ in range(2)]
    produce(s, articles, partition=0)
    tries: Counter[str] = Counter()

    def reject(ids):
        out = {i for i, d in enumerate(ids) if d == articles[0].id and tries[d] < 5}
        tries.update(ids[i] for i in out)
        return out

    sleeps: list[float] = []
    sink = ElasticsearchSink(s, es=faulty_es(s, BulkFaults(reject)), sleep=sleeps.append)
    make_runner(s, sink=sink).run(idle_exit_s=3)
    assert sleeps == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert len(all_docs(s)) == 2


def test_persistent_rejections_pause_and_commit_only_what_is_durable(make_settings):
    s = make_settings(topic_partitions=1, es_bulk_max_retries=1)
    articles = [make_article() for _ in range(8)]
    stuck = articles[3]
    offsets: list[int] = []
    release = threading.Event()
    faults = BulkFaults(lambda ids: {i for i, d in enumerate(ids) if d == stuck.id and not release.is_set()})
    sink = ElasticsearchSink(s, es=faulty_es(s, faults), sleep=lambda _s: None)
    consumer = make_consumer(s, s.group("indexer"))
    commits: list[int] = []
    violations: list[str] = []
    es = make_es(s)
    real_commit = consumer.commit

    def audited_commit(offsets_=None, **kw):
        """Before letting a commit through: is every record below it really in Elasticsearch?"""
        for tp, om in offsets_.items():
            below = [a.id for a, o in zip(articles, offsets, strict=True) if o < om.offset]
            found = es.mget(index=f"{s.es_index}-2024.03", ids=below)["docs"] if below else []
            missing = [d["_id"] for d in found if not d["found"]]
            if missing:
                violations.append(f"commit {om.offset} on {tp} passes unacknowledged {missing}")
            commits.append(om.offset)
        return real_commit(offsets_, **kw)

    consumer.commit = audited_commit
    paused_before = metric("newsflow_sink_unavailable_total", stage="indexer")
    runner = make_runner(s, sink=sink, consumer=consumer)
    thread = threading.Thread(target=runner.run, kwargs={"idle_exit_s": 30}, daemon=True)
    thread.start()
    try:
        wait_assigned(runner)
        offsets.extend(o for _p, o in produce(s, articles, partition=0))
        deadline = time.monotonic() + 60
        while offsets[3] not in commits and time.monotonic() < deadline:
            time.sleep(0.1)
        assert commits and commits[0] == offsets[3], "the durable prefix is committed during back-pressure"
        while not runner.paused and time.monotonic() < deadline:  # commit_durable runs just before pause
            time.sleep(0.05)
        assert runner.paused
        release.set()
        deadline = time.monotonic() + 90
        while offsets[-1] + 1 not in commits and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        release.set()
        runner.stop()
        thread.join(timeout=60)
        es.close()

    assert not violations, violations
    assert commits[-1] == offsets[-1] + 1
    assert metric("newsflow_sink_unavailable_total", stage="indexer") > paused_before
    docs = all_docs(s)
    assert sorted(d["_id"] for d in docs) == sorted(a.id for a in articles)


def test_full_batches_written_in_the_background_never_commit_ahead_of_elasticsearch(make_settings):
    """Under load a full batch is written while the next is read. When a background write fails,
    the next delivery pauses, commits the failed batch's durable prefix only, and resumes in order."""
    s = make_settings(topic_partitions=1, batch_size=20, es_bulk_max_retries=0)
    articles = [make_article() for _ in range(100)]
    offsets = [o for _p, o in produce(s, articles, partition=0)]
    stuck = articles[45]  # in the third full batch
    release = threading.Event()
    faults = BulkFaults(lambda ids: {i for i, d in enumerate(ids) if d == stuck.id and not release.is_set()})
    sink = ElasticsearchSink(s, es=faulty_es(s, faults), sleep=lambda _s: None)
    consumer = make_consumer(s, s.group("indexer"))
    es = make_es(s)
    commits: list[int] = []
    violations: list[str] = []
    real_commit = consumer.commit

    def audited_commit(offsets_=None, **kw):
        for tp, om in offsets_.items():
            below = [a.id for a, o in zip(articles, offsets, strict=True) if o < om.offset]
            missing = [d["_id"] for d in es.mget(index=f"{s.es_index}-2024.03", ids=below)["docs"] if not d["found"]]
            if missing:
                violations.append(f"commit {om.offset} on {tp} passes unacknowledged {missing}")
            commits.append(om.offset)
        return real_commit(offsets_, **kw)

    consumer.commit = audited_commit
    runner = make_runner(s, sink=sink, consumer=consumer)
    thread = threading.Thread(target=runner.run, kwargs={"idle_exit_s": 30}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while offsets[45] not in commits and time.monotonic() < deadline:
            time.sleep(0.05)
        assert offsets[45] in commits, "the durable prefix of the failed background batch is committed"
        assert max(commits) == offsets[45], "nothing beyond it"
        release.set()
        deadline = time.monotonic() + 90
        while offsets[-1] + 1 not in commits and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        release.set()
        runner.stop()
        thread.join(timeout=60)
        es.close()

    assert not violations, violations
    assert sink.counts["background"] >= 3
    assert commits == sorted(commits) and commits[-1] == offsets[-1] + 1
    assert Counter(d["_id"] for d in all_docs(s)) == Counter(a.id for a in articles)


@pytest.mark.parametrize("stuck_goes_to", ["B", "A"])
def test_revocation_during_back_pressure_hands_over_only_what_is_not_durable(make_settings, stuck_goes_to):
    """Indexer A is stuck on one record of partition 0; B joins the group. Either owner of partition
    0 then starts at A's durable progress. If B takes it over, only the acknowledged records *behind*
    the stuck one (which cannot be committed past it) are written twice, as counted duplicates. If A
    keeps it, A reads it again from the records it gave up and skips those it knows are durable.
    Which member gets partition 0 is chosen by client id: the range assignor gives it to the member
    whose id (client id + broker UUID) sorts first."""
    client_a, client_b = ("indexer-2a", "indexer-1b") if stuck_goes_to == "B" else ("indexer-1a", "indexer-2b")
    s = make_settings(topic_partitions=2, es_bulk_max_retries=0)
    p0 = [make_article() for _ in range(5)]
    p1 = [make_article() for _ in range(5)]
    stuck = p0[2]
    release = threading.Event()
    faults = BulkFaults(lambda ids: {i for i, d in enumerate(ids) if d == stuck.id and not release.is_set()})
    sink_a = ElasticsearchSink(s, es=faulty_es(s, faults), sleep=lambda _s: None)
    consumer_a = make_consumer(s, s.group("indexer"), client_id=client_a)
    commits_a: list[tuple[int, int]] = []
    real_commit = consumer_a.commit
    consumer_a.commit = lambda offsets=None, **kw: (commits_a.extend((tp.partition, o.offset)
                                                                      for tp, o in offsets.items()),
                                                     real_commit(offsets, **kw))[1]
    runner_a = make_runner(s, sink=sink_a, consumer=consumer_a)
    thread_a = threading.Thread(target=runner_a.run, kwargs={"idle_exit_s": 6}, daemon=True)
    thread_a.start()
    sink_b = ElasticsearchSink(s)
    try:
        wait_assigned(runner_a)
        produce(s, p0, partition=0)
        produce(s, p1, partition=1)
        deadline = time.monotonic() + 60
        while (0, 2) not in commits_a and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (0, 2) in commits_a, "A committed its durable prefix of partition 0 while stuck"
        runner_b = make_runner(s, sink=sink_b, consumer=make_consumer(s, s.group("indexer"), client_id=client_b))
        thread_b = threading.Thread(target=runner_b.run, kwargs={"idle_exit_s": 4}, daemon=True)
        thread_b.start()
        deadline = time.monotonic() + 60
        while not runner_b.consumer.assignment() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runner_b.consumer.assignment(), "B joined the group and took over a partition"
        taken = {tp.partition for tp in runner_b.consumer.assignment()}
        assert taken == ({0} if stuck_goes_to == "B" else {1}), f"B was assigned {taken}"
        release.set()
        thread_b.join(timeout=90)
        thread_a.join(timeout=90)
        assert not thread_a.is_alive() and not thread_b.is_alive()
    finally:
        release.set()
    # Whatever A and B left uncommitted (they stop when idle, and a rebalance can leave a freshly
    # assigned partition unfetched for a while in kafka-python 3.0.12) is picked up by C.
    sink_c = ElasticsearchSink(s)
    make_runner(s, sink=sink_c).run(idle_exit_s=4)

    docs = all_docs(s)
    names = {a.id: f"p{p}[{i}]" for p, part in enumerate((p0, p1)) for i, a in enumerate(part)}
    assert sorted(names[d["_id"]] for d in docs) == sorted(names.values())
    duplicates = sum(sink.counts["duplicate"] for sink in (sink_a, sink_b, sink_c))
    # B: p0[3] and p0[4], acknowledged by A but behind the stuck p0[2]. A: none, it remembers them.
    assert duplicates == (2 if stuck_goes_to == "B" else 0)
    final = committed(s, s.group("indexer"), s.topic_enriched, 2)
    assert final == {0: 5, 1: 5}
