"""``newsflow status``: what is flowing, what is stuck, and why — in one screen or one JSON object.

Sources, each optional (a part that cannot be read says why instead of failing the whole report):

* stage processes: ``<state_dir>/run/*.json`` written by every stage (newsflow/ops.py) and by
  ``newsflow run`` (newsflow/supervisor.py); each stage's /healthz, /readyz and /metrics;
  resident memory from the OS;
* Kafka: lag per consumer group, topic and partition; records retained in the dead-letter topic;
* feeds: the feed list, and the health gauges of the running pollers (ingest/metrics.py): feeds by
  state, and the worst feeds (retired, then most consecutive errors);
* Elasticsearch: documents behind the alias and each monthly index's size.

Secrets are never shown: the whole report goes through the same redactor as the logs. The screen
that shows it (``render``, ``watch``) is newsflow/status_view.py.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
import yaml
from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from newsflow.elastic import make_es
from newsflow.kafka_io import make_admin, make_reader
from newsflow.lag import count_records, group_lag, partitions, topic_records
from newsflow.logs import Redactor, secret_values
from newsflow.ops import run_dir
from newsflow.settings import Settings
from newsflow.supervisor import pid_alive, supervisors
from newsflow.topology import stages as topology_stages

PROBE_TIMEOUT_S = 3.0
FEEDS_REFRESH_S = 30.0  # --watch re-reads the feed tables this often
WORST_FEEDS = 10
# Per-stage numbers lifted from each stage's /metrics (sums over the other labels).
_STAGE_SERIES = {
    "newsflow_records_in_total": "in",
    "newsflow_records_out_total": "out",
    "newsflow_records_dropped_total": "dropped",
    "newsflow_dead_letters_total": "dead_letters",
    "newsflow_paused": "paused",
}
# Feed health gauges of the poller (ingest/metrics.py); per-feed series exist only for feeds in trouble.
FEEDS_BY_STATE = "newsflow_ingest_feeds"
FEED_ERRORS = "newsflow_ingest_feed_consecutive_errors"
FEED_RETIRED = "newsflow_ingest_feed_retired"


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# --- stage processes -----------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> {sample name: [(labels, value), ...]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), sample.value))
    return out


def stage_numbers(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
    return {short: sum(v for _l, v in samples.get(name, [])) for name, short in _STAGE_SERIES.items()}


def feed_health(poller_samples: list[dict[str, list[tuple[dict[str, str], float]]]]) -> dict[str, Any] | None:
    """Feeds by state and the worst feeds, summed over the running pollers; None if none reports."""
    summary: dict[str, float] = defaultdict(float)
    feeds: dict[str, dict[str, Any]] = defaultdict(lambda: {"consecutive_errors": 0, "retired": False})
    reporting = False
    for samples in poller_samples:
        for labels, v in samples.get(FEEDS_BY_STATE, []):
            reporting = True
            summary[labels.get("state", "?")] += v
        for labels, v in samples.get(FEED_ERRORS, []):
            f = feeds[labels.get("feed_id", "?")]
            f["consecutive_errors"] = int(v)
            f["error_class"] = labels.get("error_class")
        for labels, v in samples.get(FEED_RETIRED, []):
            feeds[labels.get("feed_id", "?")]["retired"] = bool(v)
    if not reporting:
        return None
    ranked = sorted(feeds.items(), key=lambda kv: (not kv[1]["retired"], -kv[1]["consecutive_errors"], kv[0]))
    return {"summary": {k: int(v) for k, v in summary.items()},
            "worst": [{"feed_id": fid} | f for fid, f in ranked[:WORST_FEEDS]]}


def _rss_mb(pid: int) -> float | None:
    """Resident memory of a stage and its worker processes (extraction pool)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)
    except psutil.Error:
        return None


def _get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        return client.get(url).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"ok": False, "detail": _err(exc)}


