"""Elasticsearch stopped for 30 s in the middle of a stream.

Runs against a dedicated Elasticsearch (``outage_es``, port 9201 by default), never the shared one.
Records keep arriving before, during and after the outage. Afterwards every record is indexed
exactly once, nothing is dead-lettered, and no offset commit ever passed a record that Elasticsearch
had not acknowledged: each commit is audited against the ``indexed_at`` that the acknowledged write
stamped on the document (stamped before the bulk request that Elasticsearch answered).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from newsflow.kafka_io import make_consumer
from tests.processors.index.helpers import all_docs, make_article, make_runner, produce, read_topic

pytestmark = pytest.mark.integration

TOTAL = 2000
RATE_PER_S = 40
OUTAGE_S = 30


def test_elasticsearch_down_for_30s_mid_stream_loses_and_duplicates_nothing(make_settings, outage_es):
    s = make_settings(es_url=outage_es.url, batch_size=50, topic_partitions=3)
    articles = [make_article() for _ in range(TOTAL)]
    placed: dict[str, tuple[int, int]] = {}

    def producer() -> None:  # a steady stream: before, during and after the outage
        for i in range(0, TOTAL, RATE_PER_S // 4):
            chunk = articles[i:i + RATE_PER_S // 4]
            for a, where in zip(chunk, produce(s, chunk), strict=True):
                placed[a.id] = where
            time.sleep(0.25)

    consumer = make_consumer(s, s.group("indexer"))
    commits: list[tuple[int, int, datetime]] = []
    real_commit = consumer.commit

    def recorded_commit(offsets=None, **kw):
        result = real_commit(offsets, **kw)
        at = datetime.now(UTC)  # after the broker accepted it
        commits.extend((tp.partition, om.offset, at) for tp, om in offsets.items())
        return result

    consumer.commit = recorded_commit
    runner = make_runner(s, consumer=consumer)
    unavailable_before = REGISTRY.get_sample_value("newsflow_sink_unavailable_total", {"stage": "indexer"}) or 0
    feeding = threading.Thread(target=producer, daemon=True)
    indexing = threading.Thread(target=runner.run, daemon=True)
    feeding.start()
    indexing.start()
    paused_seen = False
    try:
        deadline = time.monotonic() + 60
        while sum(1 for _ in commits) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert commits, "the indexer is running before the outage"
        outage_es.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < OUTAGE_S:
            paused_seen |= runner.paused
            time.sleep(0.2)
        during = (REGISTRY.get_sample_value("newsflow_sink_unavailable_total", {"stage": "indexer"}) or 0)
        outage_es.start()
        feeding.join(timeout=120)
        deadline = time.monotonic() + 360  # a restart is slow on a loaded 2-core machine
        while time.monotonic() < deadline:
            done = {(p, o) for p, o, _ in commits}
            ends = _ends(placed)
            if len(placed) == TOTAL and all((p, end) in done for p, end in ends.items()):
                break
            time.sleep(0.5)
    finally:
        runner.stop()
        indexing.join(timeout=60)

    assert paused_seen, "the indexer paused its partitions while Elasticsearch was down"
    attempts = during - unavailable_before
    assert 1 <= attempts <= 25, f"{attempts} delivery attempts in {OUTAGE_S}s: back-off, not a busy loop"

    docs = all_docs(s)
    per_id = Counter(d["_id"] for d in docs)
    assert sum(per_id.values()) == TOTAL and set(per_id) == {a.id for a in articles}, "exactly once"
    assert read_topic(s, s.topic_dlq, timeout_s=1) == []

    indexed_at = {d["_id"]: datetime.fromisoformat(d["indexed_at"]) for d in docs}
    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for doc_id, (partition, offset) in placed.items():
        by_partition[partition].append((offset, doc_id))
    violations = []
    for partition, offset, at in commits:
        for record_offset, doc_id in by_partition[partition]:
            if record_offset < offset and indexed_at[doc_id] > at:
                violations.append((partition, offset, record_offset, at.isoformat(), indexed_at[doc_id].isoformat()))
    assert not violations, f"commits that passed unacknowledged records: {violations[:5]}"
    final = {}
    for partition, offset, _ in commits:
        final[partition] = max(final.get(partition, 0), offset)
    assert final == _ends(placed)


def _ends(placed: dict[str, tuple[int, int]]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in placed.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends
