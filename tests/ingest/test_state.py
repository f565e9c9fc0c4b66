"""The feed-state record (``ingest.state``): its size bound, and stored records of older releases."""

from __future__ import annotations

from ingest import state as S
from ingest.parse import parse_feed
from tests.support import hostile

URL = "https://news.example/feed.xml"


def test_state_record_stays_under_the_topic_limit():
    body = hostile.rss_document(b"".join(
        f"<item><guid>g{i}</guid><title>T</title><link>https://news.example/g{i}</link></item>".encode()
        for i in range(500)))
    refs = parse_feed(body, url=URL, content_type="application/rss+xml", max_entries=500).entries
    big = S.FeedState(feed_id="f1", url=URL).model_copy(update={
        "pending": [r.model_copy(update={"summary": "s" * 499}) for r in refs],
        "seen": {f"{i:016x}": S.SeenEntry(version="12345678", first_seen=1, last_in_feed=2, article="a" * 16)
                 for i in range(20000)},
    })
    data = big.to_bytes()
    assert len(data) <= S.STATE_MAX_BYTES
    assert S.FeedState.from_bytes(data).feed_id == "f1"


# A state record as the releases before the named fields wrote it (one-letter keys).
OLD_RECORD = (b'{"feed_id":"f1","url":"https://news.example/feed.xml",'
              b'"seen":{"e1":{"v":"3","f":100,"l":200,"a":"aaaaaaaaaaaaaaaa","k":"bbbbbbbbbbbbbbbb"},'
              b'"e2":{"v":"1","f":5,"l":6}}}')


def test_a_state_written_with_one_letter_seen_keys_still_loads():
    st = S.FeedState.from_bytes(OLD_RECORD)
    e1, e2 = st.seen["e1"], st.seen["e2"]
    assert (e1.version, e1.first_seen, e1.last_in_feed, e1.article, e1.link) == (
        "3", 100, 200, "a" * 16, "b" * 16)
    assert (e2.version, e2.first_seen, e2.last_in_feed, e2.article, e2.link) == ("1", 5, 6, None, None)


def test_seen_entries_are_written_with_the_one_letter_keys_so_older_releases_read_them():
    st = S.FeedState.from_bytes(OLD_RECORD)
    assert st.to_bytes() == OLD_RECORD  # byte for byte what the older release wrote
    entry = S.SeenEntry(version="1", first_seen=1, last_in_feed=2, link="c" * 16)
    assert entry.to_bytes() == b'{"v":"1","f":1,"l":2,"k":"cccccccccccccccc"}'


def test_seen_entries_written_with_field_names_are_read_too():
    entry = S.SeenEntry.model_validate_json(b'{"version":"1","first_seen":1,"last_in_feed":2,"article":"d"}')
    assert (entry.version, entry.first_seen, entry.last_in_feed, entry.article) == ("1", 1, 2, "d")
