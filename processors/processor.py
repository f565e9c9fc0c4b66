"""The processor stage: ``articles.raw`` -> clean + enrich -> ``articles.enriched``, exactly once.

Per batch: the records go to the extraction pool all at once (``processors/pool.py``: workers,
timeouts, size and memory guards); each result then gets its story label here, in record order,
from the recent-articles window (``processors/enrich/stories.py``), and becomes one ``Out``.
The stage is two-phase (``submit``/``collect``/``abandon``, see ``newsflow/stage/runner.py``): the runner
submits the next batch before it collects and delivers this one, so the workers do not wait on
the last pages of a batch or on its transaction. Batches are collected in order, so story labels
are given in record order across batches too.
Delivery is the runner's ``TransactionalKafkaSink``: outputs, dead letters and the consumed
offsets commit in one Kafka transaction, so a killed processor leaves neither a gap nor a
duplicate for ``read_committed`` readers.

The story window lives in this process. At start it is seeded from the tail of
``articles.enriched`` (committed records only), so a restart keeps labelling new articles into
the stories it had seen; several processor instances each label with their own window.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future

from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import Gauge, Histogram
from pydantic import ValidationError

from newsflow.kafka_io import make_consumer, make_member_consumer
from newsflow.liveness import stall_after_s
from newsflow.partitions import RangeReadTimeout, read_range, topic_partitions
from newsflow.schema import Article
from newsflow.settings import Settings
from newsflow.stage.outcomes import Out
from newsflow.stage.runner import StageRunner
from newsflow.stage.sinks import TransactionalKafkaSink
from processors.enrich.stories import NEAR_DUP, SAME_TOPIC, StoryIndex, decode_signature, topic_set
from processors.pool import ExtractionPool, WorkerResult

log = logging.getLogger(__name__)

STEP_SECONDS = Histogram(
    "newsflow_processor_step_seconds", "Time per document in each processing step", ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WORKER_RSS = Gauge("newsflow_processor_worker_max_rss_bytes", "Peak RSS of the extraction worker of the last document")
STORY_WINDOW = Gauge("newsflow_processor_story_window", "Articles in the story window")


class Processor:
    name = "processor"

    def __init__(self, settings: Settings, pool: ExtractionPool, stories: StoryIndex | None):
        self.settings = settings
        self.pool = pool
        self.stories = stories

    def process(self, record: ConsumerRecord) -> Out:
        """One record (the runner's retry path); same workers and limits as a batch."""
        outcome = self.pool.run([record.value])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return self.finish(outcome)

    def submit(self, records: list[ConsumerRecord]) -> list[Future]:
        """Queue the batch in the extraction pool and return at once (runner's two-phase hook)."""
        return self.pool.submit([r.value for r in records])

    def collect(self, handle: list[Future]) -> list[Out | None | BaseException]:
        """Wait for a submitted batch; story labels here, in record order."""
        return [o if isinstance(o, BaseException) else self.finish(o) for o in self.pool.collect(handle)]

    def abandon(self, handle: list[Future]) -> None:
        """The runner will not collect this batch (shutdown, or the batch before it was not delivered)."""
        self.pool.cancel(handle)

    def finish(self, result: WorkerResult) -> Out:
        """Story label (in record order), metrics, serialisation."""
        for step, seconds in result.built.timings.items():
            STEP_SECONDS.labels(step).observe(seconds)
        WORKER_RSS.set(result.max_rss_kib * 1024)
        article = label_story(result.built.article, self.stories) if self.stories is not None else result.built.article
        return Out(key=article.id.encode(), value=article.to_bytes())

    def close(self) -> None:
        self.pool.close()


def label_story(article: Article, stories: StoryIndex) -> Article:
    if not article.minhash:
        return article
    topics = topic_set(article.persons, article.organizations, article.places, article.keywords)
    story = stories.assign(article.id, decode_signature(article.minhash), topics, article.published_at)
    STORY_WINDOW.set(len(stories))
    steps = article.provenance.steps | {
        "stories": f"LSH window {len(stories)}/{stories.window}, near-dup>={NEAR_DUP}, topic>={SAME_TOPIC}"
    }
    provenance = article.provenance.model_copy(update={"steps": steps})
    return article.model_copy(update={"story_id": story, "provenance": provenance})


def seed_story_window(settings: Settings, stories: StoryIndex, *, timeout_s: float = 60.0) -> int:
    """Load the last ``story_window`` committed articles of ``articles.enriched`` into the window."""
    consumer = make_consumer(settings, None, enable_auto_commit=False)
    try:
        tps = topic_partitions(consumer, settings.topic_enriched)
        if not tps:
            return 0
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        per_partition = math.ceil(stories.window / len(tps))
        starts = {tp: max(begins[tp], ends[tp] - per_partition) for tp in tps}
        loaded = 0
        try:
            for batch in read_range(consumer, starts, ends, timeout_s=timeout_s):
                for rec in batch:
                    try:
                        article = Article.from_bytes(rec.value)
                    except (ValidationError, ValueError):
                        continue  # not ours to judge here: the indexer dead-letters it
                    if article.minhash and article.story_id:
                        topics = topic_set(article.persons, article.organizations, article.places, article.keywords)
                        stories.add(article.id, article.story_id, decode_signature(article.minhash), topics,
                                    article.published_at)
                        loaded += 1
        except RangeReadTimeout as exc:
            log.warning("story window seeding stopped: %s", exc)
        log.info("story window seeded with %d articles from %s", loaded, settings.topic_enriched)
        STORY_WINDOW.set(len(stories))
        return loaded
    finally:
        consumer.close(autocommit=False)


def max_poll_interval_ms(settings: Settings) -> int:
    """The processor's liveness bound (``newsflow.liveness``): two batches of timeouts, since a retry
    queues behind the batch submitted ahead. Its group consumer (``make_member_consumer``) uses it too."""
    return int(stall_after_s(settings, "processor") * 1000)


def make_runner(settings: Settings) -> StageRunner:
    group = settings.group("processor")
    stories = StoryIndex(settings.story_window) if settings.enrich else None
    if stories is not None:
        seed_story_window(settings, stories)
    pool = ExtractionPool(settings)
    pool.start()
    processor = Processor(settings, pool, stories)
    sink = TransactionalKafkaSink(
        settings, "processor", settings.topic_enriched, transactional_id=f"{group}-{settings.instance_id}"
    )
    return StageRunner(
        settings, processor, source=settings.topic_raw, group=group, sink=sink,
        consumer=make_member_consumer(settings, "processor"),
    )
