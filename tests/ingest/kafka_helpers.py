"""Reading what the poller wrote to the real Kafka (group-less readers that never commit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kafka import TopicPartition

from ingest.poller import Poller
from ingest.state import FeedState
from ingest.store import load_catalog
from newsflow.kafka_io import make_consumer
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from tests.support import hostile


def records(settings: Settings, topic: str) -> list:
    """Every record of ``topic``, in partition then offset order."""
    consumer = make_consumer(settings, None)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close(autocommit=False)


def raw_articles(settings: Settings) -> list[RawArticle]:
    return [RawArticle.from_bytes(r.value) for r in records(settings, settings.topic_raw)]


def state_of(settings: Settings, url: str) -> FeedState:
    defs, states = load_catalog(settings)
    for fid, (_p, d) in defs.items():
        if d.url == url or d.added_url == url:
            return states[fid]
    raise KeyError(url)


class Background:
    """A poller running ``run()`` in a thread (no signal handlers off the main thread)."""

    def __init__(self, poller: Poller, **run_kw):
        self.poller = poller
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=run_kw, daemon=True)

    def _run(self, **kw):
        try:
            self.poller.run(**kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by stop()
            self.error = exc

    def start(self) -> Background:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.poller.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "poller did not stop"
        if self.error:
            raise self.error


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def feeds_file(tmp_path, *urls):
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n" + "".join(f"  - url: {u}\n" for u in urls))
    return path


def pages(site, *names):
    for n in names:
        site.add(f"/{n}", hostile.page_html(n, f"{n} " * 20))
    return [{"link": site.url(f"/{n}"), "title": n, "guid": n} for n in names]
