"""Whole pipeline, sustained: N real pages through poller -> processor -> indexer as fast as it takes them.

Setup (not measured): a local publisher on 127.0.0.1 serves N distinct articles, copy ``i`` being corpus
page ``i mod P`` ($NEWSFLOW_CORPUS/pages, the pages' own bytes) at ``/a/<i>.html``, listed by
``N / ENTRIES_PER_FEED`` RSS feeds. Each copy has its own URL; the pages' canonical links name their
real hosts, which are other sites than 127.0.0.1, so each copy is its own article (``final_url``). Fresh
topics and index alias under a ``benchsus...`` prefix on the configured stack (never the shared
``articles.*`` topics). The stages run as real subprocesses (``newsflow poll|process|index``), default
settings (enrichment on) except the publisher's rate limit and robots.txt.

Measured, per repetition, one after the other (the standalone run reads what the pipeline's poller wrote):

* **pipeline**: the stages start with the feeds listing only the first ``WARMUP`` articles (the
  extraction workers load their models on them); once those are in Elasticsearch the feeds list all
  N (polled every second) and the clock runs until the last one is in, counted by the alias's
  document count;
* **standalone processor**: one processor alone (its own group and output topic) over the same N raw
  records the pipeline's poller wrote to ``articles.raw``, timed from its first committed offset (its
  first batch, with the models loading, is not counted) to its last.

``ratio`` = pipeline articles/s / standalone articles/s (goal >= 0.85: everything but the processor is
overhead); ``ratio_cpu`` is the same with the processor's CPU seconds instead of wall seconds. CPU ms per
article per stage (each stage with its worker processes; the Kafka broker and Elasticsearch processes
too, found by their listening ports: on a shared stack they also serve other users, so those two are an
upper bound). Sizes: 1k, 5k and 20k articles (``--quick``: 1k), and 1 vs 3 processor instances (a
consumer group over 3 partitions) at the smallest size; the smallest size with one processor is repeated
(``--reps``, median), every other run is made once. The topics' ``compression.type`` as the broker
holds it is reported too.

``run(quick) -> dict`` is what ``make bench`` calls; ``python bench/bench_sustained.py [--quick]
[--sizes 1000,3000] [--reps 5] [--processors 1,3]`` prints the same dict as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench.bench_e2e import cleanup, tree_cpu_s  # noqa: E402
from bench.bench_processor import load_pages  # noqa: E402
from newsflow.settings import Settings  # noqa: E402
from newsflow.topology import apply, namespaced  # noqa: E402

GOAL = 0.85
ENTRIES_PER_FEED = 100
SIZES = (1000, 5000, 20000)
QUICK_SIZES = (1000,)
# Repetitions of the smallest size with one processor; every other run is made once (20k articles take
# ~25 min on two cores, pipeline and processor alone).
REPS, QUICK_REPS = 3, 1
TIMEOUT_S = 3600.0
WARMUP = 30  # articles listed first: every processor's workers load their models on them, not measured
STALL_S = 30.0  # no progress for this long and most articles through: the rest were dead-lettered


def log(msg: str) -> None:
    print(f"[bench sustained] {msg}", file=sys.stderr, flush=True)


class Publisher:
    """N distinct articles (corpus page ``i mod P`` at ``/a/<i>.html``) behind ``/feeds/<f>.xml``."""

    def __init__(self, pages: list[bytes], n: int):
        self.pages, self.n = pages, n
        self.published = min(n, WARMUP)  # the feeds list articles 0..published-1
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: D102 - quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                body, ctype = publisher.render(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", ctype or "text/plain")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def feed_urls(self) -> list[str]:
        return [f"{self.base}/feeds/{f}.xml" for f in range((self.n + ENTRIES_PER_FEED - 1) // ENTRIES_PER_FEED)]

    def render(self, path: str) -> tuple[bytes | None, str]:
        kind, _, name = path.strip("/").partition("/")
        if kind == "feeds" and name.endswith(".xml") and name[:-4].isdigit():
            f = int(name[:-4])
            items = "".join(
                f"<item><title>Article {i}</title><link>{self.base}/a/{i}.html</link>"
                f"<guid isPermaLink=\"false\">sustained-{i}</guid><description>{escape(f'Copy {i}')}</description></item>"
                for i in range(f * ENTRIES_PER_FEED, min(self.published, (f + 1) * ENTRIES_PER_FEED)))
            return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {f}</title>'
                    f"<link>{self.base}/</link><description>bench</description>{items}</channel></rss>").encode(), \
                "application/rss+xml; charset=utf-8"
        if kind == "a" and name.endswith(".html") and name[:-5].isdigit() and int(name[:-5]) < self.n:
            return self.pages[int(name[:-5]) % len(self.pages)], "text/html"
        return None, ""

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def service_pid(port: int) -> int | None:
    """The pid listening on 127.0.0.1:``port`` (the shared Kafka broker, Elasticsearch)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


