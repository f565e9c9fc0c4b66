"""The processor stage on the real local Kafka: seed article through the pipeline, poison records,
dead-letter listing and replay."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import UTC, datetime

import psutil
import pytest

from ingest.poller import Poller
from newsflow.schema import Article
from newsflow.stage.deadletters import H_ATTEMPTS
from processors.dlq import Filters, list_dead, replay
from processors.processor import make_runner
from tests.processors.kafka_helpers import (
    header_map, produce, produce_pages, raw_record, read_topic, synthetic_page,
)
from tests.processors.pages import SEED_TITLE, seed_html, slow_html
from tests.processors.seed_checks import check_seed_article
from tests.support.feeds import rss

pytestmark = pytest.mark.integration


def articles(settings) -> dict[str, Article]:
    return {r.key.decode(): Article.from_bytes(r.value) for r in read_topic(settings, settings.topic_enriched)}


def test_seed_page_through_the_pipeline(site, tmp_path, make_settings):
    published = datetime(2022, 2, 9, 18, 5, tzinfo=UTC)
    page = site.add("/world/russia-ukraine.html", seed_html())
    site.add("/feed.xml", rss("The Fixture Times - World", [
        {"link": page, "title": "Russia keeps building up forces", "published": published, "author": "Fixture Desk"},
    ]), content_type="application/rss+xml")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - url: {site.url('/feed.xml')}\n")
    s = make_settings(feeds_file=feeds)
    Poller(s).run(once=True)
    make_runner(s).run(idle_exit_s=3)

    [article] = articles(s).values()
    check_seed_article(article.model_dump(mode="json"))
    assert article.title == SEED_TITLE and article.published_at == published  # the page's tags agree on it
    assert article.provenance.fields["title"] == "page:h1" and article.provenance.fields["published_at"] == "feed"
    assert article.authors == ["Fixture Desk"] and article.provenance.fields["authors"] == "feed"  # no person named
    assert article.story_id == article.id and article.minhash and article.keywords


def test_poison_records_go_to_the_dlq_while_the_stream_goes_on(make_settings):
    s = make_settings(extract_timeout_s=1.0, topic_partitions=1, max_attempts=2)
    good = [raw_record(f"https://council.example/items/{i}", synthetic_page(i)) for i in range(3)]
    slow = raw_record("https://council.example/slow", slow_html())
    produce(s, [
        (good[0].id.encode(), good[0].to_bytes()),
        (b"bad-json", b'{"schema_version": 1, "id": '),
        (good[1].id.encode(), good[1].to_bytes()),
        (b"bad-bytes", b"\xff\xfe\x00\x9c undecodable"),
        (slow.id.encode(), slow.to_bytes()),
        (good[2].id.encode(), good[2].to_bytes()),
    ])
    make_runner(s).run(idle_exit_s=3)

    assert set(articles(s)) == {g.id for g in good}
    dead = read_topic(s, s.topic_dlq)
    by_key = {r.key: header_map(r) for r in dead}
    assert set(by_key) == {b"bad-json", b"bad-bytes", slow.id.encode()}
    assert by_key[b"bad-json"]["nf-error-class"] == by_key[b"bad-bytes"]["nf-error-class"] == "invalid_raw_record"
    timeout = by_key[slow.id.encode()]
    assert timeout["nf-error-class"] == "extract_timeout" and "worker killed" in timeout["nf-error"]
    for h in by_key.values():
        assert h["nf-stage"] == "processor" and h["nf-topic"] == s.topic_raw and h["nf-partition"] == "0"
        assert h["nf-attempts"] == "1" and h["nf-offset"].isdigit()
    assert [int(by_key[k]["nf-offset"]) for k in (b"bad-json", b"bad-bytes", slow.id.encode())] == [1, 3, 4]

    # dlq list: pending records with their reasons, filters.
    listed = list_dead(s)
    assert [(d.error_class, d.original_offset) for d in listed] == [
        ("invalid_raw_record", 1), ("invalid_raw_record", 3), ("extract_timeout", 4)]
    assert [d.key for d in list_dead(s, filters=Filters(reasons=("extract_timeout",)))] == [slow.id]

    # The fix: a longer timeout. Replay only the timeout; the two broken records stay pending.
    result = replay(s, filters=Filters(stages=("processor",), reasons=("extract_timeout",)))
    assert (result.replayed, result.kept) == (1, 2)
    assert replay(s, filters=Filters(reasons=("extract_timeout",))).replayed == 0  # never twice
    assert sorted(d.original_offset for d in list_dead(s)) == [1, 3]
    replayed = [r for r in read_topic(s, s.topic_raw) if r.key == slow.id.encode()]
    assert len(replayed) == 2 and header_map(replayed[-1])[H_ATTEMPTS] == "1"
    assert "nf-error-class" not in header_map(replayed[-1])

    fixed = make_settings(**{k: getattr(s, k) for k in ("topic_raw", "topic_enriched", "topic_dlq", "group_prefix",
                                                        "instance_id", "topic_partitions")}, extract_timeout_s=120)
    make_runner(fixed).run(idle_exit_s=3)
    assert set(articles(s)) == {g.id for g in good} | {slow.id}


def test_dlq_commands(make_settings):
    s = make_settings(topic_partitions=1)
    produce(s, [(b"k1", b"not json"), (b"k2", b"still not json")])
    produce_pages(s, 1)
    make_runner(s).run(idle_exit_s=3)
    from tests.support.stages import newsflow

    out = newsflow(s, "dlq", "list", "--json", stdout=subprocess.PIPE)
    stdout, _ = out.communicate(timeout=120)
    rows = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [(r["stage"], r["error_class"], r["topic"], r["original_offset"], r["attempts"]) for r in rows] == [
        ("processor", "invalid_raw_record", s.topic_raw, 0, 1), ("processor", "invalid_raw_record", s.topic_raw, 1, 1)]

    proc = newsflow(s, "dlq", "list", stdout=subprocess.PIPE)
    table, _ = proc.communicate(timeout=120)
    assert b"invalid_raw_record" in table and b"2 record(s), pending" in table

    proc = newsflow(s, "dlq", "replay", "--limit", "1")
    assert proc.wait(timeout=120) == 0
    assert [r["original_offset"] for r in (json.loads(x) for x in newsflow(s, "dlq", "list", "--json", stdout=subprocess.PIPE)
                                           .communicate(timeout=120)[0].decode().splitlines())] == [1]
    assert [r.value for r in read_topic(s, s.topic_raw)][-1] == b"not json"


class WorkerKiller(threading.Thread):
    """Kills every extraction worker that has burnt more than a second of CPU since it was first
    seen: the worker chewing on the slow page, again after every retry."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.killed: list[int] = []

    def workers(self) -> list[psutil.Process]:
        out = []
        for proc in psutil.Process().children(recursive=True):
            try:
                parent = proc.parent()
                if parent is not None and "forkserver" in " ".join(parent.cmdline()):
                    out.append(proc)
            except psutil.Error:
                continue
        return out

    def run(self) -> None:
        seen: dict[int, float] = {}
        while not self.stop.wait(0.2):
            for proc in self.workers():
                try:
                    cpu = sum(proc.cpu_times()[:2])
                    if cpu - seen.setdefault(proc.pid, cpu) > 1.0:
                        proc.kill()
                        self.killed.append(proc.pid)
                except psutil.Error:
                    continue


