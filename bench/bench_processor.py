"""Processor benchmark: Newsflow's processor against a raw loop of ``trafilatura.extract`` over the
same corpus pages ($NEWSFLOW_CORPUS/pages), on the same cores, in the same run. Goal: >= 0.85 with
enrichment off.

Each repetition, in alternating order so that neither side always runs second:

* **raw**: ``trafilatura.extract(page_bytes)`` (the library's defaults: main text, no metadata) in
  a loop, spread over ``extract_workers`` processes (the same number of cores the processor uses),
  pages already in memory; and **raw with metadata**, the same with ``with_metadata=True`` (title,
  author, date, site name...: the job the processor does);
* **newsflow**: the processor stage exactly as ``newsflow process`` runs it (``StageRunner`` +
  ``Processor`` + extraction pool + ``TransactionalKafkaSink``), enrichment off, reading the same
  pages as ``RawArticle`` records from Kafka and writing Articles to Kafka in transactions. The
  clock starts when the consumer has its partitions and the workers are warm (the first, warm-up
  batch is not counted) and stops when the last transaction is committed. Two inputs:
  ``feed``, each page with the feed entry the poller always sends along (title, published date,
  summary; no author, so trafilatura's byline search runs when the page's markup names none,
  ~8 ms a page): the production input, and the headline ratio; ``feed_author``, the same entry
  with an author (feeds with ``dc:creator``: no byline search); ``no_feed``, pages without any feed
  metadata (the page must supply everything, so htmldate's extensive date search runs on every
  page too: the worst case).

Also reported, same run: the processor's transform alone (the extraction pool + story labels,
without Kafka), the per-core comparison (one worker against one raw loop), the cost of each
processing step in CPU milliseconds per article (enrichment on, all pages; NER and quotes also per
English article, since they are skipped for other languages), and the peak RSS of one worker with
and without the models loaded.

**Against ``trafilatura.bare_extraction(with_metadata=True)``** (issue 12, goal 2: >= 1.2 x in pages per
CPU second, ``vs_bare_extraction``): in this process, one core, the processor's transform of one page
(``build_article``, enrichment off, from the ``RawArticle`` as a worker gets it: base64 body, charset)
beside trafilatura's extraction with its metadata (title, author, date, site name, categories, tags,
...) of the same page, alternating, on the news-metadata pages ($NEWSFLOW_CORPUS/news-metadata, the
pages ``make eval`` scores) and on the corpus pages. Newsflow gets no feed entry (like trafilatura, it
must find every field on the page: the like-for-like input and the verdict) and, as a second figure,
the typical feed entry. Comments are left out on both sides, as the processor does.

``run(quick) -> dict`` is what ``make bench`` calls; ``python bench/bench_processor.py [--quick]``
prints the same dict as JSON; ``--vs-bare`` runs only the comparison with ``bare_extraction`` (no stack).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import trafilatura  # noqa: E402
from kafka.consumer.fetcher import ConsumerRecord  # noqa: E402

from newsflow.kafka_io import make_producer  # noqa: E402
from newsflow.stage.outcomes import Quarantine  # noqa: E402
from newsflow.schema import FeedEntry, RawArticle, article_id  # noqa: E402
from newsflow.settings import Settings  # noqa: E402
from newsflow.topology import ensure_topics, namespaced, teardown  # noqa: E402
from processors.article import Limits, build_article  # noqa: E402
from processors.enrich.enricher import STEPS  # noqa: E402
from processors.pool import (  # noqa: E402
    ExtractionPool, WorkerConfig, init_worker, one_blas_thread, process_value,
)
from processors.processor import Processor, make_runner  # noqa: E402

GOAL = 0.85
GOAL_VS_BARE = 1.2  # issue 12, goal 2: pages per CPU second against bare_extraction(with_metadata=True)
PARENT_MS: list[float] = []  # CPU ms per page of the stage process itself (Kafka, pool I/O), all threads
CORPUS = Path(os.environ.get("NEWSFLOW_CORPUS", REPO.parent / "shared" / "corpus"))
MiB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench processor] {msg}", file=sys.stderr, flush=True)


# --- inputs ------------------------------------------------------------------------------------------
def load_pages(limit: int | None) -> list[tuple[str, bytes]]:
    pages = CORPUS / "pages"
    expectations = json.loads((pages / "expectations.json").read_text(encoding="utf-8"))
    names = sorted(expectations)[:limit]
    return [(expectations[n]["url"] or f"https://corpus.invalid/{n}", (pages / n).read_bytes()) for n in names]


def raw_values(pages: list[tuple[str, bytes]], now: datetime, entry: FeedEntry | None = None) -> list[bytes]:
    """The pages as the poller would send them: without a feed entry (the page must supply all the
    metadata: the worst case), or with a typical one (title, published, author)."""
    out = []
    for i, (url, body) in enumerate(pages):
        u = f"{url}#bench{i}"
        out.append(RawArticle(id=article_id(u), url=u, canonical_url=u, final_url=url, fetched_at=now,
                              first_seen_at=now, entry=entry or FeedEntry(), content_type="text/html",
                              body_b64=RawArticle.encode_body(body)).to_bytes())
    return out


def typical_entry(now: datetime, author: str | None = None) -> FeedEntry:
    """What nearly every RSS/Atom item carries (title, link, pubDate, description); an author only
    when asked (many feeds have none)."""
    return FeedEntry(title="A headline as the feed gives it", published=now - timedelta(hours=2),
                     summary="One sentence of summary.", author=author)


def records(values: list[bytes]) -> list[ConsumerRecord]:
    return [ConsumerRecord("bench.raw", 0, -1, i, 0, 0, None, v, [], None, -1, len(v), -1) for i, v in enumerate(values)]


# --- clocks -----------------------------------------------------------------------------------------
class Clock:
    """Wall time and CPU time of this process and all its descendants (workers, fork servers):
    the machine is shared, so the CPU-time rates say what the wall-clock rates cannot."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = self.tree_cpu()

    @staticmethod
    def tree_cpu() -> float:
        me = psutil.Process()
        total = 0.0
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return total

    def rates(self, n: int) -> tuple[float, float]:
        """(pages per wall second, pages per CPU second) since the clock started."""
        return n / (time.perf_counter() - self.wall), n / max(1e-9, self.tree_cpu() - self.cpu)