class Progress:
    """Samples a count until it reaches ``n`` (or stalls near it: pages the stages dead-letter never
    arrive); rate over [first done, last done], CPU of the given processes over the same window."""

    def __init__(self, count, n: int, cpu_pids: dict[str, int | None], what: str):
        self.count, self.n, self.cpu_pids, self.what = count, n, cpu_pids, what

    def cpu(self) -> dict[str, float]:
        return {k: tree_cpu_s(pid) if pid else 0.0 for k, pid in self.cpu_pids.items()}

    def wait(self, alive, *, from_now: bool = False) -> dict[str, Any]:
        """``from_now``: the clock starts now (else at the first count, after the first batch)."""
        deadline = time.monotonic() + TIMEOUT_S
        first = last_log = None
        done = 0
        if from_now:
            first, first_done, cpu0 = time.monotonic(), self.count(), self.cpu()
            done, changed, cpu_at_change = first_done, first, cpu0
        while True:
            count = self.count()
            now = time.monotonic()
            if count and first is None:
                first, first_done, cpu0 = now, count, self.cpu()
            if count > done:
                done, changed, cpu_at_change = count, now, self.cpu()
            if done >= self.n or (done >= 0.9 * self.n and now - changed > STALL_S):
                break
            if not alive():
                raise RuntimeError(f"{self.what}: a stage exited at {done}/{self.n}")
            if now > deadline:
                raise RuntimeError(f"{self.what}: {done}/{self.n} after {TIMEOUT_S:.0f} s")
            if last_log is None or now - last_log > 15:
                log(f"{self.what}: {done}/{self.n}")
                last_log = now
            time.sleep(0.25)
        wall = changed - first
        cpu = {k: v - cpu0[k] for k, v in cpu_at_change.items()}
        n = done - first_done
        return {"articles": n, "missing": self.n - done, "wall_s": round(wall, 2),
                "articles_per_s": round(n / wall, 2) if wall > 0 else None,
                "cpu_ms_per_article": {k: round(v * 1000 / n, 1) for k, v in cpu.items()}, "cpu_s": cpu}


def es_count(s: Settings):
    from newsflow.elastic import make_es

    es = make_es(s, request_timeout=10)

    def count() -> int:
        try:
            return int(es.count(index=s.es_index, ignore_unavailable=True, allow_no_indices=True)["count"])
        except Exception:  # noqa: BLE001 - the index appears with the first document
            return 0
    return count


def committed(s: Settings, topic: str):
    """Records of ``topic`` that ``s``'s processor group has committed (the poller's producer is not
    transactional: one offset per record)."""
    from newsflow.kafka_io import make_admin
    from newsflow.lag import group_lag

    admin = make_admin(s)
    return lambda: sum((p.committed or p.start) - p.start for p in group_lag(admin, s.group("processor"), [topic]))


def stages(s: Settings, workdir: Path, names: list[tuple[str, str]]):
    from tests.chaos.procs import StageProcess

    # Each instance its own id: one transactional id and static member name per processor (with one id
    # for three, they fence each other and two exit).
    return {name: StageProcess(name, [cmd], s.model_copy(update={"instance_id": f"{s.instance_id}-{name}"}), workdir)
            for name, cmd in names}


def pipeline(base: Settings, pub: Publisher, n: int, processors: int, workdir: Path) -> tuple[dict, Settings]:
    feeds = workdir / "feeds.yaml"
    feeds.write_text("feeds:\n" + "".join(f"  - {u}\n" for u in pub.feed_urls()), encoding="utf-8")
    s = namespaced(base, f"benchsus{uuid.uuid4().hex[:8]}", metrics_port=0, allow_private_addresses=True,
                   respect_robots=False, feeds_file=feeds, host_rate_per_s=1000.0, host_concurrency=16,
                   # the feeds are polled every second: the articles published after the warm-up are seen at once
                   poll_interval_s=1.0, poll_min_interval_s=1.0, poll_max_interval_s=1.0)
    apply(s)
    procs = stages(s, workdir, [("poller", "poll"), *((f"processor{k}", "process") for k in range(processors)),
                                ("indexer", "index")])
    for p in procs.values():
        p.start()
    try:
        pids = {name: p.pid for name, p in procs.items()} | {
            "kafka": service_pid(int(s.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])),
            "elasticsearch": service_pid(urlsplit(s.es_url).port or 9200)}
        alive = lambda: all(p.alive() for p in procs.values())  # noqa: E731
        count = es_count(s)
        Progress(count, pub.published, {}, f"pipeline warm-up x{processors}").wait(alive)
        pub.published = n
        got = Progress(count, n, pids, f"pipeline {n} x{processors}").wait(alive, from_now=True)
    finally:
        for p in procs.values():
            if p.alive():
                p.stop(timeout_s=30)
    per = got["cpu_ms_per_article"]
    got["cpu_ms_per_article"] = {
        "poller": per["poller"], "processor": round(sum(v for k, v in per.items() if k.startswith("processor")), 1),
        "indexer": per["indexer"], "kafka": per["kafka"], "elasticsearch": per["elasticsearch"]}
    got["processor_cpu_s"] = sum(v for k, v in got.pop("cpu_s").items() if k.startswith("processor"))
    return got, s


