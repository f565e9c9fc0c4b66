"""The poller on the real local Kafka: restarts, commit order, dead letters, moves (the feed table:
``test_feed_table.py``)."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from ingest import metrics
from ingest import state as S
from ingest import transitions as T
from ingest.poller import Poller
from ingest.store import load_catalog
from newsflow.stage.outcomes import SinkUnavailable
from tests.ingest.kafka_helpers import feeds_file, pages, raw_articles, records, state_of
from tests.support import hostile
from tests.support.feeds import rss

pytestmark = pytest.mark.integration


def test_a_restart_keeps_validators_seen_entries_and_first_seen(site, tmp_path, make_settings):
    cond = hostile.Conditional(rss("S", pages(site, "a", "b")), etag='"v1"')
    site.add("/feed.xml", handler=cond)
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    Poller(settings).run(once=True)
    assert (site.hits("/a"), site.hits("/b")) == (1, 1)

    Poller(settings).run(once=True, force=True)  # a new process: validators come from Kafka
    assert cond.requests[-1]["if_none_match"] == '"v1"'
    assert (site.hits("/a"), site.hits("/b")) == (1, 1)

    items = pages(site, "c", "a", "b")
    items[1]["title"] = "a, corrected"  # a changed entry is fetched again
    cond.body, cond.etag = rss("S", items), '"v2"'
    Poller(settings).run(once=True, force=True)
    assert (site.hits("/a"), site.hits("/b"), site.hits("/c")) == (2, 1, 1)

    produced = raw_articles(settings)
    by_url: dict[str, list] = {}
    for r in produced:
        by_url.setdefault(r.url, []).append(r)
    assert sorted((u.rsplit("/", 1)[1], len(rs)) for u, rs in by_url.items()) == [("a", 2), ("b", 1), ("c", 1)]
    a1, a2 = by_url[site.url("/a")]
    assert a1.first_seen_at == a2.first_seen_at and a2.fetched_at > a1.fetched_at
    assert a2.entry.title == "a, corrected"
    st = state_of(settings, site.url("/feed.xml"))
    assert st.etag == '"v2"' and len(st.seen) == 3 and not st.pending


class FailingRawTopic:
    """The real producer, except that records for one topic fail as if the broker never acknowledged them."""

    def __init__(self, real, topic: str):
        self.real, self.topic = real, topic

    def send(self, topic, *args, **kwargs):
        if topic == self.topic:
            return Future().failure(KafkaTimeoutError("injected: not acknowledged"))
        return self.real.send(topic, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_state_never_claims_a_page_was_sent_when_it_was_not(site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a", "b")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    poller = Poller(settings)
    real_start = poller.start

    def start():
        real_start()
        poller.txn.producer = FailingRawTopic(poller.txn.producer, settings.topic_raw)
    poller.start = start
    poller.run(once=True)
    st = state_of(settings, site.url("/feed.xml"))
    assert not st.seen and {p.guid for p in st.pending} == {"a", "b"}
    assert raw_articles(settings) == []

    Poller(settings).run(once=True)  # the feed is not due; its pending pages are
    assert sorted(r.entry.guid for r in raw_articles(settings)) == ["a", "b"]
    st = state_of(settings, site.url("/feed.xml"))
    assert len(st.seen) == 2 and not st.pending
    assert site.hits("/feed.xml") == 1


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, not even an abort of the open transaction."""


def kill_before_commit(poller: Poller) -> None:
    """Make the poller's first batch stop after its pages and states were sent and flushed, before the commit."""
    real_start = poller.start

    def start():
        real_start()

        def transact(_consumer, _offsets, write, group_metadata=None):
            p = poller.txn.producer
            p.begin_transaction()
            write(p)
            p.flush()
            raise Killed
        poller.txn.transact = transact
    poller.start = start


