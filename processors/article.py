"""RawArticle -> Article: extraction and metadata merge. Pure: no Kafka, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import trafilatura

from newsflow.runner import Quarantine
from newsflow.schema import Article, Provenance, RawArticle

EXTRACTOR = "trafilatura"
EXTRACTOR_VERSION = trafilatura.__version__


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def build_article(raw: RawArticle, *, now: datetime | None = None) -> Article:
    """Extract the page and merge it with the feed entry's metadata."""
    now = now or datetime.now(UTC)
    doc = trafilatura.bare_extraction(raw.body, url=raw.final_url, with_metadata=True)
    if doc is None or not (doc.text or "").strip():
        raise Quarantine("empty_extraction", f"no main text found in {raw.final_url}")
    fields: dict[str, str] = {}
    title = doc.title or raw.entry.title
    fields["title"] = "page" if doc.title else "feed"
    published = raw.entry.published or _parse_date(doc.date)
    fields["published_at"] = "feed" if raw.entry.published else "page"
    host = (urlsplit(raw.canonical_url).hostname or "").lower()
    return Article(
        id=raw.id,
        url=raw.url,
        canonical_url=raw.canonical_url,
        final_url=raw.final_url,
        feed_url=raw.feed_url,
        host=host,
        source=raw.feed_title or doc.sitename or host,
        site_name=doc.sitename,
        title=title,
        text=doc.text,
        description=doc.description,
        author=doc.author or raw.entry.author,
        published_at=published,
        fetched_at=raw.fetched_at,
        first_seen_at=raw.first_seen_at,
        processed_at=now,
        categories=list(doc.categories or []),
        tags=list(doc.tags or []) or list(raw.entry.tags),
        image=doc.image or raw.entry.image,
        word_count=len(doc.text.split()),
        provenance=Provenance(extractor=EXTRACTOR, extractor_version=EXTRACTOR_VERSION, fields=fields),
    )
