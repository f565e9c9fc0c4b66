"""The indexer stage: ``articles.enriched`` -> Elasticsearch (monthly indices behind the read alias).

Writes are idempotent forever, without a search before a write:

* ``_id`` is sha256 of the canonical URL (``newsflow.schema.article_id``; a record whose id does
  not match its URL is dead-lettered);
* the index is ``<generation>-YYYY.MM`` of ``first_seen_at``, which never changes for a URL, so
  a re-delivery (even with an edited ``published_at`` in another month) hits the same document;
* ``version_type=external`` with ``processed_at`` in ms as the version: a re-processed article
  replaces the old one, an identical or older re-delivery is a 409, counted as a duplicate.

The transform (``Indexer.process``) checks the record's head (``newsflow.schema.ArticleHead``: the
fields it reads and the ones every document needs, typed; Elasticsearch's strict mapping judges the
rest) and returns a typed ``BulkItem`` (``processors.index.bulk``): the document bytes as they came
(re-serialised only when the record is not one compact JSON line, or is a v1 record), its id, version
and month. ``ElasticsearchSink`` (``processors.index.sink``)
writes those items as they are; commit order and failure handling are described there.
"""

from __future__ import annotations

from datetime import datetime

from kafka.consumer.fetcher import ConsumerRecord

from newsflow.elastic import month_of
from newsflow.kafka_io import make_member_consumer
from newsflow.schema import ARTICLE_SCHEMA_VERSION, Article, ArticleHead, article_id
from newsflow.settings import Settings
from newsflow.stage.outcomes import Drop, Quarantine, Stage
from newsflow.stage.runner import StageRunner
from processors.index.bulk import BulkItem
from processors.index.sink import ElasticsearchSink


def version_of(processed_at: datetime) -> int:
    """External version: ``processed_at`` in ms. Newer processing wins; a re-delivery is a 409."""
    return int(processed_at.timestamp() * 1000)


class Indexer(Stage):
    """Pure transform: validate the enriched record and turn it into one bulk item."""

    name = "indexer"

    def process(self, record: ConsumerRecord) -> BulkItem:
        if record.value is None:
            raise Drop("tombstone")
        try:
            head = ArticleHead.model_validate_json(record.value)
            if head.schema_version != ARTICLE_SCHEMA_VERSION:  # an older record: read whole, written as today's
                head = article = Article.from_bytes(record.value)
                body = article.to_bytes()
            else:
                body = record.value.strip()
                if b"\n" in body or not body.endswith(b"}"):  # not one compact JSON line: written compact
                    body = Article.from_bytes(body).to_bytes()
        except ValueError as exc:  # pydantic's ValidationError included (invalid JSON too)
            raise Quarantine("invalid_article", str(exc)[:1000]) from exc
        if head.id != article_id(head.canonical_url):
            raise Quarantine("id_mismatch", f"id {head.id} is not sha256 of {head.canonical_url!r}")
        return BulkItem(key=head.id.encode(), value=body, month=month_of(head.first_seen_at),
                        version=version_of(head.processed_at), fetched_at=head.fetched_at.timestamp())


def make_runner(settings: Settings) -> StageRunner:
    return StageRunner(
        settings,
        Indexer(),
        source=settings.topic_enriched,
        group=settings.group("indexer"),
        sink=ElasticsearchSink(settings),
        consumer=make_member_consumer(settings, "indexer"),
    )