def standalone(base: Settings, raw: Settings, n: int, workdir: Path) -> tuple[dict, Settings]:
    """One processor alone over the raw records the pipeline's poller wrote."""
    s = namespaced(base, f"benchsus{uuid.uuid4().hex[:8]}", metrics_port=0, topic_raw=raw.topic_raw)
    apply(s)
    procs = stages(s, workdir, [("processor-alone", "process")])
    procs["processor-alone"].start()
    try:
        got = Progress(committed(s, raw.topic_raw), n, {"processor": procs["processor-alone"].pid},
                       f"standalone processor {n}").wait(procs["processor-alone"].alive)
    finally:
        procs["processor-alone"].stop(timeout_s=30)
    got["processor_cpu_s"] = got.pop("cpu_s")["processor"]
    return got, s


def topic_compression(base: Settings) -> dict[str, str | None]:
    """``compression.type`` of fresh topics as the broker holds it (goal 5: ``producer``, so that the
    broker keeps the producer's zstd batches instead of recompressing them)."""
    from newsflow.kafka_io import make_admin
    from newsflow.topology import topic_configs

    s = namespaced(base, f"benchsus{uuid.uuid4().hex[:8]}", metrics_port=0)
    apply(s)
    admin = make_admin(s)
    try:
        return {t: c.get("compression.type") for t, c in topic_configs(admin, [s.topic_raw, s.topic_enriched]).items()}
    finally:
        admin.close()
        cleanup(s)


def one_size(base: Settings, pages: list[bytes], n: int, reps: int, processors: int) -> dict[str, Any]:
    runs = []
    for rep in range(reps):
        log(f"{n} articles, {processors} processor(s), repetition {rep + 1}/{reps}")
        with tempfile.TemporaryDirectory(prefix="bench-sustained-") as tmp, Publisher(pages, n) as pub:
            made: list[Settings] = []
            try:
                pipe, s = pipeline(base, pub, n, processors, Path(tmp))
                made.append(s)
                alone, s2 = standalone(base, s, n, Path(tmp))
                made.append(s2)
            finally:
                for m in reversed(made):
                    cleanup(m)
        runs.append({"pipeline": pipe, "standalone": alone,
                     "ratio": round(pipe["articles_per_s"] / alone["articles_per_s"], 3),
                     "ratio_cpu": round((alone["processor_cpu_s"] / alone["articles"])
                                        / (pipe["processor_cpu_s"] / pipe["articles"]), 3)})
    med = statistics.median
    stage_names = runs[0]["pipeline"]["cpu_ms_per_article"].keys()
    return {
        "articles": n, "processors": processors, "repetitions": reps,
        "articles_per_s": med(r["pipeline"]["articles_per_s"] for r in runs),
        "articles_per_day": round(med(r["pipeline"]["articles_per_s"] for r in runs) * 86400),
        "standalone_articles_per_s": med(r["standalone"]["articles_per_s"] for r in runs),
        "ratio": med(r["ratio"] for r in runs), "ratio_runs": [r["ratio"] for r in runs],
        "ratio_cpu": med(r["ratio_cpu"] for r in runs),
        "cpu_ms_per_article": {k: med(r["pipeline"]["cpu_ms_per_article"][k] for r in runs) for k in stage_names},
        "standalone_cpu_ms_per_article": med(r["standalone"]["cpu_ms_per_article"]["processor"] for r in runs),
        "runs": runs,
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None, reps: int | None = None,
        processors: tuple[int, ...] = (1, 3)) -> dict[str, Any]:
    """Every size with the first number of processors, then the smallest size with the others."""
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    reps = reps or (QUICK_REPS if quick else REPS)
    base = Settings()
    pages = [body for _url, body in load_pages(None)]
    results = [one_size(base, pages, n, reps if k == 0 else 1, processors[0]) for k, n in enumerate(sizes)]
    results += [one_size(base, pages, sizes[0], 1, k) for k in processors[1:]]
    head = results[0]
    return {
        "benchmark": "sustained",
        "corpus_pages": len(pages),
        "topic_compression": topic_compression(base),
        "results": results,
        "articles_per_s": head["articles_per_s"],
        "articles_per_day": head["articles_per_day"],
        "ratio": head["ratio"],
        "goal": GOAL,
        "met": head["ratio"] >= GOAL,
        "quick": quick,
        "settings": {k: getattr(base, k) for k in ("enrich", "batch_size", "extract_workers", "topic_partitions")},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k articles, one repetition")
    ap.add_argument("--sizes", help="comma-separated numbers of articles, e.g. 1000,3000,20000")
    ap.add_argument("--reps", type=int, help="repetitions of the smallest size with one processor (each: the "
                    "pipeline, then the processor alone); every other run is made once")
    ap.add_argument("--processors", default="1,3", help="processor instances: all sizes with the first, the "
                    "smallest size with the others (default 1,3)")
    a = ap.parse_args()
    print(json.dumps(run(a.quick, tuple(int(x) for x in a.sizes.split(",")) if a.sizes else None, a.reps,
                         tuple(int(x) for x in a.processors.split(","))), indent=2))
