"""``newsflow reindex --to articles-v2``: rebuild the index from Kafka, then swap the read alias.

Why this works: ``articles.enriched`` is compacted by article id (``newsflow/topology.py``), so it
keeps the latest version of every article forever; replaying it from the beginning rebuilds every
document, with today's template (mapping, analyzer). Elasticsearch's own ``_reindex`` is not needed
(the local distribution does not even have it), and Kafka stays the source of truth.

Steps, while the live indexer keeps running:

1. apply the current template; refuse a target that is the current generation, or that already
   has indices unless this is a resumed run (its consumer group has committed offsets);
2. replay ``articles.enriched`` with the indexer's own stage and sink (same idempotent writes,
   same DLQ) into ``<target>-YYYY.MM``, created without the alias, up to the end offsets read at
   the start; a consumer group of its own (``<prefix>-reindex-<target>``) commits progress, so
   Ctrl-C and a rerun resume;
3. refresh and swap the alias atomically to the target generation; the live indexer, which looks
   up the generation before each bulk, writes to the new one from its next batch;
4. catch up: replay again up to the end offsets read after the swap (whatever the live indexer
   wrote to the old generation meanwhile; a record it consumed before the swap was in the topic
   before the swap), then swap again to fix stragglers (an old-generation month index created
   with the alias during the swap);
5. delete the reindex consumer group. The old generation's indices are kept, out of the alias:
   delete them when satisfied (the report names them; ``articles*`` data views would count both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kafka import TopicPartition

from newsflow.elastic import (
    apply_template,
    check_generation,
    current_generation,
    ensure_index,
    generation_indices,
    index_name,
    make_es,
    swap_alias,
)
from newsflow.kafka_io import make_admin, make_consumer
from newsflow.partitions import committed_or_beginning, end_offsets, unfinished
from newsflow.settings import Settings
from newsflow.stage.runner import StageRunner
from processors.index.indexer import Indexer
from processors.index.sink import ElasticsearchSink

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (offsets done, offsets total)
ASSIGNMENT_TIMEOUT_S = 120.0


@dataclass
class ReindexReport:
    alias: str
    previous: str
    target: str
    indexed: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    caught_up: int = 0
    seconds: float = 0.0
    target_indices: list[str] = field(default_factory=list)
    old_indices: list[str] = field(default_factory=list)


def reindex_group(settings: Settings, target: str) -> str:
    return settings.group(f"reindex-{target}")


def committed_offsets(settings: Settings, group: str) -> dict:
    admin = make_admin(settings)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {tp: o for tp, o in offsets.items() if o.offset >= 0}
    finally:
        admin.close()


def delete_group(settings: Settings, group: str) -> None:
    admin = make_admin(settings)
    try:
        result = admin.delete_groups([group])
        if dict(result).get(group, "OK") not in ("OK", "GroupIdNotFoundError"):
            log.warning("could not delete consumer group %s: %s", group, dict(result)[group])
    finally:
        admin.close()


def drain(runner: StageRunner, ends: dict[TopicPartition, int], progress: Progress | None = None, *,
          enough: Callable[[], bool] = lambda: False) -> int:
    """Run the stage until every partition's position reached ``ends`` (or ``enough()``) and no
    batch is left undelivered. Returns records consumed. Shared by ``reindex``
    and ``reprocess`` (``processors/reprocess.py``)."""
    consumer = runner.consumer
    consumed = 0
    starts = {tp: min(ends[tp], start) for tp, start in committed_or_beginning(consumer, ends).items()}
    waiting_since = time.monotonic()
    while True:
        consumed += runner.step()
        assigned = consumer.assignment()
        missing = [tp for tp in ends if tp not in assigned]
        if missing:
            if time.monotonic() - waiting_since > ASSIGNMENT_TIMEOUT_S:
                raise RuntimeError(f"partitions {missing} not assigned to the reindex consumer "
                                   f"(is another reindex to the same target running?)")
            continue
        if progress:
            positions = {tp: consumer.position(tp) for tp in ends}
            total = sum(ends[tp] - starts[tp] for tp in ends)
            done = sum(max(0, min(positions[tp], ends[tp]) - starts[tp]) for tp in ends)
            progress(done, total)
        if (enough() or not unfinished(consumer, ends)) and not runner.pending:
            runner.sink.flush(consumer)  # the indexer's last batch may still be written in the background
            return consumed


def reindex(
    settings: Settings,
    target: str,
    *,
    progress: Progress | None = None,
    phase: Callable[[str], None] = lambda _msg: None,
) -> ReindexReport:
    """Rebuild generation ``target`` from ``articles.enriched`` and swap the alias to it."""
    alias = settings.es_index
    check_generation(alias, target)
    started = time.monotonic()
    es = make_es(settings)
    try:
        apply_template(es, settings)
        previous = current_generation(es, alias)
        if target == previous:
            raise ValueError(f"{target!r} is already the current generation behind {alias!r}")
        group = reindex_group(settings, target)
        existing = generation_indices(es, target)
        if existing and not committed_offsets(settings, group):
            raise ValueError(f"{target!r} already has indices ({', '.join(existing)}) and no reindex to "
                             f"resume: delete them or pick another name")
        report = ReindexReport(alias=alias, previous=previous, target=target)
        sink = ElasticsearchSink(settings, stage="reindex", generation=target)
        consumer = make_consumer(settings, group)
        runner = StageRunner(settings, Indexer(), source=settings.topic_enriched, group=group,
                             sink=sink, consumer=consumer)
        try:
            phase(f"replaying {settings.topic_enriched} into {target}-*")
            drain(runner, end_offsets(consumer, settings.topic_enriched), progress)
            if not generation_indices(es, target):  # empty topic: the alias needs an index to point at
                ensure_index(es, index_name(target, datetime.now(UTC)), None)
            es.indices.refresh(index=f"{target}-*")
            phase(f"swapping alias {alias} to {target}")
            swap_alias(es, alias, target)
            phase("catching up with what arrived meanwhile")
            report.caught_up = drain(runner, end_offsets(consumer, settings.topic_enriched), None)
            es.indices.refresh(index=f"{target}-*")
            swap_alias(es, alias, target)
        finally:
            runner.close()  # closes the sink and the consumer (leaves the group)
        delete_group(settings, group)
        report.indexed = sink.counts["indexed"]
        report.duplicates = sink.counts["duplicate"]
        report.dead_letters = sink.counts["dead_letter"]
        report.target_indices = generation_indices(es, target)
        report.old_indices = generation_indices(es, previous)
        report.seconds = round(time.monotonic() - started, 2)
        return report
    finally:
        es.close()
