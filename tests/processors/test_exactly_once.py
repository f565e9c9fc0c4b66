"""kill -9 of a real `newsflow process` in the middle of its transactions, several times: afterwards
``articles.enriched`` holds every input exactly once for read_committed readers."""

from __future__ import annotations

import signal
import time
from collections import Counter

import psutil
import pytest
from kafka import TopicPartition

from newsflow.kafka_io import make_consumer
from tests.processors.kafka_helpers import produce_pages, read_topic, stable_end
from tests.support.stages import newsflow, wait_until

pytestmark = pytest.mark.integration

N = 120
KILLS = 3


class TransactionWatch:
    """Sees a transaction in flight: a partition's high watermark (read_uncommitted) is past its
    last stable offset (read_committed) while records of an open transaction are on the log."""

    def __init__(self, settings, topic: str):
        self.committed = make_consumer(settings, None)
        self.uncommitted = make_consumer(settings, None, isolation_level="read_uncommitted")
        self.tps = [TopicPartition(topic, p) for p in sorted(self.committed.partitions_for_topic(topic))]

    def open(self) -> bool:
        lso = self.committed.end_offsets(self.tps)
        hw = self.uncommitted.end_offsets(self.tps)
        return any(hw[tp] > lso[tp] for tp in self.tps)

    def close(self) -> None:
        self.committed.close(autocommit=False)
        self.uncommitted.close(autocommit=False)


def test_kill_9_mid_stream_leaves_no_gap_and_no_duplicate(make_settings, tmp_path):
    s = make_settings(batch_size=4, batch_wait_ms=50, topic_partitions=2, enrich=True)
    expected = produce_pages(s, N)
    log = tmp_path / "process.log"
    watch = TransactionWatch(s, s.topic_enriched)
    mid_transaction = 0
    try:
        for _ in range(KILLS):
            before = stable_end(s, s.topic_enriched)
            proc = newsflow(s, "process", stderr=log)
            children = []
            try:
                wait_until(lambda: stable_end(s, s.topic_enriched) > before, timeout=240,
                           what="a committed transaction of the restarted processor")
                children = psutil.Process(proc.pid).children(recursive=True)
                # Aim the kill at an open transaction (its records written, not committed yet).
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    if watch.open():
                        mid_transaction += 1
                        break
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            # Its extraction workers (and their fork server) die with it.
            wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
                       timeout=30, what="the killed processor's workers to exit")
    finally:
        watch.close()

    final = newsflow(s, "process", "--idle-exit", "5", stderr=log)
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]

    keys = Counter(r.key.decode() for r in read_topic(s, s.topic_enriched))
    duplicates = {k: n for k, n in keys.items() if n > 1}
    assert not duplicates, f"written twice: {duplicates}"
    assert set(keys) == expected, f"missing: {len(expected - set(keys))}"
    assert read_topic(s, s.topic_dlq) == []
    written = len(read_topic_uncommitted(s))
    # A record of what was tested, not an assertion of timing: kills that hit an open transaction,
    # and how many records the killed transactions had written (visible only to read_uncommitted).
    print(f"kill -9 x{KILLS}: {mid_transaction} in an open transaction; aborted records on the log: {written - N}")


def read_topic_uncommitted(s) -> list:
    consumer = make_consumer(s, None, isolation_level="read_uncommitted")
    try:
        tps = [TopicPartition(s.topic_enriched, p) for p in sorted(consumer.partitions_for_topic(s.topic_enriched))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 60
        while not all(consumer.position(tp) >= end[tp] for tp in tps) and time.monotonic() < deadline:
            out.extend(r for recs in consumer.poll(timeout_ms=300).values() for r in recs)
        return out
    finally:
        consumer.close(autocommit=False)
