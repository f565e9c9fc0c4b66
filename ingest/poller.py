"""The poller stage: feed list -> poll feeds -> fetch new entries' pages -> ``articles.raw``."""

from __future__ import annotations

import calendar
import logging
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import httpx
import yaml

from newsflow.kafka_io import make_producer
from newsflow.schema import FeedEntry, RawArticle, article_id
from newsflow.settings import Settings
from ingest.urls import canonical_url

log = logging.getLogger(__name__)


def load_feed_list(path: Path) -> list[dict]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    feeds = data.get("feeds", []) if isinstance(data, dict) else data
    return [f if isinstance(f, dict) else {"url": f} for f in feeds]


def _entry_time(entry, key: str) -> datetime | None:
    value = entry.get(f"{key}_parsed")
    if not value:
        return None
    return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)


def feed_entry(entry) -> FeedEntry:
    return FeedEntry(
        guid=entry.get("id"),
        title=entry.get("title"),
        link=entry.get("link"),
        published=_entry_time(entry, "published") or _entry_time(entry, "updated"),
        updated=_entry_time(entry, "updated"),
        author=entry.get("author"),
        summary=entry.get("summary"),
        tags=[t.get("term") for t in entry.get("tags", []) if t.get("term")],
    )


class Poller:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.http = httpx.Client(
            headers={"User-Agent": settings.user_agent},
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=True,
            max_redirects=settings.max_redirects,
        )
        self.producer = make_producer(settings)
        self.seen: dict[str, datetime] = {}
        self._stop = threading.Event()

    def poll_feed(self, feed_url: str) -> int:
        resp = self.http.get(feed_url)
        resp.raise_for_status()
        parsed = feedparser.parse(resp.content, response_headers={k: v for k, v in resp.headers.items()})
        feed_title = parsed.feed.get("title")
        sent = 0
        for entry in parsed.entries[: self.settings.max_entries_per_feed]:
            link = entry.get("link")
            if not link:
                continue
            url = str(httpx.URL(feed_url).join(link))
            canon = canonical_url(url)
            aid = article_id(canon)
            if aid in self.seen:
                continue
            page = self.http.get(url)
            if page.status_code >= 400:
                log.warning("page %s answered %s", url, page.status_code)
                continue
            now = datetime.now(UTC)
            raw = RawArticle(
                id=aid, url=url, canonical_url=canon, final_url=str(page.url), feed_url=feed_url,
                feed_title=feed_title, entry=feed_entry(entry), fetched_at=now,
                first_seen_at=self.seen.setdefault(aid, now), status=page.status_code,
                content_type=page.headers.get("content-type"), body_b64=RawArticle.encode_body(page.content),
            )
            self.producer.send(self.settings.topic_raw, key=aid.encode(), value=raw.to_bytes())
            sent += 1
        self.producer.flush()
        return sent

    def poll_all(self) -> int:
        total = 0
        for feed in load_feed_list(self.settings.feeds_file):
            try:
                total += self.poll_feed(feed["url"])
            except (httpx.HTTPError, OSError) as exc:
                log.warning("feed %s failed: %r", feed["url"], exc)
        return total

    def run(self, *, once: bool = False) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        try:
            while not self._stop.is_set():
                n = self.poll_all()
                log.info("poll cycle produced %d articles", n)
                if once:
                    break
                self._stop.wait(self.settings.poll_interval_s)
        finally:
            self.close()

    def close(self) -> None:
        self.producer.close(timeout=10)
        self.http.close()
