"""The poller on the real local Kafka: restarts, commit order, dead letters, moves (the feed table:
``test_feed_table.py``)."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from ingest import state as S
from ingest import transitions as T
from ingest.poller import Poller
from ingest.store import load_catalog
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
        poller.producer = FailingRawTopic(poller.producer, settings.topic_raw)
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