def test_a_poller_killed_before_its_commit_shows_nothing_and_its_successor_fetches_the_pages(
        site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a", "b")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    killed = Poller(settings)
    kill_before_commit(killed)
    with pytest.raises(Killed):
        killed.run(once=True)
    assert (site.hits("/a"), site.hits("/b")) == (1, 1)
    assert raw_articles(settings) == []  # sent and flushed, never committed: no reader sees them
    with pytest.raises(KeyError):
        state_of(settings, site.url("/feed.xml"))

    Poller(settings).run(once=True)  # the same instance id: its transaction aborts the open one
    assert (site.hits("/a"), site.hits("/b")) == (2, 2)
    assert sorted(r.entry.guid for r in raw_articles(settings)) == ["a", "b"]
    assert len(state_of(settings, site.url("/feed.xml")).seen) == 2


def test_a_batch_that_does_not_commit_keeps_its_pages_pending_and_counts(site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a", "b")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    poller = Poller(settings)
    real_start = poller.start
    before = metrics.BATCHES_NOT_COMMITTED._value.get()

    def start():
        real_start()
        real_transact = poller.txn.transact

        def transact(consumer, offsets, write, group_metadata=None):
            if poller.stats.batches == 0:  # the batch's transaction: lost (the broker went away)
                raise SinkUnavailable("injected: kafka transaction not committed")
            return real_transact(consumer, offsets, write, group_metadata)
        poller.txn.transact = transact
    poller.start = start
    poller.run(once=True)
    assert metrics.BATCHES_NOT_COMMITTED._value.get() == before + 1
    [slot] = poller.table.slots.values()
    assert {p.guid for p in slot.state.pending} == {"a", "b"} and not slot.state.seen
    assert slot.pages_due_at is not None and slot.pages_due_at > poller.clock()  # fetched again, later
    assert raw_articles(settings) == []

    Poller(settings).run(once=True)  # nothing was written: a new owner polls the feed and fetches them
    assert sorted(r.entry.guid for r in raw_articles(settings)) == ["a", "b"]
    assert len(state_of(settings, site.url("/feed.xml")).seen) == 2


def test_a_transaction_lost_once_is_written_again_with_the_same_records_without_fetching_again(
        site, tmp_path, make_settings):
    site.add("/feed.xml", rss("S", pages(site, "a", "b")), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")))
    poller = Poller(settings)
    real_start = poller.start
    lost = []

    def start():
        real_start()
        real_transact = poller.txn.transact

        def transact(consumer, offsets, write, group_metadata=None):
            if not lost:  # the first transaction: its coordinator went away with its broker
                lost.append(1)
                raise SinkUnavailable("injected: kafka transaction not committed, producer replaced")
            return real_transact(consumer, offsets, write, group_metadata)
        poller.txn.transact = transact
    poller.start = start
    poller.run(once=True)
    assert (site.hits("/a"), site.hits("/b")) == (1, 1)  # written again from memory
    assert sorted(r.entry.guid for r in raw_articles(settings)) == ["a", "b"]
    assert len(state_of(settings, site.url("/feed.xml")).seen) == 2


def test_oversized_pages_go_to_the_dead_letter_topic_and_nothing_crashes(site, tmp_path, make_settings):
    site.add("/huge", hostile.page_html("huge", "x" * 20_000))
    items = pages(site, "ok") + [{"link": site.url("/huge"), "title": "huge", "guid": "huge"}]
    site.add("/feed.xml", rss("S", items), content_type="application/rss+xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/feed.xml")), max_message_bytes=8192)
    Poller(settings).run(once=True)
    [dead] = records(settings, settings.topic_dlq)
    headers = dict(dead.headers)
    assert headers["nf-error-class"] == b"page_too_large" and headers["nf-stage"] == b"poller"
    assert dead.key == T.page_article_id(S.EntryRef(key="k", version="v", page_url=site.url("/huge"))).encode()
    assert [r.url for r in raw_articles(settings)] == [site.url("/ok")]
    assert not state_of(settings, site.url("/feed.xml")).pending


def test_a_consistent_permanent_redirect_updates_the_stored_feed_url(site, tmp_path, make_settings):
    site.add("/new.xml", rss("S", pages(site, "a")), content_type="application/rss+xml")
    hostile.install_redirect_chain(site, "/old.xml", [301], "/new.xml")
    settings = make_settings(feeds_file=feeds_file(tmp_path, site.url("/old.xml")))
    for _ in range(T.PERMANENT_REDIRECT_POLLS):
        Poller(settings).run(once=True, force=True)
    [(_p, d)] = load_catalog(settings)[0].values()
    assert (d.url, d.moved_from, d.added_url) == (site.url("/new.xml"), site.url("/old.xml"), site.url("/old.xml"))
    old_hits = site.hits("/old.xml")
    Poller(settings).run(once=True, force=True)
    assert site.hits("/old.xml") == old_hits and site.hits("/new.xml") == old_hits + 1
    assert site.hits("/a") == 1  # the move did not make old entries new
