"""The records that flow between stages, versioned.

``RawArticle``   poller -> ``articles.raw``       (page bytes + feed entry metadata)
``Article``      processor -> ``articles.enriched`` (clean text, metadata, enrichment)

Both carry ``schema_version``; a consumer rejects (dead-letters) a version it does not know.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ingest.urls import identity_key

Access = Literal["free", "paywalled", "unknown"]  # Article.access (processors/access.py)
ACCESS_VALUES: tuple[str, ...] = get_args(Access)
RAW_SCHEMA_VERSION = 1
# Article v2: ``authors`` (a list of names) replaces v1's ``author`` (one string). A v1 record is
# still read: its ``author`` becomes a one-name ``authors`` list.
ARTICLE_SCHEMA_VERSION = 2


def article_id(canonical_url: str) -> str:
    """The one identity of an article everywhere: Kafka key, Elasticsearch ``_id``, log field.

    sha256 of the URL's identity form (``ingest.urls.identity_key``: no scheme, no ``www.``/``m.``
    host prefix, no trailing slash), so every spelling of one page's URL gives the same id. The
    poller computes it from the canonical URL the page declares (README, "Article identity")."""
    return hashlib.sha256(identity_key(canonical_url).encode("utf-8")).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.model_validate_json(data)


class ArticleHead(BaseModel):
    """What the indexer checks of an enriched record before writing its bytes as they are: the fields
    it reads (id, URL, times) and the short ones every document needs, typed. The rest (the text too)
    is Elasticsearch's to judge: its mapping is ``dynamic: strict``, so an unknown field or a wrong
    type comes back as an item error and is dead-lettered with that reason. A third of the CPU of
    building the whole ``Article``. A v1 record is read as an ``Article`` (``Indexer.process``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1, 2] = ARTICLE_SCHEMA_VERSION
    id: str
    url: str
    canonical_url: str
    host: str
    source: str
    fetched_at: datetime
    first_seen_at: datetime
    processed_at: datetime


class FeedEntry(_Model):
    """What the feed said about the entry, before the page was fetched."""

    guid: str | None = None
    title: str | None = None
    link: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    author: str | None = None
    summary: str | None = None
    tags: list[str] = Field(default_factory=list)
    image: str | None = None
    language: str | None = None  # as the source declares it (a news sitemap's news:language)


class RawArticle(_Model):
    schema_version: Literal[1] = RAW_SCHEMA_VERSION
    id: str  # article_id(canonical_url)
    url: str  # the feed entry's link, as the feed gave it (resolved)
    canonical_url: str  # the URL the article is known by (ingest.urls.pick_canonical), normalised
    canonical_from: Literal["page", "fetched", "link"] = "link"  # declared by the page / final URL / entry link
    final_url: str  # where the page was fetched from, after redirects
    feed_url: str | None = None
    feed_title: str | None = None
    entry: FeedEntry = Field(default_factory=FeedEntry)
    fetched_at: datetime
    first_seen_at: datetime
    status: int = 200
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # The page's character encoding as the poller determined it (BOM, header, <meta>, detection; a
    # declared charset the bytes do not decode with is not believed). ``body`` stays the raw bytes.
    charset: str | None = None
    body_b64: str

    @property
    def body(self) -> bytes:
        return base64.b64decode(self.body_b64)

    @staticmethod
    def encode_body(body: bytes) -> str:
        return base64.b64encode(body).decode("ascii")


class Quote(_Model):
    text: str
    speaker: str | None = None
    speaker_raw: str | None = None


class Provenance(_Model):
    extractor: str
    extractor_version: str
    fields: dict[str, str] = Field(default_factory=dict)
    steps: dict[str, str] = Field(default_factory=dict)


class Article(_Model):
    schema_version: Literal[1, 2] = ARTICLE_SCHEMA_VERSION
    id: str
    url: str
    canonical_url: str
    final_url: str | None = None
    feed_url: str | None = None
    host: str
    source: str
    site_name: str | None = None
    title: str | None = None
    text: str
    description: str | None = None
    authors: list[str] = Field(default_factory=list, description="Person names (processors/authors.py).")
    published_at: datetime | None = None
    fetched_at: datetime
    first_seen_at: datetime
    processed_at: datetime
    language: str | None = None
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    image: str | None = None
    # From the page's own declarations or a truncated text (processors/access.py); the source is in
    # provenance.fields["access"]. A publisher's declaration is its intent, not proof.
    access: Access = "unknown"
    persons: list[str] = Field(default_factory=list)
    organizations: list[str] = Field(default_factory=list)
    places: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list, description="DATE entities as written, e.g. 'Monday'.")
    numbers: list[str] = Field(default_factory=list, description="Money, percentages, quantities, counts.")
    quotes: list[Quote] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    word_count: int = 0
    reading_time_s: int = 0
    content_hash: str | None = None
    minhash: str | None = Field(None, description="MinHash of word 3-shingles: base64 of 64 little-endian uint32.")
    story_id: str | None = None
    provenance: Provenance

    @model_validator(mode="before")
    @classmethod
    def _v1_author(cls, data: Any) -> Any:
        """A v1 record's one ``author`` string -> ``authors`` (read as v2 from then on)."""
        if isinstance(data, dict) and "author" in data:
            data = dict(data)
            author = data.pop("author")
            data.setdefault("authors", [author] if author else [])
            data["schema_version"] = ARTICLE_SCHEMA_VERSION
        return data