# --- raw side ----------------------------------------------------------------------------------------
def _raw_chunk(bodies: list[bytes], with_metadata: bool = False) -> int:
    return sum(1 for b in bodies if trafilatura.extract(b, with_metadata=with_metadata) is not None)


def _raw_meta_chunk(bodies: list[bytes]) -> int:
    return _raw_chunk(bodies, with_metadata=True)


def raw_loop(bodies: list[bytes], workers: int, with_metadata: bool = False) -> tuple[float, float]:
    """(pages per second, pages per CPU second) of plain trafilatura.extract loops in ``workers`` processes."""
    chunks = [bodies[i::workers] for i in range(workers)]
    work = _raw_meta_chunk if with_metadata else _raw_chunk
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(workers) as pool:
        pool.map(work, [bodies[:2]] * workers)  # start and warm the processes
        clock = Clock()
        pool.map(work, chunks, chunksize=1)
        return clock.rates(len(bodies))


# --- newsflow side -----------------------------------------------------------------------------------
def transform_only(settings: Settings, values: list[bytes]) -> tuple[float, float]:
    """(pages per second, per CPU second) through the runner's two-phase hooks, Processor.submit then
    Processor.collect, one batch at a time (pool + labels)."""
    processor = Processor(settings, ExtractionPool(settings), None)
    try:
        processor.collect(processor.submit(records(values[: settings.extract_workers * 2])))  # start and warm
        recs = records(values)
        clock = Clock()
        for i in range(0, len(recs), settings.batch_size):
            processor.collect(processor.submit(recs[i : i + settings.batch_size]))
        return clock.rates(len(recs))
    finally:
        processor.close()


def bench_settings(base: Settings, tag: str, **over: Any) -> Settings:
    return namespaced(base, tag, metrics_port=0, **over)


def stage_through_kafka(settings: Settings, values: list[bytes], warmup: int) -> tuple[float, float, int]:
    """(pages per second, per CPU second, records consumed) of the processor stage, Kafka in ->
    Kafka out, exactly-once delivery. Also notes the stage process's own CPU per page."""
    producer = make_producer(settings)
    for v in values:
        producer.send(settings.topic_raw, value=v)
    producer.flush()
    producer.close()
    runner = make_runner(settings)
    try:
        consumed = 0
        while consumed < warmup:  # group join, worker start, first transaction: not counted
            consumed += runner.step()
        clock = Clock()
        parent = time.process_time()
        counted = idle = 0
        while consumed < len(values) and idle < 40:
            n = runner.step()
            consumed += n
            counted += n
            idle = 0 if n else idle + 1
        wall, cpu = clock.rates(counted)
        PARENT_MS.append((time.process_time() - parent) * 1000 / max(1, counted))
        return wall, cpu, consumed
    finally:
        runner.close()