def test_a_dying_worker_is_retried_max_attempts_times_then_dead_lettered(make_settings):
    s = make_settings(extract_timeout_s=120, topic_partitions=1, max_attempts=2, enrich=False)
    slow = raw_record("https://council.example/slow", slow_html())
    good = raw_record("https://council.example/items/1", synthetic_page(1))
    produce(s, [(slow.id.encode(), slow.to_bytes()), (good.id.encode(), good.to_bytes())])
    killer = WorkerKiller()
    runner = make_runner(s)
    killer.start()
    try:
        runner.run(idle_exit_s=3)
    finally:
        killer.stop.set()
        killer.join()
    assert len(killer.killed) == 2  # the first try and one retry
    assert set(articles(s)) == {good.id}
    [dead] = read_topic(s, s.topic_dlq)
    h = header_map(dead)
    assert (dead.key, h["nf-error-class"], h["nf-attempts"]) == (slow.id.encode(), "WorkerDied", "2")


def test_story_labels_survive_a_restart(make_settings):
    s = make_settings(topic_partitions=1)
    wire = seed_html()
    first = raw_record("https://outlet-one.example/world/ukraine", wire)
    produce(s, [(first.id.encode(), first.to_bytes())])
    make_runner(s).run(idle_exit_s=3)
    # A new processor (restart): its window is seeded from articles.enriched, so the same wire
    # copy on another outlet joins the first outlet's story; an unrelated article starts its own.
    copy = raw_record("https://outlet-two.example/news/russia", wire.replace(b"The Fixture Times", b"Other Daily"))
    other = raw_record("https://council.example/items/7", synthetic_page(7))
    produce(s, [(copy.id.encode(), copy.to_bytes()), (other.id.encode(), other.to_bytes())])
    make_runner(s).run(idle_exit_s=3)
    got = articles(s)
    assert got[copy.id].story_id == got[first.id].story_id == first.id
    assert got[other.id].story_id == other.id