def stage_processes(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """Registered stage processes with health, readiness, counters; and their /metrics samples."""
    rows: list[dict[str, Any]] = []
    samples_by_stage: dict[str, list] = defaultdict(list)
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        for path in sorted(run_dir(settings).glob("*.json")):
            if path.name.startswith("supervisor-"):
                continue
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now
            pid = int(entry["pid"])
            row: dict[str, Any] = {"stage": entry["stage"], "pid": pid, "instance": entry.get("instance"),
                                   "port": entry.get("port"), "alive": pid_alive(pid)}
            if not row["alive"]:
                path.unlink(missing_ok=True)  # it died without cleaning up; do not report it twice
                continue
            row["uptime_s"] = round(time.time() - entry.get("started_at", time.time()), 0)
            row["rss_mb"] = _rss_mb(pid)
            if entry.get("port"):
                base = f"http://{entry['host']}:{entry['port']}"
                row["health"] = _get_json(client, base + "/healthz")
                row["ready"] = _get_json(client, base + "/readyz")
                try:
                    samples = parse_metrics(client.get(base + "/metrics").text)
                    row["counters"] = stage_numbers(samples)
                    samples_by_stage[entry["stage"]].append(samples)
                except (httpx.HTTPError, ValueError) as exc:
                    row["counters"] = {"error": _err(exc)}
            rows.append(row)
    return rows, samples_by_stage


def supervisor_info(settings: Settings) -> list[dict[str, Any]]:
    out = []
    for path, entry in supervisors(settings):
        if not pid_alive(int(entry["pid"])):
            path.unlink(missing_ok=True)
            continue
        out.append(entry)
    return out


# --- Kafka -----------------------------------------------------------------------------------
def kafka_info(settings: Settings) -> dict[str, Any]:
    try:
        admin = make_admin(settings, bootstrap_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
                           request_timeout_ms=int(PROBE_TIMEOUT_S * 2000))
    except (KafkaError, OSError) as exc:
        return {"ok": False, "error": _err(exc)}
    try:
        lag = []
        consumer = make_reader(settings)
        try:
            for spec in topology_stages(settings):
                # The poller reads the feeds topic as a table (ingest/store.py): its group only spreads
                # the feeds over instances and never commits, so consumer lag means nothing there.
                if spec.source and spec.name != "poller":
                    rows = count_records(consumer, group_lag(admin, spec.group, [spec.source]))
                    lag += [r.as_dict() | {"stage": spec.name} for r in rows]
            dlq, exact = topic_records(admin, consumer, settings.topic_dlq)
        finally:
            consumer.close(autocommit=False)
        have_feed_tables = bool(partitions(admin, [settings.topic_feeds])) and bool(
            partitions(admin, [settings.topic_feed_state]))
        return {"ok": True, "lag": lag, "dlq": {"topic": settings.topic_dlq, "records": dlq, "exact": exact},
                "feed_tables": have_feed_tables}
    except (KafkaError, OSError) as exc:
        return {"ok": False, "error": _err(exc)}
    finally:
        admin.close()


# --- Elasticsearch ----------------------------------------------------------------------------
def es_info(settings: Settings) -> dict[str, Any]:
    """Articles behind the alias; every ``<alias>-*`` index with its article count (top-level
    documents, not the nested quotes ``_cat`` counts), size, and whether the alias includes it."""
    alias = settings.es_index
    es = make_es(settings, request_timeout=PROBE_TIMEOUT_S * 2)
    try:
        try:
            docs = es.count(index=alias)["count"]
            behind = set(es.indices.get_alias(name=alias).body)
        except NotFoundError:
            docs, behind = 0, set()
        cat = es.cat.indices(index=f"{alias}-*", format="json", bytes="b", h="index,health,store.size")
        counts: dict[str, int] = {}
        if cat.body:
            resp = es.search(index=f"{alias}-*", size=0, track_total_hits=False,
                             aggs={"by_index": {"terms": {"field": "_index", "size": 10_000}}})
            counts = {b["key"]: b["doc_count"] for b in resp["aggregations"]["by_index"]["buckets"]}
        indices = sorted(
            ({"index": i["index"], "health": i.get("health"), "docs": counts.get(i["index"], 0),
              "size_bytes": int(i.get("store.size") or 0), "in_alias": i["index"] in behind} for i in cat.body),
            key=lambda i: i["index"],
        )
        out = {"ok": True, "alias": alias, "docs": docs, "indices": indices}
        if not behind:
            out["detail"] = f"no index behind {alias!r} yet"
        return out
    except (TransportError, ApiError, OSError) as exc:
        return {"ok": False, "alias": alias, "error": _err(exc)}
    finally:
        es.close()


# --- feeds -------------------------------------------------------------------------------------
_FEED_FIELDS = ("id", "url", "state", "consecutive_errors", "last_error_class", "last_error", "last_success",
                "next_check")


def feed_catalog(settings: Settings) -> dict[str, Any]:
    """Fleet-wide feed health from the feeds and feed-state tables in Kafka (ingest/store.py), the
    same rows as ``newsflow feeds status``: summary and the worst feeds."""
    from ingest.status import status_rows, summary
    from ingest.store import TableMissing, TableReadTimeout, load_catalog

    try:
        defs, states = load_catalog(settings)
    except (TableMissing, TableReadTimeout, KafkaError, OSError, ValueError) as exc:
        return {"catalog_error": _err(exc)}
    rows = status_rows(defs, states)  # retired, then backing off, then by consecutive errors
    worst = [{k: r.get(k) for k in _FEED_FIELDS} for r in rows[:WORST_FEEDS]
             if r["state"] != "active" or r["consecutive_errors"]]
    for w in worst:
        if w["last_error"]:
            w["last_error"] = w["last_error"][:200]
    return {"source": "feed-state topic", "summary": summary(rows), "worst": worst}


def feeds_info(settings: Settings, poller_samples: list, *, catalog: bool) -> dict[str, Any]:
    """The feed list, plus health from the feed tables (``catalog``) or else from running pollers."""
    out: dict[str, Any] = {"file": str(settings.feeds_file)}
    try:
        data = yaml.safe_load(settings.feeds_file.read_text(encoding="utf-8")) or {}
        feeds = data.get("feeds", []) if isinstance(data, dict) else data
        out["configured"] = len(feeds or [])
    except (OSError, yaml.YAMLError) as exc:
        out["configured"] = None
        out["error"] = _err(exc)
    if catalog:
        out |= feed_catalog(settings)
        if "summary" in out:
            return out
    health = feed_health(poller_samples)
    if health is not None:
        out |= {"source": "running pollers"} | health
    elif "catalog_error" not in out:
        out["detail"] = "no feed state yet (no poller has run) and no running poller reports feed health"
    return out


# --- the report ----------------------------------------------------------------------------------
def connection_summary(settings: Settings) -> dict[str, Any]:
    if settings.es_api_key is not None:
        es_auth = "api key"
    elif settings.es_username:
        es_auth = f"basic ({settings.es_username})"
    else:
        es_auth = "none"
    return {"kafka_bootstrap": settings.kafka_bootstrap, "kafka_security": settings.kafka_security_protocol,
            "kafka_sasl_user": settings.kafka_sasl_username, "es_url": settings.es_url, "es_auth": es_auth,
            "es_alias": settings.es_index}


def gather_report(settings: Settings, *, feeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report as plain data, secrets masked. ``feeds``: reuse an earlier feeds section
    (reading the feed tables is the costly part; ``--watch`` refreshes it less often)."""
    procs, samples = stage_processes(settings)
    kafka = kafka_info(settings)
    if feeds is None:
        feeds = feeds_info(settings, samples.get("poller", []), catalog=bool(kafka.get("feed_tables")))
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "connection": connection_summary(settings),
        "supervisors": supervisor_info(settings),
        "stages": procs,
        "kafka": kafka,
        "feeds": feeds,
        "elasticsearch": es_info(settings),
    }
    return Redactor(secret_values(settings)).value(report)


# --- rendering ----------------------------------------------------------------------------------
