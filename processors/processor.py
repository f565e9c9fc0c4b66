"""The processor stage: ``articles.raw`` -> clean + enrich -> ``articles.enriched``, exactly once."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from newsflow.runner import Out, Quarantine, StageRunner, TransactionalKafkaSink
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from processors.article import build_article


class Processor:
    name = "processor"

    def process(self, record: ConsumerRecord) -> Out:
        try:
            raw = RawArticle.from_bytes(record.value)
        except (ValidationError, ValueError) as exc:
            raise Quarantine("invalid_raw_record", str(exc)[:500]) from exc
        article = build_article(raw)
        return Out(key=article.id.encode(), value=article.to_bytes())


def make_runner(settings: Settings) -> StageRunner:
    group = settings.group("processor")
    sink = TransactionalKafkaSink(
        settings, "processor", settings.topic_enriched, transactional_id=f"{group}-{settings.instance_id}"
    )
    return StageRunner(settings, Processor(), source=settings.topic_raw, group=group, sink=sink)
