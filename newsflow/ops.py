"""The operations side of every stage process: /metrics, /healthz, /readyz, lag, and a registry entry.

``stage_ops(settings, stage, ...)`` wraps a stage's main loop::

    with stage_ops(settings, "processor", group=..., topics=[...], progress_age=...):
        runner.run()

While inside it serves, on ``metrics_host:metrics_port`` (0 = no server):

* ``/metrics``  Prometheus text format (every ``newsflow_*`` series of this process);
* ``/healthz``  200 while the process is alive and its main loop made progress within
                ``stall_after_s``, the stage's own worst batch plus a margin, never under 600 s
                (``newsflow/liveness.py``; exported as ``newsflow_stall_after_seconds``); 503 otherwise;
* ``/readyz``   200 when Kafka and Elasticsearch both answered the last probe, 503 otherwise.
                Every stage checks both: a processor with Elasticsearch down still works, but its
                output goes nowhere, and the operator needs to see that on every stage.

Both answer JSON with the details. A background thread probes Kafka and Elasticsearch every
``probe_interval_s`` and, for stages that consume, computes the group's lag per partition into
``newsflow_consumer_lag``.

The process also writes ``<state_dir>/run/<stage>-<pid>.json`` (stage, pid, host, port) so that
``newsflow status`` finds it; the file is removed on exit.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from elastic_transport import TransportError
from elasticsearch import ApiError
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest

from newsflow import metrics, newsflow_version
from newsflow.elastic import make_es
from newsflow.kafka_io import make_admin
from newsflow.lag import group_lag
from newsflow.liveness import FLOOR_S
from newsflow.logs import Redactor, bind_process, secret_values
from newsflow.settings import Settings

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 5.0


def run_dir(settings: Settings) -> Path:
    return settings.state_dir / "run"


@dataclass
class Check:
    ok: bool
    detail: str
    checked_at: float


@dataclass
class OpsState:
    """What /healthz and /readyz report. Written by the probe thread and the main loop."""

    stage: str
    started_at: float = field(default_factory=time.time)
    checks: dict[str, Check] = field(default_factory=dict)
    progress_age: Callable[[], float | None] = lambda: None
    stall_after_s: float = FLOOR_S

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = self.progress_age()
        alive = threading.main_thread().is_alive()
        ok = alive and (age is None or age < self.stall_after_s)
        return ok, {
            "ok": ok, "stage": self.stage, "pid": os.getpid(), "uptime_s": round(time.time() - self.started_at, 1),
            "last_progress_s": None if age is None else round(age, 1), "stall_after_s": self.stall_after_s,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = dict(self.checks)
        ok = bool(checks) and all(c.ok for c in checks.values()) and set(checks) >= {"kafka", "elasticsearch"}
        body = {
            "ok": ok, "stage": self.stage,
            "checks": {k: asdict(c) | {"age_s": round(time.time() - c.checked_at, 1)} for k, c in checks.items()},
        }
        if not checks:
            body["detail"] = "not probed yet"
        return ok, body


class Prober:
    """Probes Kafka and Elasticsearch; for consuming stages also sets the lag gauges."""

    def __init__(self, settings: Settings, state: OpsState, *, group: str | None, topics: Sequence[str]):
        self.settings = settings
        self.state = state
        self.group = group
        self.topics = list(topics)
        self.redact = Redactor(secret_values(settings))

    def _fail(self, exc: BaseException) -> str:
        return self.redact.text(f"{type(exc).__name__}: {exc}")[:300]

    def probe_kafka(self) -> Check:
        timeout_ms = int(PROBE_TIMEOUT_S * 1000)
        try:
            admin = make_admin(self.settings, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
        except (KafkaError, OSError) as exc:
            return Check(False, self._fail(exc), time.time())
        try:
            cluster = admin.describe_cluster()
            detail = f"{len(cluster.get('brokers', []))} broker(s)"
            if self.group and self.topics:
                rows = group_lag(admin, self.group, self.topics)
                for r in rows:
                    metrics.CONSUMER_LAG.labels(self.state.stage, r.topic, str(r.partition)).set(r.lag)
                detail += f", lag {sum(r.lag for r in rows)} on {len(rows)} partition(s)"
            return Check(True, detail, time.time())
        except (KafkaError, OSError) as exc:
            return Check(False, self._fail(exc), time.time())
        finally:
            admin.close()

    def probe_es(self) -> Check:
        es = make_es(self.settings, request_timeout=PROBE_TIMEOUT_S)
        try:
            info = es.info()
            return Check(True, f"elasticsearch {info['version']['number']}", time.time())
        except (TransportError, ApiError, OSError) as exc:
            return Check(False, self._fail(exc), time.time())
        finally:
            es.close()

    def probe(self) -> None:
        for name, fn in (("kafka", self.probe_kafka), ("elasticsearch", self.probe_es)):
            check = fn()
            before = self.state.checks.get(name)
            self.state.checks[name] = check
            metrics.DEPENDENCY_UP.labels(name).set(1 if check.ok else 0)
            if before is None or before.ok != check.ok:
                (log.info if check.ok else log.warning)(
                    "dependency " + ("reachable" if check.ok else "unreachable"), dependency=name, detail=check.detail
                )


class _Handler(BaseHTTPRequestHandler):
    state: OpsState  # set on the subclass made per server

    def log_message(self, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, ok: bool, body: dict[str, Any]) -> None:
        self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._json(*self.state.health())
        elif path == "/readyz":
            self._json(*self.state.readiness())
        else:
            self._send(404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain")

    do_HEAD = do_GET


def bind_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Bind ``host:port``; if the port is taken (a second stage on this host), take a free one."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        server = ThreadingHTTPServer((host, 0), handler)
        log.warning("metrics port in use, serving on another one", wanted=port, port=server.server_address[1])
        return server


@dataclass
class StageOps:
    """Handle returned by ``stage_ops``: the state, the bound port (None when off)."""

    state: OpsState
    port: int | None
    registry_file: Path | None  # None when state_dir is not writable


def write_registry(settings: Settings, stage: str, port: int | None) -> Path:
    d = run_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{stage}-{os.getpid()}.json"
    host = settings.metrics_host if settings.metrics_host not in ("0.0.0.0", "::") else "127.0.0.1"
    entry = {"stage": stage, "pid": os.getpid(), "host": host, "port": port,
             "instance": settings.instance_id, "started_at": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    return path


def healthcheck(settings: Settings, stage: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, list[str]]:
    """``/healthz`` of every live stage process registered on this host (``run_dir``), or of one stage.
    Healthy when at least one is registered and every one answers 200. Returns (ok, one line per stage)."""
    import httpx

    from newsflow.supervisor import pid_alive

    lines: list[str] = []
    ok = True
    for path in sorted(run_dir(settings).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now
        if path.name.startswith("supervisor-") or (stage and entry["stage"] != stage) or not pid_alive(entry["pid"]):
            continue
        where = f"{entry['stage']} pid {entry['pid']}"
        if entry.get("port") is None:
            ok = False
            lines.append(f"{where}: serves no /healthz (NEWSFLOW_METRICS_PORT=0)")
            continue
        url = f"http://{entry['host']}:{entry['port']}/healthz"
        try:
            answer = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            ok = False
            lines.append(f"{where}: {url} unreachable: {type(exc).__name__}: {exc}")
            continue
        ok &= answer.status_code == 200
        lines.append(f"{where}: {url} {answer.status_code} {answer.text.strip()}")
    if not lines:
        return False, [f"no live {stage or 'stage'} process registered in {run_dir(settings)}"]
    return ok, lines


@contextmanager
def stage_ops(
    settings: Settings,
    stage: str,
    *,
    group: str | None = None,
    topics: Sequence[str] = (),
    progress_age: Callable[[], float | None] | None = None,
    stall_after_s: float = FLOOR_S,
    probe_interval_s: float = 10.0,
) -> Iterator[StageOps]:
    """Serve /metrics, /healthz, /readyz and probe dependencies while the stage runs. See module doc."""
    from newsflow.supervisor import die_with_supervisor

    die_with_supervisor()
    bind_process(stage=stage)
    disable_created_metrics()  # no *_created series: half the scrape size, nothing alerts on them
    metrics.STAGE_INFO.labels(stage, settings.instance_id, newsflow_version()).set(1)
    metrics.RECORDS_IN.labels(stage)
    metrics.RECORDS_OUT.labels(stage)
    metrics.PAUSED.labels(stage).set(0)
    metrics.STALL_AFTER.labels(stage).set(stall_after_s)
    state = OpsState(stage=stage, stall_after_s=stall_after_s)
    if progress_age is not None:
        state.progress_age = progress_age

    server = None
    port = None
    if settings.metrics_port:
        handler = type("OpsHandler", (_Handler,), {"state": state})
        server = bind_server(settings.metrics_host, settings.metrics_port, handler)
        server.daemon_threads = True
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()

    stop = threading.Event()
    prober = Prober(settings, state, group=group, topics=topics)

    def probe_loop() -> None:
        while not stop.is_set():
            prober.probe()
            age = state.progress_age()
            if age is not None:
                metrics.LAST_PROGRESS.labels(stage).set(time.time() - age)
            stop.wait(probe_interval_s)

    threading.Thread(target=probe_loop, name="ops-probe", daemon=True).start()
    try:
        registry: Path | None = write_registry(settings, stage, port)
    except OSError as exc:  # e.g. a read-only filesystem: the stage works, `newsflow status` won't list it
        registry = None
        log.warning("cannot register the stage for `newsflow status`", state_dir=str(settings.state_dir),
                    error=str(exc))
    log.info("stage started", metrics_port=port, group=group, topics=list(topics))
    try:
        yield StageOps(state, port, registry)
    finally:
        stop.set()
        if registry is not None:
            registry.unlink(missing_ok=True)
        if server is not None:
            server.shutdown()
            server.server_close()
        log.info("stage stopped")

