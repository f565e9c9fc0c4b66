"""Prometheus metrics shared by every stage. Names are the contract with deploy/prometheus/."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("newsflow_records_in_total", "Records consumed by a stage", ["stage"])
RECORDS_OUT = Counter("newsflow_records_out_total", "Records delivered by a stage", ["stage"])
RECORDS_DROPPED = Counter("newsflow_records_dropped_total", "Records dropped on purpose", ["stage", "reason"])
DEAD_LETTERS = Counter("newsflow_dead_letters_total", "Records sent to the dead-letter topic", ["stage", "reason"])
RETRIES = Counter("newsflow_retries_total", "Retried attempts of a record or batch", ["stage"])
BATCH_SECONDS = Histogram("newsflow_batch_seconds", "Time to process and deliver one batch", ["stage"])
SINK_UNAVAILABLE = Counter(
    "newsflow_sink_unavailable_total", "Times a stage paused because its sink pushed back", ["stage"]
)
PAUSED = Gauge("newsflow_paused", "1 while a stage has paused its partitions (back-pressure)", ["stage"])
CONSUMER_LAG = Gauge("newsflow_consumer_lag", "Records behind the end of the partition", ["stage", "topic", "partition"])
END_TO_END_SECONDS = Histogram(
    "newsflow_end_to_end_seconds",
    "Latency from feed poll (fetched_at) to indexed",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900, 3600),
)

# --- stage internals, defined here so every stage shares the names (deploy/prometheus/ alerts) --------
ES_BULK_RETRIES = Counter(
    "newsflow_es_bulk_retries_total", "Bulk items retried after a 429/5xx answer from Elasticsearch"
)
EXTRACTION_TIMEOUTS = Counter(
    "newsflow_extraction_timeouts_total", "Pages whose extraction ran past extract_timeout_s"
)

# --- process health (set by newsflow/ops.py) -----------------------------------------------------------
STAGE_INFO = Gauge("newsflow_stage_info", "Always 1; labels identify the stage process",
                   ["stage", "instance", "version"])
DEPENDENCY_UP = Gauge("newsflow_dependency_up", "1 when the dependency answered the last readiness probe",
                      ["dependency"])
LAST_PROGRESS = Gauge("newsflow_last_progress_timestamp_seconds",
                      "Unix time the stage's main loop last made progress", ["stage"])
STALL_AFTER = Gauge("newsflow_stall_after_seconds",
                    "Seconds without progress after which /healthz fails (from the stage's settings)", ["stage"])
