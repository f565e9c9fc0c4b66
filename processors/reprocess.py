"""``newsflow reprocess``: run pages already fetched through the current processor, without fetching.

When extraction or enrichment improves (a rule, a setting, a model), the pages ``articles.raw``
still holds (``raw_retention_days``, ``newsflow/topology.py``) go through the same chain again:

* the same stage: the processor's ``Processor`` (extraction pool, limits, story labels seeded from
  ``articles.enriched``), wrapped by ``Reprocessor``, which passes on only the selected pages
  (``Selection``: ``--since`` on ``fetched_at``, ``--host``) and drops the rest;
* the same delivery: the runner's ``TransactionalKafkaSink`` to ``articles.enriched``, so outputs,
  dead letters and the consumed offsets commit in one transaction (exactly once);
* the same indexing: the live indexer picks the new records up; each carries a newer
  ``processed_at``, the indexer's external version, so it replaces the indexed document.

Progress lives in a consumer group of its own, ``<prefix>-reprocess-<selection>``: an interrupted
run (Ctrl-C, kill -9) resumes where its last transaction ended when the same command is run again,
and ``--limit N`` stops after N selected pages (the next run takes the next N). The run goes up to
the end offsets read when it started; when it gets there, the group is deleted, so the next
reprocess starts from the oldest page again.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from ingest.urls import bare_host
from newsflow.kafka_io import make_consumer
from newsflow.partitions import end_offsets, unfinished
from newsflow.schema import RawArticle
from newsflow.settings import Settings
from newsflow.stage.outcomes import Batch, Drop, Out
from newsflow.stage.runner import StageRunner
from newsflow.stage.sinks import TransactionalKafkaSink
from processors.enrich.stories import StoryIndex
from processors.index.reindex import Progress, committed_offsets, delete_group, drain
from processors.pool import ExtractionPool
from processors.processor import Processor, max_poll_interval_ms, seed_story_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which stored pages to reprocess: fetched at or after ``since``, on ``host`` (and its
    subdomains; ``www.``/``m.`` ignored). ``label`` names the selection as the user gave it."""

    since: datetime | None = None
    host: str | None = None
    label: str = "all"

    def matches(self, raw: RawArticle) -> bool:
        if self.since is not None and raw.fetched_at < self.since:
            return False
        if self.host:
            have = bare_host((urlsplit(raw.canonical_url).hostname or "").lower())
            want = bare_host(self.host.lower().strip("."))
            if have != want and not have.endswith(f".{want}"):
                return False
        return True


def selection_label(since: str | None, host: str | None) -> str:
    """The consumer-group suffix of a selection, from the arguments as typed (so the same command
    resumes, even with a relative ``--since 7d``)."""
    parts = [f"since-{since}" if since else "", f"host-{host.lower()}" if host else ""]
    return re.sub(r"[^a-z0-9._-]+", "_", "-".join(p for p in parts if p).lower()) or "all"


def group_for(settings: Settings, selection: Selection) -> str:
    return settings.group(f"reprocess-{selection.label}")


class Reprocessor:
    """The processor stage, for the selected pages only (a two-phase stage, like ``Processor``)."""

    name = "reprocess"

    def __init__(self, processor: Processor, selection: Selection, limit: int | None = None):
        self.processor = processor
        self.selection = selection
        self.limit = limit
        self.selected = 0  # pages handed to the processor

    def remaining(self) -> int:
        """Records the runner may still poll: with a limit, never more than the pages still wanted."""
        return self.processor.settings.batch_size if self.limit is None else self.limit - self.selected

    def enough(self) -> bool:
        return self.limit is not None and self.selected >= self.limit

    def choose(self, record: ConsumerRecord) -> Drop | None:
        """None for a page to reprocess, else why not. A record that is no RawArticle was
        dead-lettered by the live processor already: dropped here, not dead-lettered twice."""
        try:
            raw = RawArticle.from_bytes(record.value or b"")
        except (ValidationError, ValueError):
            return Drop("invalid_raw_record")
        return None if self.selection.matches(raw) else Drop("not_selected")

    def process(self, record: ConsumerRecord) -> Out:
        """The runner's retry path, one record."""
        if (skip := self.choose(record)) is not None:
            raise skip
        return self.processor.process(record)

    def submit(self, records: list[ConsumerRecord]) -> tuple[list[Drop | None], list[Future]]:
        skips = [self.choose(r) for r in records]
        chosen = [r for r, skip in zip(records, skips, strict=True) if skip is None]
        self.selected += len(chosen)
        return skips, self.processor.submit(chosen)

    def collect(self, handle: tuple[list[Drop | None], list[Future]]) -> list[Out | None | BaseException]:
        skips, futures = handle
        done = iter(self.processor.collect(futures))
        return [skip if skip is not None else next(done) for skip in skips]

    def abandon(self, handle: tuple[list[Drop | None], list[Future]]) -> None:
        self.processor.abandon(handle[1])

    def close(self) -> None:
        self.processor.close()


class CountingSink(TransactionalKafkaSink):
    """The transactional sink, counting what each committed transaction held."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts: Counter[str] = Counter()

    def write(self, consumer: KafkaConsumer, batch: Batch) -> None:
        super().write(consumer, batch)
        self.counts.update(reprocessed=len(batch.outputs), dead_letters=len(batch.dead),
                           skipped=len(batch.records) - len(batch.outputs) - len(batch.dead))


@dataclass
class ReprocessReport:
    group: str
    resumed: bool
    finished: bool  # reached the end offsets read at the start (the group was deleted)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def reprocess(settings: Settings, selection: Selection = Selection(), *, limit: int | None = None,
              progress: Progress | None = None, counts: Callable[[Counter[str]], None] | None = None,
              ) -> ReprocessReport:
    """Feed the selected pages of ``articles.raw`` through the current processor into
    ``articles.enriched``, exactly once, resumably (module docstring)."""
    started = time.monotonic()
    group = group_for(settings, selection)
    resumed = bool(committed_offsets(settings, group))
    stories = StoryIndex(settings.story_window) if settings.enrich else None
    if stories is not None:
        seed_story_window(settings, stories)
    pool = ExtractionPool(settings)
    pool.start()
    stage = Reprocessor(Processor(settings, pool, stories), selection, limit)
    try:
        sink = CountingSink(settings, stage.name, settings.topic_enriched,
                            transactional_id=f"{group}-{settings.instance_id}")
        # Not static membership (the processor's): the group is deleted at the end, which a static
        # member would block until its session timed out.
        consumer = make_consumer(settings, group, max_poll_interval_ms=max_poll_interval_ms(settings))
    except BaseException:
        stage.close()  # the workers; the runner would have closed them
        raise
    runner = StageRunner(settings, stage, source=settings.topic_raw, group=group, sink=sink, consumer=consumer,
                         max_records=stage.remaining)
    try:
        ends = end_offsets(consumer, settings.topic_raw)

        def report(done: int, total: int) -> None:
            if progress:
                progress(done, total)
            if counts:
                counts(sink.counts)

        drain(runner, ends, report, enough=stage.enough)
        finished = not unfinished(consumer, ends)
    finally:
        runner.close()  # closes the sink, the consumer (leaves the group) and the pool
    if finished:
        delete_group(settings, group)
    return ReprocessReport(group=group, resumed=resumed, finished=finished, counts=dict(sink.counts),
                           seconds=round(time.monotonic() - started, 2))
