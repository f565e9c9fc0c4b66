"""How long a healthy stage may go without progress: the liveness bound of ``/healthz``, derived
from the stage's own settings (pure).

A stage's main loop marks progress between batches (the indexer also on every Elasticsearch
answer). The longest legitimate gap is the stage's worst batch, computed from the settings that
bound it; ``/healthz`` fails only after that gap plus a margin, and never before ``FLOOR_S``. The
processor's consumer uses the same number as its ``max_poll_interval_ms``: liveness and group
membership agree, so a slow site can neither restart the pod nor cost it its partitions.

* processor: two batches of extraction timeouts over the workers (one batch runs ahead, and a
  retried page queues behind it): ``2 x batch_size x extract_timeout_s / extract_workers``;
* poller: one batch window plus the requests still in flight: ``poll_batch_s + total_timeout_s``;
* indexer: the gap between two Elasticsearch answers: creating the month's index and one bulk
  request (each at most ``ES_REQUEST_TIMEOUT_S``), the longest retry backoff, and the
  dead-letter acknowledgement (``DLQ_ACK_TIMEOUT_S``, flush then ack).
"""

from __future__ import annotations

from newsflow.settings import Settings

FLOOR_S = 600.0  # Kafka's own default poll interval is 300 s; never declare a stage dead sooner than this
MARGIN_S = 60.0  # commits, transactions, a slow poll
ES_REQUEST_TIMEOUT_S = 30.0  # every Elasticsearch request of a stage (newsflow.elastic.make_es)
DLQ_ACK_TIMEOUT_S = 30.0  # flush, then each dead letter's acknowledgement (processors/index/sink.py)


def worst_batch_s(settings: Settings, stage: str) -> float:
    """The longest a healthy ``stage`` spends between two marks of progress, from its settings."""
    if stage == "processor":
        return 2 * settings.batch_size * settings.extract_timeout_s / settings.extract_workers
    if stage == "poller":
        return settings.poll_batch_s + settings.total_timeout_s
    if stage == "indexer":
        return 2 * ES_REQUEST_TIMEOUT_S + settings.es_bulk_max_backoff_s + 2 * DLQ_ACK_TIMEOUT_S
    raise ValueError(f"unknown stage {stage!r}")


def stall_after_s(settings: Settings, stage: str) -> float:
    """Seconds without progress after which ``/healthz`` fails (and the processor leaves its group)."""
    return max(FLOOR_S, worst_batch_s(settings, stage) + MARGIN_S)