# --- the transform against bare_extraction(with_metadata=True), in process -----------------------------
def news_metadata_pages(limit: int | None) -> list[tuple[str, bytes]]:
    """(url, page bytes) of $NEWSFLOW_CORPUS/news-metadata (UTF-8 pages, as ``make eval`` reads them)."""
    import gzip
    root = CORPUS / "news-metadata"
    rows = json.loads((root / "index.json").read_text(encoding="utf-8"))[:limit]
    return [(r["url"].strip(), gzip.decompress((root / r["page"]).read_bytes())) for r in rows]


def _timed(work: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def versus_bare_extraction(pages: list[tuple[str, bytes]], charset: str | None, reps: int,
                           now: datetime) -> dict[str, Any]:
    """Pages per wall and per CPU second of ``build_article`` (enrichment off; no feed entry, and the
    typical one) and of ``trafilatura.bare_extraction(with_metadata=True)`` on the same pages, in this
    process, alternating; ratios are Newsflow / trafilatura per repetition, then the median. The page
    goes to trafilatura as the processor reads it: text in ``charset`` when there is one, else bytes."""
    limits = Limits.from_settings(Settings())
    inputs = {"no_feed": FeedEntry(), "feed": typical_entry(now)}
    raws = {k: [RawArticle(id=article_id(u), url=u, canonical_url=u, final_url=u, fetched_at=now, first_seen_at=now,
                           entry=e, charset=charset, content_type="text/html", body_b64=RawArticle.encode_body(b))
                for u, b in pages] for k, e in inputs.items()}
    docs = [(u, b.decode(charset, "replace") if charset else b) for u, b in pages]

    def ours(key: str) -> None:
        for raw in raws[key]:
            try:
                build_article(raw, limits=limits, now=now)
            except Quarantine:
                continue

    def theirs() -> None:
        for url, doc in docs:
            trafilatura.bare_extraction(doc, url=url, with_metadata=True, include_comments=False)

    sides = {"trafilatura": theirs, "no_feed": lambda: ours("no_feed"), "feed": lambda: ours("feed")}
    for work in sides.values():
        work()  # warm: imports, caches, htmldate's regexes
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for rep in range(reps):
        for name in list(sides) if rep % 2 == 0 else list(sides)[::-1]:
            times[name].append(_timed(sides[name]))
    n = len(pages)
    out: dict[str, Any] = {"pages": n, "repetitions": reps}
    for name, ts in times.items():
        out[f"{name}_pages_per_s"] = round(statistics.median(n / w for w, _c in ts), 1)
        out[f"{name}_pages_per_cpu_s"] = round(statistics.median(n / c for _w, c in ts), 1)
    for name in ("no_feed", "feed"):
        pairs = list(zip(times[name], times["trafilatura"], strict=True))
        out[f"{name}_ratio_cpu_per_repetition"] = [round(tc / oc, 3) for (_ow, oc), (_tw, tc) in pairs]
        out[f"{name}_ratio_cpu"] = round(statistics.median(tc / oc for (_ow, oc), (_tw, tc) in pairs), 3)
        out[f"{name}_ratio_wall"] = round(statistics.median(tw / ow for (ow, _oc), (tw, _tc) in pairs), 3)
    return out


def vs_bare_extraction(quick: bool = False) -> dict[str, Any]:
    """``versus_bare_extraction`` on both page sets; the verdict is the lower of the two CPU ratios
    (no feed entry)."""
    limit, reps = (40, 3) if quick else (None, 5)
    now = datetime.now(UTC)
    sets = {"news_metadata": versus_bare_extraction(news_metadata_pages(limit), "utf-8", reps, now),
            "corpus_pages": versus_bare_extraction(load_pages(limit), None, reps, now)}
    ratio = min(r["no_feed_ratio_cpu"] for r in sets.values())
    return {**sets, "goal": GOAL_VS_BARE, "ratio_cpu": ratio, "met": ratio >= GOAL_VS_BARE}


# --- step costs and memory ---------------------------------------------------------------------------
def in_process(settings: Settings) -> WorkerConfig:
    """A worker's config for running its code in this process: this process keeps its own logging."""
    return dataclasses.replace(WorkerConfig.from_settings(settings), logging=None)


def step_costs(settings: Settings, values: list[bytes]) -> dict[str, Any]:
    """CPU ms per article of each step, enrichment on, in one fresh worker process of the fork server."""
    with multiprocessing.get_context("forkserver").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_step_costs, (settings, values))


