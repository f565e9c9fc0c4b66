"""Every feed of the shared corpus (feedparser's own test feeds) goes through the poller's parse path
without an exception, and yields the entries feedparser alone yields."""

from __future__ import annotations

import json

import feedparser
import pytest

from ingest.parse import NotAFeed, parse_feed
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus

FEEDS = CORPUS / "feeds"


def test_every_corpus_feed_parses_like_feedparser_alone():
    if not (FEEDS / "index.json").is_file():
        pytest.skip(f"corpus feeds not found at {FEEDS} (set NEWSFLOW_CORPUS to the shared corpus directory)")
    index = json.loads((FEEDS / "index.json").read_text(encoding="utf-8"))
    assert len(index) > 1000
    mismatches, refused = [], 0
    for item in index:
        body = (FEEDS / item["path"]).read_bytes()
        headers = {k.lower(): v for k, v in item.get("headers") or []}
        content_type = headers.get("content-type")
        expected = len(feedparser.parse(body, response_headers=headers).entries)
        try:
            got = len(parse_feed(body, url="http://127.0.0.1/feed.xml", content_type=content_type,
                                 max_entries=1_000_000).entries)
        except NotAFeed:
            refused += 1
            got = 0  # a classified refusal: only right when feedparser found nothing either
        if got != expected:
            mismatches.append(f"{item['path']}: {got} entries, feedparser alone {expected}")
    assert not mismatches, f"{len(mismatches)} of {len(index)} differ:\n" + "\n".join(mismatches[:50])
    assert refused < len(index) // 2
