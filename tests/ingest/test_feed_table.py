"""The feed table on the real local Kafka (``ingest.feed_table``): seeding, ownership through the
consumer group (scale-out), definitions read while running, poison dead-lettered once and tombstoned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.netguard import StubResolver
from ingest.poller import Poller
from ingest.store import definition_for, home_partition, load_catalog, put_definition
from newsflow.kafka_io import make_producer
from newsflow.stage.deadletters import H_ERROR, H_ERROR_CLASS, H_STAGE, H_TOPIC
from tests.ingest.kafka_helpers import Background, feeds_file, pages, records, state_of, wait_for
from tests.support.feeds import rss

pytestmark = pytest.mark.integration


def test_seeds_from_the_feeds_file_only_when_the_feeds_topic_is_empty(site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    Poller(settings).run(once=True)
    assert [d.url for _p, d in load_catalog(settings)[0].values()] == [site.url("/feed.xml")]
    other = settings.model_copy(update={"feeds_file": feeds_file(tmp_path / "..", site.url("/other.xml"))})
    Poller(other).run(once=True)
    assert [d.url for _p, d in load_catalog(settings)[0].values()] == [site.url("/feed.xml")]
    assert site.hits("/other.xml") == 0


def test_a_feed_added_while_the_poller_runs_is_polled(site, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    settings = make_settings()
    bg = Background(Poller(settings)).start()
    try:
        wait_for(lambda: bg.poller.table.ready, what="partitions loaded")
        producer = make_producer(settings)
        put_definition(producer, settings, definition_for(site.url("/feed.xml")))
        producer.flush()
        producer.close()
        wait_for(lambda: bg.poller.stats.produced == 1, what="the new feed's page")
    finally:
        bg.stop()


# Feeds of one site share a partition (ingest.store.home_partition): these feeds are on n sites, so that
# the group can split them. The stub resolver sends every site to the fixture server.
SITES = StubResolver({f"site{i}.test": "127.0.0.1" for i in range(16)})


def serve_feeds(site, n: int) -> list[str]:
    port = site.server.server_address[1]
    for i in range(n):
        site.add(f"/f{i}.xml", rss(f"F{i}", pages(site, f"p{i}")), content_type="application/rss+xml")
    return [f"http://site{i}.test:{port}/f{i}.xml" for i in range(n)]


def test_two_instances_never_fetch_the_same_feed_in_one_cycle(site, tmp_path, make_settings):
    """A owns everything and polls it; B joins (A keeps one partition, which it must re-read; B loads the
    state A wrote, so nothing is polled twice); the next cycle is split between them."""
    n = 16
    settings = make_settings(feeds_file=feeds_file(tmp_path, *serve_feeds(site, n)), host_rate_per_s=200.0,
                             host_concurrency=4, poll_batch_s=0.3)
    now = [datetime.now(UTC)]
    feed_hits = lambda: [site.hits(f"/f{i}.xml") for i in range(n)]  # noqa: E731
    a = Background(Poller(settings, clock=lambda: now[0], resolver=SITES)).start()
    b = None
    try:
        wait_for(lambda: a.poller.stats.polls >= n, what="cycle 1 by A alone")
        b = Background(Poller(settings.model_copy(update={"instance_id": settings.instance_id + "-b"}),
                              clock=lambda: now[0], resolver=SITES)).start()
        wait_for(lambda: len(a.poller.table.ready) == 1 and len(b.poller.table.ready) == 1, what="one partition each")
        assert sum(len(p.table.slots) for p in (a.poller, b.poller)) == n  # A re-read its partition whole
        assert b.poller.stats.polls == 0 and feed_hits() == [1] * n
        polls_before = a.poller.stats.polls
        now[0] += timedelta(days=2)  # cycle 2: every feed is due again
        wait_for(lambda: all(h >= 2 for h in feed_hits()), what="cycle 2")
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert feed_hits() == [2] * n
    polled_a = list(a.poller.stats.polled)[polls_before:]
    polled_b = list(b.poller.stats.polled)
    assert polled_a and polled_b
    assert not set(polled_a) & set(polled_b)
    assert len(polled_a) + len(polled_b) == n
    assert all(site.hits(f"/p{i}") == 1 for i in range(n))  # and no page twice


def test_two_instances_started_together_poll_each_feed_once(site, tmp_path, make_settings):
    n = 12
    settings = make_settings(feeds_file=feeds_file(tmp_path, *serve_feeds(site, n)), host_rate_per_s=200.0,
                             poll_batch_s=0.3)
    runs = [Background(Poller(settings.model_copy(update={"instance_id": f"{settings.instance_id}-{k}"}),
                              resolver=SITES),
                       once=True) for k in range(2)]
    for r in runs:
        r.start()
    for r in runs:
        r.thread.join(timeout=120)
        assert not r.thread.is_alive() and r.error is None
    assert [site.hits(f"/f{i}.xml") for i in range(n)] == [1] * n
    assert sum(r.poller.stats.polls for r in runs) == n


def dead_letters(settings) -> dict[bytes, dict[str, bytes]]:
    """Key -> headers of every record in the DLQ (asserting each key is there once)."""
    recs = records(settings, settings.topic_dlq)
    keys = [r.key for r in recs]
    assert len(keys) == len(set(keys)), f"dead-lettered more than once: {keys}"
    return {r.key: dict(r.headers) for r in recs}


def test_poison_in_the_feed_tables_is_dead_lettered_once_and_the_feed_still_polled(site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    settings = make_settings()
    fid = definition_for(site.url("/feed.xml")).id.encode()
    producer = make_producer(settings)
    producer.send(settings.topic_feeds, key=b"garbage", value=b"{not json")
    # the feed's state partition is its definition's: its site's (ingest.store.home_partition)
    producer.send(settings.topic_feed_state, key=fid, value=b"[]",
                  partition=home_partition(site.url("/feed.xml"), settings.topic_partitions))
    put_definition(producer, settings, definition_for(site.url("/feed.xml")))
    producer.flush()
    producer.close()
    Poller(settings).run(once=True)
    assert site.hits("/a") == 1
    assert state_of(settings, site.url("/feed.xml")).seen
    dead = dead_letters(settings)
    assert dead[b"garbage"][H_ERROR_CLASS] == b"invalid_feed_definition"
    assert dead[b"garbage"][H_TOPIC] == settings.topic_feeds.encode() and dead[b"garbage"][H_ERROR]
    assert dead[fid][H_ERROR_CLASS] == b"invalid_feed_state" and dead[fid][H_STAGE] == b"poller"
    # Tombstoned: the next owner reads the tables again and finds nothing to dead-letter.
    Poller(settings).run(once=True, force=True)
    assert set(dead_letters(settings)) == {b"garbage", fid}


def test_poison_written_while_the_poller_runs_reaches_the_dlq(site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    poller = Poller(settings)
    poller.table.state_scan_s = 0.2
    run = Background(poller).start()
    try:
        wait_for(lambda: site.hits("/a") == 1, what="the first poll")
        partition = next(iter(poller.table.ready))
        producer = make_producer(settings)
        producer.send(settings.topic_feeds, key=b"late-definition", value=b"\xfe\xff", partition=partition)
        producer.send(settings.topic_feed_state, key=b"late-state", value=b'{"url": 42}', partition=partition)
        producer.flush()
        producer.close()
        wait_for(lambda: len(records(settings, settings.topic_dlq)) >= 2, what="both poison records in the DLQ")
    finally:
        run.stop()
    dead = dead_letters(settings)
    assert dead[b"late-definition"][H_ERROR_CLASS] == b"invalid_feed_definition"
    assert dead[b"late-state"][H_ERROR_CLASS] == b"invalid_feed_state"
    assert poller.stats.dead_lettered == 2


def test_foreign_state_the_owner_has_overwritten_is_left_alone(site, tmp_path, make_settings):
    """The scan reads the state topic's tail as a table: poison under a feed's id that the owner has
    since overwritten with the feed's state is no longer in it, so it is neither dead-lettered nor
    tombstoned over the owner's state (which a restarted poller would then not find)."""
    site.add("/feed.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    url = site.url("/feed.xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, url))
    fid = definition_for(url).id
    poller = Poller(settings)
    poller.table.state_scan_s = 3600  # scans only when this test calls it
    poller.start()
    try:
        def loaded() -> bool:
            poller.sync(200)
            return fid in poller.table.slots and poller.table.loaded
        wait_for(loaded, what="the feed's partition loaded")
        poller.run_batch(poller.pick(poller.clock(), force=True))
        assert site.hits("/a") == 1
        producer = make_producer(settings)
        producer.send(settings.topic_feed_state, key=fid.encode(), value=b"{not a state",
                      partition=poller.table.slots[fid].partition)
        producer.flush()
        producer.close()
        poller.run_batch(poller.pick(poller.clock(), force=True))  # the owner writes the feed's state again
        poller.table.scan_state_tail()
        assert poller.stats.dead_lettered == 0
    finally:
        poller.close()
    assert records(settings, settings.topic_dlq) == []
    assert state_of(settings, url).seen, "the owner's state is still the feed's latest record"


def test_the_feeds_of_one_site_share_a_partition_so_one_poller_sees_all_its_articles(tmp_path, make_settings):
    # (only written and read back: nothing is fetched, so the names need not resolve)
    urls = [f"https://{h}/{i}.xml" for i, h in enumerate(
        ["www.site0.co.uk", "feeds.site0.co.uk", "site0.co.uk", "m.site0.co.uk"] + [f"site{i}.org" for i in range(1, 9)])]
    settings = make_settings(feeds_file=feeds_file(tmp_path, *urls), topic_partitions=4)
    poller = Poller(settings)
    poller.start()
    try:
        assert poller.table.seed() == 0  # start() seeded already: the topic is no longer empty
    finally:
        poller.close()
    defs = load_catalog(settings)[0]
    partition = {d.url: p for p, d in defs.values()}
    assert len({partition[u] for u in urls[:4]}) == 1  # one site: one partition
    assert len(set(partition.values())) > 1  # the sites are spread
    assert all(partition[u] == home_partition(u, 4) for u in urls)