def _step_costs(settings: Settings, values: list[bytes]) -> dict[str, Any]:
    import processors.warmup  # noqa: F401 - warm as the pool's fork server makes its workers
    t = time.perf_counter()
    init_worker(in_process(settings.model_copy(update={"extract_memory_mb": 0})))
    load_s = time.perf_counter() - t
    totals: dict[str, float] = defaultdict(float)
    english: dict[str, float] = defaultdict(float)
    n_en = n = 0
    for v in values:
        try:
            res = process_value(v)
        except Exception:  # noqa: BLE001 - a page the processor dead-letters costs nothing here
            continue
        n += 1
        for step, sec in res.built.timings.items():
            totals[step] += sec
        if res.built.article.language == "en":
            n_en += 1
            for step, sec in res.built.timings.items():
                english[step] += sec
    order = ["extract", "clean", *STEPS]
    return {
        "articles": n,
        "english_articles": n_en,
        "models_load_s": round(load_s, 2),
        "ms_per_article": {k: round(totals[k] / n * 1000, 2) for k in order if k in totals},
        "ms_per_english_article": {k: round(english[k] / n_en * 1000, 2) for k in order if k in english} if n_en else {},
    }


def _worker_rss(enrich: bool, values: list[bytes]) -> int:
    import processors.warmup  # noqa: F401 - as in the pool's fork server
    init_worker(in_process(Settings(enrich=enrich, metrics_port=0, extract_memory_mb=0)))
    peak = 0
    for v in values:
        try:
            peak = max(peak, process_value(v).max_rss_kib)
        except Exception:  # noqa: BLE001 - dead-lettered pages still count for memory via ru_maxrss
            continue
    return peak


def worker_rss_mib(enrich: bool, values: list[bytes]) -> float:
    """Peak RSS of one fresh worker process after all the pages (ru_maxrss)."""
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return round(pool.apply(_worker_rss, (enrich, values)) / 1024, 1)


def cleanup(made: list[Settings]) -> None:
    for s in made:
        for problem in teardown(s):
            log(f"clean-up of {s.topic_raw}...: {problem}")


def _median_ratio(ours: list[float], theirs: list[float]) -> float:
    return round(statistics.median(n / r for n, r in zip(ours, theirs, strict=True)), 3)


