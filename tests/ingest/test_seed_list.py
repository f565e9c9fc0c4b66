"""The default feed list (newsflow/data/feeds.yaml) and the seed-list format (no feed is fetched: they are real, non-loopback URLs)."""

from __future__ import annotations

import pytest

from ingest.store import load_feeds_file
from newsflow.settings import Settings


def test_the_shipped_feed_list_is_valid_and_has_no_duplicates():
    defs = load_feeds_file(Settings().feeds_file)
    assert 15 <= len(defs) <= 40
    assert len({d.id for d in defs}) == len(defs)
    assert all(d.url.startswith("https://") and d.title and d.category for d in defs)


def test_seed_list_accepts_urls_and_mappings_and_refuses_the_rest(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("feeds:\n  - https://a.example/rss\n  - {url: 'https://b.example/atom', title: B, category: c}\n")
    assert [(d.url, d.title, d.category) for d in load_feeds_file(f)] == [
        ("https://a.example/rss", None, None), ("https://b.example/atom", "B", "c")]
    f.write_text("- https://a.example/rss\n")  # a bare list
    assert len(load_feeds_file(f)) == 1
    for bad in ("feeds:\n  - {title: no url}\n", "feeds:\n  - ftp://a.example/x\n"):
        f.write_text(bad)
        with pytest.raises(ValueError):
            load_feeds_file(f)
