"""End-to-end latency: from the feed poll that first lists an article to the moment it is searchable.

Setup (not measured): a generated news site on 127.0.0.1 (``tests/chaos/newsroom.py``) with 10 feeds,
fresh topics and index alias on the configured stack, and the three stages as real subprocesses
(``newsflow poll|process|index``, default settings but a 1 s poll interval) with their network guard.
Once every stage has joined its group and a first (warm-up) article is searchable, a publisher adds
one article every 0.1 s (~10 articles/s, each feed gaining one per second) for ``duration_s``.

Measured per article:

* ``t_poll``: when the site first served a feed document listing the article (the poll that found it);
* ``t_search``: when a search of the alias first returned it (a watcher queries every 50 ms for the
  articles not yet seen).

latency = t_search - t_poll, on one monotonic clock (site, publisher and watcher share this process).
Articles published in the first 2 s are left out. p50/p99 are computed per repetition;
the report gives the median over repetitions. While the stages run, each one's memory is sampled
(VmHWM of the stage process; resident sum of the stage and its workers): the per-stage peak RSS; and
the CPU each stage (with its workers) spent per measured article, and the machine's 1-minute load
average at the start and end of each repetition, are recorded: on a shared 2-core machine the
processor's enrichment competes with everything else, and the latency shows it.

Goal (issue 7): p50 < 1 s, p99 < 3 s.
``run(quick) -> dict`` is what ``make bench`` calls; ``python bench/bench_e2e.py [--quick]`` prints it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from newsflow.settings import Settings  # noqa: E402
from newsflow.topology import namespaced, teardown  # noqa: E402

GOAL = {"p50_s": 1.0, "p99_s": 3.0}
RATE_PER_S = 10.0
N_FEEDS = 10
WARMUP_S = 2.0


def bench_settings(base: Settings, tag: str, feeds_file: Path) -> Settings:
    return namespaced(
        base, tag, metrics_port=0, allow_private_addresses=True, respect_robots=False, feeds_file=feeds_file,
        # poll every feed every second: the latency is measured from the poll, and 1 s bounds the wait for it
        poll_interval_s=1.0, poll_min_interval_s=1.0, poll_max_interval_s=1.0, host_rate_per_s=100.0,
    )


def cleanup(s: Settings) -> None:
    for problem in teardown(s):
        print(f"[bench e2e] clean-up: {problem}", file=sys.stderr)


class Watcher(threading.Thread):
    """Records when each expected URL first shows up in a search of the alias."""

    def __init__(self, settings: Settings, period_s: float = 0.05):
        super().__init__(daemon=True, name="search-watcher")
        from newsflow.elastic import make_es

        self.es = make_es(settings, request_timeout=10)
        self.alias = settings.es_index
        self.period_s = period_s
        self.pending: set[str] = set()
        self.seen: dict[str, float] = {}
        self.errors = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def expect(self, url: str) -> None:
        with self.lock:
            self.pending.add(url)

    def run(self) -> None:
        while not self.halt.is_set():
            with self.lock:
                wanted = sorted(self.pending)[:500]
            if wanted:
                try:
                    resp = self.es.search(index=self.alias, query={"terms": {"canonical_url": wanted}},
                                          source=["canonical_url"], size=len(wanted),
                                          ignore_unavailable=True, allow_no_indices=True)
                    now = time.monotonic()
                    with self.lock:
                        for h in resp["hits"]["hits"]:
                            url = h["_source"]["canonical_url"]
                            if url in self.pending:
                                self.pending.discard(url)
                                self.seen[url] = now
                except Exception:  # noqa: BLE001 - the index may not exist yet; count and go on
                    self.errors += 1
            self.halt.wait(self.period_s)
        self.es.close()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants: the live ones, and those that
    exited and were waited for (their parent's ``children_user`` / ``children_system``: a pool that
    replaces its workers would otherwise lose their time)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:4])
        for child in proc.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:4])
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def stage_stamps(s: Settings) -> dict[str, dict[str, float]]:
    """article id -> when its record was appended to articles.raw / articles.enriched, on our monotonic
    clock (Kafka CreateTime is wall-clock milliseconds, set by the producing stage on this machine)."""
    from tests.chaos.audit import read_topic

    offset = time.time() - time.monotonic()
    out: dict[str, dict[str, float]] = {}
    for name, topic in (("raw", s.topic_raw), ("enriched", s.topic_enriched)):
        out[name] = {(r.key or b"").decode(): r.timestamp / 1000 - offset for r in read_topic(s, topic)}
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def _ready(proc) -> bool:
    text = proc.log_path.read_text(encoding="utf-8", errors="replace") if proc.log_path.exists() else ""
    return "partitions assigned" in text or "feed partitions assigned" in text


def one_run(base: Settings, duration_s: float, workdir: Path) -> dict[str, Any]:
    from newsflow.topology import apply
    from tests.chaos.newsroom import Newsroom
    from tests.chaos.procs import StageProcess

    n_articles = int(duration_s * RATE_PER_S)
    room = Newsroom(n_articles, N_FEEDS, published=0).start()
    feeds = workdir / "feeds.yaml"
    room.write_feeds_file(feeds)
    s = bench_settings(base, f"benche2e{uuid.uuid4().hex[:8]}", feeds)
    apply(s)
    procs = {name: StageProcess(name, [cmd], s, workdir)
             for name, cmd in (("poller", "poll"), ("processor", "process"), ("indexer", "index"))}
    watcher = Watcher(s)
    try:
        for p in procs.values():
            p.start()
        deadline = time.monotonic() + 120
        while not all(_ready(p) for p in procs.values()):
            for name, p in procs.items():
                if not p.alive():
                    raise RuntimeError(f"{name} exited during start-up:\n{p.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("stages not ready after 120 s")
            time.sleep(0.2)
        watcher.start()
        # Warm-up: the first article goes through alone (models load in the extraction workers on first
        # use); measuring starts once it is searchable.
        room.publish(1)
        watcher.expect(room.page_url(0))
        warm_deadline = time.monotonic() + 180
        while room.page_url(0) not in watcher.seen:
            if time.monotonic() > warm_deadline:
                raise RuntimeError("the warm-up article was not searchable after 180 s")
            time.sleep(0.1)
        print(f"[bench e2e] publishing {n_articles - 1} articles at {RATE_PER_S:g}/s ...", file=sys.stderr)
        cpu_start = {name: tree_cpu_s(p.pid) for name, p in procs.items()}
        load_start = os.getloadavg()[0]
        published_at: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(1, n_articles):
            target = t0 + (i - 1) / RATE_PER_S
            time.sleep(max(0.0, target - time.monotonic()))
            room.publish(i + 1)
            published_at[room.page_url(i)] = time.monotonic()
            watcher.expect(room.page_url(i))
        drain_deadline = time.monotonic() + 60
        while watcher.pending and time.monotonic() < drain_deadline:
            time.sleep(0.2)
        stamps = stage_stamps(s)
        cpu = {name: tree_cpu_s(p.pid) for name, p in procs.items()}
        load_end = os.getloadavg()[0]
    finally:
        watcher.halt.set()
        for p in procs.values():
            if p.alive():
                p.stop(timeout_s=30)
        room.stop()
        cleanup(s)
    from newsflow.schema import article_id

    latencies, missing = [], 0
    legs: dict[str, list[float]] = {"poll -> page fetched": [], "page fetched -> in articles.raw": [],
                                    "articles.raw -> articles.enriched": [], "articles.enriched -> searchable": []}
    for i in range(1, n_articles):
        url = room.page_url(i)
        if published_at[url] - t0 < WARMUP_S:
            continue
        polled = room.first_served.get(room.page_path(i))
        if polled is None or url not in watcher.seen:
            missing += 1
            continue
        latencies.append(watcher.seen[url] - polled)
        aid = article_id(url)
        fetched = room.first_fetched.get(room.page_path(i))
        raw_t, enr_t = stamps["raw"].get(aid), stamps["enriched"].get(aid)
        if None not in (fetched, raw_t, enr_t):
            legs["poll -> page fetched"].append(fetched - polled)
            legs["page fetched -> in articles.raw"].append(raw_t - fetched)
            legs["articles.raw -> articles.enriched"].append(enr_t - raw_t)
            legs["articles.enriched -> searchable"].append(watcher.seen[url] - enr_t)
    if not latencies:
        raise RuntimeError(f"no article became searchable (missing {missing})")
    wait_for_poll = [room.first_served[room.page_path(i)] - published_at[room.page_url(i)]
                     for i in range(1, n_articles) if room.page_path(i) in room.first_served]
    return {
        "articles": n_articles,
        "measured": len(latencies),
        "missing": missing,
        "p50_s": round(percentile(latencies, 50), 3),
        "p90_s": round(percentile(latencies, 90), 3),
        "p99_s": round(percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "mean_s": round(statistics.fmean(latencies), 3),
        "publish_to_poll_median_s": round(statistics.median(wait_for_poll), 3) if wait_for_poll else None,
        "latencies_s": [round(x, 4) for x in latencies],
        "legs_median_s": {k: round(statistics.median(v), 3) for k, v in legs.items() if v},
        "peak_rss_mib": {n: round(p.peak_rss / 2**20) for n, p in procs.items()},
        "peak_rss_tree_mib": {n: round(p.peak_rss_tree / 2**20) for n, p in procs.items()},
        "watcher_errors": watcher.errors,
        # CPU the stages spent while the measured articles flowed, per article (stage + its workers)
        "cpu_ms_per_article": {n: round((cpu[n] - cpu_start[n]) * 1000 / (n_articles - 1), 1) for n in procs},
        "load_avg_1m": [round(load_start, 2), round(load_end, 2)],
    }


def run(quick: bool = False) -> dict[str, Any]:
    duration_s, reps = (30.0, 2) if quick else (60.0, 3)
    base = Settings()
    runs = []
    for rep in range(reps):
        print(f"[bench e2e] repetition {rep + 1}/{reps} ({duration_s:.0f} s at {RATE_PER_S:g} articles/s)",
              file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            runs.append(one_run(base, duration_s, Path(tmp)))
    p50 = statistics.median(r["p50_s"] for r in runs)
    p99 = statistics.median(r["p99_s"] for r in runs)
    stages = runs[0]["peak_rss_mib"].keys()
    return {
        "benchmark": "e2e",
        "rate_per_s": RATE_PER_S,
        "duration_s": duration_s,
        "repetitions": reps,
        "p50_s": p50,
        "p99_s": p99,
        "p50_s_runs": [r["p50_s"] for r in runs],
        "p99_s_runs": [r["p99_s"] for r in runs],
        "goal": GOAL,
        "met": p50 < GOAL["p50_s"] and p99 < GOAL["p99_s"],
        "missing": sum(r["missing"] for r in runs),
        "peak_rss_mib": {n: max(r["peak_rss_mib"][n] for r in runs) for n in stages},
        "peak_rss_tree_mib": {n: max(r["peak_rss_tree_mib"][n] for r in runs) for n in stages},
        "cpu_ms_per_article": {n: statistics.median(r["cpu_ms_per_article"][n] for r in runs) for n in stages},
        "load_avg_1m_runs": [r["load_avg_1m"] for r in runs],
        "runs": runs,
        "settings": {k: getattr(base, k) for k in ("enrich", "batch_size", "batch_wait_ms", "extract_workers",
                                                    "topic_partitions")} | {"poll_interval_s": 1.0},
    }


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv[1:])
    for r in result["runs"]:
        r.pop("latencies_s")
    print(json.dumps(result, indent=2))