def run(quick: bool = False) -> dict[str, Any]:
    limit, reps, batch = (120, 2, 20) if quick else (None, 3, 50)
    one_blas_thread()  # the fork server every process of this benchmark comes from runs as the pool's does
    base = Settings().model_copy(update={"batch_size": batch, "metrics_port": 0})
    workers = base.extract_workers
    pages = load_pages(limit)
    now = datetime.now(UTC)
    inputs = {"no_feed": raw_values(pages, now), "feed": raw_values(pages, now, typical_entry(now)),
              "feed_author": raw_values(pages, now, typical_entry(now, author="A. Reporter"))}
    bodies = [b for _u, b in pages]
    off = base.model_copy(update={"enrich": False})
    tag = f"benchp{uuid.uuid4().hex[:8]}"
    made: list[Settings] = []
    raws = {"raw": {"wall": [], "cpu": []}, "raw_meta": {"wall": [], "cpu": []}}
    raw = raws["raw"]
    stage: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in inputs}
    try:
        for rep in range(reps):
            order = ["raw", "feed", "raw_meta", "no_feed", "feed_author"]
            for side in order if rep % 2 == 0 else order[::-1]:
                log(f"repetition {rep + 1}/{reps}: {side} ({len(pages)} pages, {workers} workers) ...")
                if side in raws:
                    wall, cpu = raw_loop(bodies, workers, with_metadata=side == "raw_meta")
                    raws[side]["wall"].append(wall)
                    raws[side]["cpu"].append(cpu)
                    continue
                s = bench_settings(base, f"{tag}r{rep}{side}", enrich=False, topic_partitions=workers)
                ensure_topics(s)
                made.append(s)
                wall, cpu, consumed = stage_through_kafka(s, inputs[side], warmup=batch)
                if consumed < len(pages):
                    raise RuntimeError(f"processor consumed {consumed} of {len(pages)} records")
                stage[side]["wall"].append(wall)
                stage[side]["cpu"].append(cpu)
        log("transform only (no Kafka), and per core: one worker against one raw loop ...")
        raw_wall, raw_cpu = statistics.median(raw["wall"]), statistics.median(raw["cpu"])
        transform = {k: transform_only(off, v) for k, v in inputs.items()}
        one = off.model_copy(update={"extract_workers": 1})
        raw_one = raw_loop(bodies, 1)
        per_core = {k: transform_only(one, v) for k, v in inputs.items()}
        log("the transform against bare_extraction(with_metadata=True), in process ...")
        vs_bare = vs_bare_extraction(quick)
        log("cost of each step (enrichment on) ...")
        costs = step_costs(base, inputs["no_feed"])
        log("peak RSS of one worker ...")
        rss_on = worker_rss_mib(True, inputs["no_feed"])
        rss_off = worker_rss_mib(False, inputs["no_feed"])
    finally:
        cleanup(made)
    ratio = _median_ratio(stage["feed"]["wall"], raw["wall"])
    meta = raws["raw_meta"]
    return {
        "benchmark": "processor",
        "pages": len(pages),
        "workers": workers,
        "repetitions": reps,
        "batch_size": batch,
        "headline": "newsflow on pages with their feed entry (title, published, summary; no author) "
                    "/ trafilatura.extract with its defaults",
        "raw_pages_per_s": [round(r, 1) for r in raw["wall"]],
        "raw_pages_per_s_median": round(raw_wall, 1),
        "newsflow_pages_per_s": [round(r, 1) for r in stage["feed"]["wall"]],
        "newsflow_pages_per_s_median": round(statistics.median(stage["feed"]["wall"]), 1),
        "ratio_per_repetition": [round(n / r, 3) for n, r in zip(stage["feed"]["wall"], raw["wall"], strict=True)],
        "ratio": ratio,
        "goal": GOAL,
        "met": ratio >= GOAL,
        "ratio_cpu": _median_ratio(stage["feed"]["cpu"], raw["cpu"]),
        "raw_pages_per_cpu_s_median": round(raw_cpu, 1),
        "feed_entry_with_author_ratio": _median_ratio(stage["feed_author"]["wall"], raw["wall"]),
        "feed_entry_with_author_ratio_cpu": _median_ratio(stage["feed_author"]["cpu"], raw["cpu"]),
        "no_feed_entry_ratio": _median_ratio(stage["no_feed"]["wall"], raw["wall"]),
        "no_feed_entry_ratio_cpu": _median_ratio(stage["no_feed"]["cpu"], raw["cpu"]),
        "no_feed_entry_pages_per_s": [round(r, 1) for r in stage["no_feed"]["wall"]],
        "raw_with_metadata_pages_per_s": [round(r, 1) for r in meta["wall"]],
        "no_feed_entry_vs_raw_with_metadata": _median_ratio(stage["no_feed"]["wall"], meta["wall"]),
        "no_feed_entry_vs_raw_with_metadata_cpu": _median_ratio(stage["no_feed"]["cpu"], meta["cpu"]),
        "stage_process_cpu_ms_per_page_median": round(statistics.median(PARENT_MS), 2) if PARENT_MS else None,
        "vs_bare_extraction": vs_bare,
        "transform_only_ratio": {k: round(v[0] / raw_wall, 3) for k, v in transform.items()},
        "transform_only_ratio_cpu": {k: round(v[1] / raw_cpu, 3) for k, v in transform.items()},
        "per_core_ratio_one_worker": {k: round(v[0] / raw_one[0], 3) for k, v in per_core.items()},
        "per_core_ratio_one_worker_cpu": {k: round(v[1] / raw_one[1], 3) for k, v in per_core.items()},
        "enrichment_ms_per_article": costs["ms_per_article"],
        "enrichment_ms_per_english_article": costs["ms_per_english_article"],
        "step_cost_articles": costs["articles"],
        "step_cost_english_articles": costs["english_articles"],
        "models_load_s": costs["models_load_s"],
        "peak_rss_per_worker_mib": rss_on,
        "peak_rss_per_worker_enrich_off_mib": rss_off,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    }


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the bench topics
    quick = "--quick" in sys.argv[1:]
    if "--vs-bare" in sys.argv[1:]:  # only the in-process comparison with bare_extraction: no stack needed
        print(json.dumps(vs_bare_extraction(quick), indent=2))
    else:
        print(json.dumps(run(quick=quick), indent=2))
