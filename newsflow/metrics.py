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
