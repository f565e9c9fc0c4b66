"""``make bench``: run every benchmark in one run, side by side, and write bench/report.md + PNG plots.

    python bench/run.py [--quick] [--only poller,processor,indexer,e2e,sustained] [--sizes 1000,5000] [--out DIR]

Each area's benchmark module exposes ``run(quick: bool) -> dict`` (bench/bench_poller.py,
bench/bench_processor.py, bench/bench_indexer.py, bench/bench_e2e.py, bench/bench_sustained.py). This script notes the machine,
runs them one after the other on the configured stack (``NEWSFLOW_KAFKA_BOOTSTRAP``,
``NEWSFLOW_ES_URL``), keeps every raw result (``<out>/report.json``), draws the plots and writes the
report, which says plainly which goals are met. A benchmark that fails is reported as failed (with
its error); the others still run. The chaos and hostile tables of the last ``make test-chaos`` /
``make test`` (bench/out/*-table.txt) are appended, marked as such.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCHES = ("poller", "processor", "indexer", "e2e", "sustained")
SECTION = {"e2e": "End to end", "sustained": "Whole pipeline, sustained"}
MiB = 1024 * 1024
# Issue 12's baseline: CPU ms per English article of the enrichment steps in the report of 2026-11-24
# (language 2.6, entities 154.9, quotes 1.2, keywords 32.3, MinHash 1.7); the goal is half of it.
ENRICH_BASELINE_MS = 192.7
SCALE_TOLERANCE = 0.15


# --- the machine -------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def service_versions() -> dict[str, str]:
    from newsflow.elastic import make_es
    from newsflow.kafka_io import make_admin
    from newsflow.settings import Settings

    s = Settings()
    out = {"kafka_bootstrap": s.kafka_bootstrap, "es_url": s.es_url}
    try:
        es = make_es(s, request_timeout=10)
        try:
            out["elasticsearch"] = es.info()["version"]["number"]
        finally:
            es.close()
    except Exception as exc:  # noqa: BLE001 - the report says what could not be read
        out["elasticsearch"] = f"unknown ({type(exc).__name__})"
    try:
        admin = make_admin(s)
        try:
            out["kafka_brokers"] = str(len(admin.describe_cluster()["brokers"]))
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001
        out["kafka_brokers"] = f"unknown ({type(exc).__name__})"
    stack = REPO / "deploy" / "local" / "stack.sh"
    if stack.exists():
        for line in stack.read_text().splitlines():
            if line.startswith("KAFKA_VERSION="):
                out["kafka (local stack)"] = line.split("=", 1)[1].split()[0].strip('"')
    return out


def machine() -> dict[str, Any]:
    import psutil

    libs = {}
    for name in ("kafka-python", "elasticsearch", "trafilatura", "feedparser", "httpx", "spacy", "pydantic",
                 "matplotlib"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libs,
        "services": service_versions(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- running ------------------------------------------------------------------------------------------
def run_one(name: str, quick: bool, **options: Any) -> dict[str, Any]:
    started = time.monotonic()
    print(f"\n=== bench {name} ({'quick' if quick else 'full'}) ===", file=sys.stderr, flush=True)
    try:
        module = importlib.import_module(f"bench.bench_{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.bench_{name}":
            return {"status": "missing", "error": f"bench/bench_{name}.py does not exist yet"}
        raise
    try:
        result = module.run(quick, **options)
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others; reported below
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:1000],
                "seconds": round(time.monotonic() - started, 1)}
    return {"status": "ok", "seconds": round(time.monotonic() - started, 1), "result": result}


# --- goals: read each module's result -----------------------------------------------------------------
def _met(r: dict[str, Any]) -> bool | None:
    for key in ("met", "meets_goal"):
        if key in r:
            return bool(r[key])
    return None


def poller_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(r.get("results", []), key=lambda x: x["feeds"])


def poller_linear(rows: list[dict[str, Any]]) -> tuple[bool | None, str]:
    """Linear (or better): the per-feed cost of the poll itself does not grow with the number of feeds
    by more than 1.5x from one size to the next (fixed start-up costs make small sizes dearer per feed)."""
    pts = [(x["feeds"], x.get("poll_s") or x["wall_s"]) for x in rows if x.get("feeds")]
    if len(pts) < 2:
        return None, "fewer than two sizes measured"
    per = [(n, t / n * 1000) for n, t in pts]
    growth = [b / a for (_, a), (_, b) in zip(per, per[1:])]
    text = ", ".join(f"{n:,} feeds {ms:.2f} ms/feed" for n, ms in per)
    return all(g <= 1.5 for g in growth), text


def goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per goal of issue 7: goal, measured, met (True/False/None = not measured)."""
    rows: list[dict[str, Any]] = []

    def res(name: str) -> dict[str, Any] | None:
        entry = results.get(name, {})
        return entry.get("result") if entry.get("status") == "ok" else None

    p = res("processor")
    measured = "not measured"
    if p and "ratio" in p:
        measured = f"{p['ratio']:.3f} x (pages with their feed entry, as the poller sends them; no author)"
        if "feed_entry_with_author_ratio" in p:
            measured += f"; entry with an author: {p['feed_entry_with_author_ratio']:.3f} x"
        if "no_feed_entry_ratio" in p:
            measured += (f"; worst case, no feed metadata: {p['no_feed_entry_ratio']:.3f} x, which is "
                         f"{p['no_feed_entry_vs_raw_with_metadata']:.3f} x extract(with_metadata=True)")
    rows.append({"area": "Processor", "goal": "throughput >= 0.85 x raw trafilatura.extract loop (enrichment off)",
                 "measured": measured, "met": (p["ratio"] >= 0.85) if p and "ratio" in p else None})
    vb = p.get("vs_bare_extraction") if p else None
    if vb:  # issue 12, goal 2: like for like (both find every field on the page), per CPU second
        sets = "; ".join(f"{name.replace('_', ' ')}: {r['no_feed_ratio_cpu']:.3f} x CPU, {r['no_feed_ratio_wall']:.3f} x "
                         f"wall (with a feed entry {r['feed_ratio_cpu']:.3f} x CPU)"
                         for name, r in vb.items() if isinstance(r, dict))
        measured = f"{vb['ratio_cpu']:.3f} x (the lower page set; no feed entry). {sets}"
    rows.append({"area": "Processor", "goal": f">= {vb['goal'] if vb else 1.2} x trafilatura.bare_extraction("
                 "with_metadata=True) in pages per CPU second (enrichment off, news pages)",
                 "measured": measured if vb else "not measured", "met": vb["met"] if vb else None})
    en = enrichment_ms(p) if p else None
    rows.append({"area": "Processor", "goal": f"enrichment CPU per English article <= half of issue 12's "
                 f"{ENRICH_BASELINE_MS} ms (NER 154.9 + keywords 32.3 + language, quotes, MinHash)",
                 "measured": (f"{sum(en.values()):.1f} ms = {sum(en.values()) / ENRICH_BASELINE_MS:.3f} x "
                              f"({', '.join(f'{k} {v:.1f}' for k, v in en.items())})") if en else "not measured",
                 "met": sum(en.values()) <= ENRICH_BASELINE_MS / 2 if en else None})
    i = res("indexer")
    rows.append({"area": "Indexer", "goal": f"throughput >= {i['goal'] if i else 1.0} x raw helpers.streaming_bulk",
                 "measured": f"{i['ratio']:.3f} x" if i and "ratio" in i else "not measured",
                 "met": (i["ratio"] >= i["goal"]) if i and "ratio" in i else None})
    cpu = i.get("client_cpu_ms_per_1000_docs") if i else None
    rows.append({"area": "Indexer", "goal": "client CPU per document <= 1.0 x raw helpers.streaming_bulk",
                 "measured": (f"{i['cpu_ratio']:.3f} x ({cpu['newsflow']} vs {cpu['raw']} µs per document; reading "
                              f"the records from Kafka alone costs {cpu['kafka_read_only']} µs: "
                              f"{i['cpu_ratio_to_read_plus_bulk']:.3f} x that read + the raw bulk)")
                 if i and "cpu_ratio" in i else "not measured",
                 "met": i["cpu_met"] if i and "cpu_ratio" in i else None})
    pl = res("poller")
    at = next((x for x in poller_rows(pl) if x["feeds"] == 1000), None) if pl else None
    rows.append({"area": "Poller", "goal": "1,000 feeds: one cycle < 10 s",
                 "measured": f"{at['wall_s']:.2f} s" if at else "not measured",
                 "met": at["wall_s"] < 10 if at else None})
    rows.append({"area": "Poller", "goal": "1,000 feeds: peak RSS < 200 MiB",
                 "measured": f"{at['peak_rss_mib']:.0f} MiB" if at else "not measured",
                 "met": at["peak_rss_mib"] < 200 if at else None})
    lin, text = poller_linear(poller_rows(pl)) if pl else (None, "not measured")
    rows.append({"area": "Poller", "goal": "cost grows linearly (100 / 1,000 / 10,000 feeds)", "measured": text,
                 "met": lin})
    e = res("e2e")
    rows.append({"area": "End to end", "goal": "feed poll -> searchable p50 < 1 s at ~10 articles/s",
                 "measured": f"{e['p50_s']:.2f} s" if e else "not measured", "met": e["p50_s"] < 1.0 if e else None})
    rows.append({"area": "End to end", "goal": "feed poll -> searchable p99 < 3 s at ~10 articles/s",
                 "measured": f"{e['p99_s']:.2f} s" if e else "not measured", "met": e["p99_s"] < 3.0 if e else None})
    su = res("sustained")
    head = su["results"][0] if su else None
    rows.append({"area": "Whole pipeline", "goal": "sustained throughput >= 0.85 x the standalone processor "
                 "(enrichment on)",
                 "measured": (f"{head['ratio']:.3f} x (CPU: {head['ratio_cpu']:.3f} x); {head['articles_per_s']:.1f} "
                              f"articles/s = {head['articles_per_day']:,} articles/day at {head['articles']:,} "
                              "articles, 1 processor") if head else "not measured",
                 "met": head["ratio"] >= 0.85 if head else None})
    rows.append({"area": "Whole pipeline", "goal": "poller CPU < 5 ms per article (sustained)",
                 "measured": f"{head['cpu_ms_per_article']['poller']:.1f} ms" if head else "not measured",
                 "met": head["cpu_ms_per_article"]["poller"] < 5 if head else None})
    comp = su.get("topic_compression") if su else None
    kafka_ms = "; ".join(f"{x['articles']:,} x{x['processors']}: {x['cpu_ms_per_article']['kafka']:.1f} ms"
                         for x in su["results"]) if su else ""
    rows.append({"area": "Kafka", "goal": "topics keep the producer's compression (compression.type=producer); "
                 "broker CPU per article",
                 "measured": (f"{', '.join(sorted(set(map(str, comp.values()))))} on the broker; broker CPU per "
                              f"article {kafka_ms}") if comp else "not measured",
                 "met": set(comp.values()) == {"producer"} if comp else None})
    one = [x for x in su["results"] if x["processors"] == 1] if su else []
    if len(one) > 1:
        lo, hi = one[0], one[-1]
        total = {x["articles"]: sum(x["cpu_ms_per_article"].values()) for x in one}
        growth = total[hi["articles"]] / total[lo["articles"]]
        multi = [x for x in su["results"] if x["processors"] > 1]
        measured = ("CPU per article, all stages: " + ", ".join(f"{n:,}: {v:.1f} ms" for n, v in total.items())
                    + f" ({growth:.2f} x); articles/s " + ", ".join(f"{x['articles']:,}: {x['articles_per_s']:.1f}"
                                                                    for x in one)
                    + "".join(f"; {x['processors']} processors at {x['articles']:,}: {x['articles_per_s']:.1f} "
                              f"articles/s" for x in multi))
        rows.append({"area": "Whole pipeline", "goal": f"per-article cost flat from {lo['articles']:,} to "
                     f"{hi['articles']:,} articles (within {SCALE_TOLERANCE:.0%})", "measured": measured,
                     "met": growth <= 1 + SCALE_TOLERANCE})
    else:
        rows.append({"area": "Whole pipeline", "goal": "per-article cost flat from 1k to 20k articles",
                     "measured": "not measured (one size)", "met": None})
    return rows


def enrichment_ms(p: dict[str, Any]) -> dict[str, float] | None:
    """CPU ms per English article of the enrichment steps (extraction and cleaning are not enrichment)."""
    steps = p.get("enrichment_ms_per_english_article") or {}
    return {k: v for k, v in steps.items() if k not in ("extract", "clean")} or None


def sustained_rows(r: dict[str, Any]) -> list[str]:
    """The sustained benchmark's table: one row per size and number of processors."""
    stages = list(r["results"][0]["cpu_ms_per_article"])
    out = ["| articles | processors | reps | articles/s | articles/day | standalone articles/s | ratio | ratio CPU | "
           + " | ".join(f"CPU ms/article {s}" for s in stages) + " | ratio per repetition |",
           "|" + "---|" * (9 + len(stages))]
    for x in r["results"]:
        out.append(f"| {x['articles']:,} | {x['processors']} | {x['repetitions']} | {x['articles_per_s']:.2f} | "
                   f"{x['articles_per_day']:,} | {x['standalone_articles_per_s']:.2f} | {x['ratio']:.3f} | "
                   f"{x['ratio_cpu']:.3f} | " + " | ".join(_fmt(x["cpu_ms_per_article"][s]) for s in stages)
                   + f" | {_fmt(x['ratio_runs'])} |")
    return out


# --- plots --------------------------------------------------------------------------------------------
def plot_all(results: dict[str, dict[str, Any]], out: Path) -> list[tuple[str, str]]:
    """Draws what was measured; returns (file name, caption) for the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []

    def ok(name: str) -> dict[str, Any] | None:
        entry = results.get(name, {})
        return entry.get("result") if entry.get("status") == "ok" else None

    # ratios side by side
    bars = []  # (label, median, goal, repetitions): higher is better for every bar
    p, i, su = ok("processor"), ok("indexer"), ok("sustained")
    if p and "ratio" in p:
        bars.append(("processor\n/ extract()", p["ratio"], 0.85, p.get("ratio_per_repetition") or []))
    vb = p.get("vs_bare_extraction") if p else None
    if vb:
        bars.append(("processor CPU\n/ bare_extraction", vb["ratio_cpu"], vb["goal"], []))
    if i and "ratio" in i:
        bars.append(("indexer\n/ streaming_bulk", i["ratio"], i["goal"], i.get("ratio_per_repetition") or []))
    if i and "cpu_ratio" in i:
        bars.append(("indexer: raw CPU\n/ Newsflow CPU", 1 / i["cpu_ratio"], 1 / i["cpu_goal"],
                     [1 / x for x in i["cpu_ratio_per_repetition"]]))
    if su:
        head = su["results"][0]
        bars.append(("pipeline\n/ processor alone", head["ratio"], su["goal"], head["ratio_runs"]))
    if bars:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        for k, (name, ratio, goal, reps) in enumerate(bars):
            ax.bar(k, ratio, width=0.55, color="tab:green" if ratio >= goal else "tab:red", alpha=0.8)
            ax.hlines(goal, k - 0.35, k + 0.35, colors="black", linestyles="--")
            ax.text(k + 0.37, goal, f"goal {goal:.2f}", va="center", fontsize=7)
            ax.scatter([k] * len(reps), reps, color="black", s=12, zorder=3, label="repetitions" if k == 0 else None)
            ax.text(k, ratio + 0.02, f"{ratio:.3f}", ha="center", fontsize=9)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.set_ylabel("ratio to the baseline (median)")
        ax.set_ylim(0, max(1.3, max(b[1] for b in bars) + 0.15))
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("Newsflow vs its baselines (same run, same cores; higher is better)")
        fig.tight_layout()
        fig.savefig(out / "ratios.png", dpi=110)
        plt.close(fig)
        made.append(("ratios.png", "Each stage and the whole pipeline against its baseline, higher is better "
                                   "(bars: median; dots: repetitions; dashed: the goal)."))

    # enrichment cost per step
    p = ok("processor")
    steps = _enrichment_steps(p) if p else {}
    if steps:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        names = list(steps)
        ax.barh(names, [steps[n] for n in names], color="tab:blue")
        for y, n in enumerate(names):
            ax.text(steps[n], y, f" {steps[n]:.1f}", va="center", fontsize=8)
        ax.set_xlabel("ms per article")
        ax.set_title("Processor: cost of each step")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / "enrichment_cost.png", dpi=110)
        plt.close(fig)
        made.append(("enrichment_cost.png", "Processor: milliseconds per article for each step."))

    # poller scaling curve
    pl = ok("poller")
    rows = poller_rows(pl) if pl else []
    if rows:
        feeds = [x["feeds"] for x in rows]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
        a1.plot(feeds, [x["wall_s"] for x in rows], "o-", label="wall (whole run)")
        if all("poll_s" in x for x in rows):
            a1.plot(feeds, [x["poll_s"] for x in rows], "s--", label="poll batches only")
        if all("cpu_s" in x for x in rows):
            a1.plot(feeds, [x["cpu_s"] for x in rows], "^:", label="CPU (user+sys)")
        if len(rows) >= 2:
            slope = rows[-1]["wall_s"] / rows[-1]["feeds"]
            a1.plot(feeds, [slope * n for n in feeds], color="grey", lw=0.8, label="linear through the largest")
        a1.scatter([1000], [10], marker="x", color="red", s=60, zorder=4, label="goal: 1,000 feeds < 10 s")
        a1.set_xscale("log")
        a1.set_yscale("log")
        a1.set_xlabel("feeds")
        a1.set_ylabel("seconds")
        a1.legend(fontsize=7)
        a1.set_title("Poller: one cycle")
        a2.plot(feeds, [x["peak_rss_mib"] for x in rows], "o-", color="tab:purple", label="peak RSS")
        if all("baseline_rss_mib" in x for x in rows):
            a2.plot(feeds, [x["baseline_rss_mib"] for x in rows], ":", color="grey", label="imports only")
        a2.axhline(200, color="red", ls="--", lw=0.8, label="goal at 1,000 feeds: 200 MiB")
        a2.set_xscale("log")
        a2.set_xlabel("feeds")
        a2.set_ylabel("MiB")
        a2.legend(fontsize=7)
        a2.set_title("Poller: peak RSS")
        fig.tight_layout()
        fig.savefig(out / "poller_scaling.png", dpi=110)
        plt.close(fig)
        made.append(("poller_scaling.png", "Poller: one poll cycle over 100 / 1,000 / 10,000 local feeds "
                                            "(log-log: linear cost is a line of slope 1)."))

    # end-to-end latency
    e = ok("e2e")
    if e and e.get("runs"):
        lat = sorted(x for r in e["runs"] for x in r.get("latencies_s", []))
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
        if lat:
            a1.plot(lat, [(k + 1) / len(lat) for k in range(len(lat))], color="tab:blue")
        a1.axvline(1.0, color="tab:orange", ls="--", lw=0.9, label="goal p50 < 1 s")
        a1.axvline(3.0, color="tab:red", ls="--", lw=0.9, label="goal p99 < 3 s")
        a1.axhline(0.5, color="grey", lw=0.5)
        a1.axhline(0.99, color="grey", lw=0.5)
        a1.set_xlabel("seconds from the feed poll to searchable")
        a1.set_ylabel("share of articles")
        a1.set_title(f"End to end at {e['rate_per_s']:g} articles/s: p50 {e['p50_s']:.2f} s, p99 {e['p99_s']:.2f} s")
        a1.legend(fontsize=8, loc="lower right")
        legs: dict[str, list[float]] = {}
        for r in e["runs"]:
            for k, v in (r.get("legs_median_s") or {}).items():
                legs.setdefault(k, []).append(v)
        if legs:
            names = list(legs)
            vals = [statistics.median(legs[n]) for n in names]
            a2.barh(names, vals, color="tab:cyan")
            for y, v in enumerate(vals):
                a2.text(v, y, f" {v:.3f} s", va="center", fontsize=8)
            a2.invert_yaxis()
            a2.set_xlabel("median seconds")
            a2.set_title("where the time goes")
        fig.tight_layout()
        fig.savefig(out / "e2e_latency.png", dpi=110)
        plt.close(fig)
        made.append(("e2e_latency.png", "End to end: distribution of feed-poll-to-searchable latency, and the "
                                         "median of each leg."))

    # sustained pipeline: throughput and CPU per article per stage, per size and number of processors
    su = ok("sustained")
    if su:
        rows = su["results"]
        labels = [f"{x['articles']:,}\nx{x['processors']}" for x in rows]
        stages = list(rows[0]["cpu_ms_per_article"])
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.8))
        a1.bar([k - 0.2 for k in range(len(rows))], [x["articles_per_s"] for x in rows], width=0.4, label="pipeline")
        a1.bar([k + 0.2 for k in range(len(rows))], [x["standalone_articles_per_s"] for x in rows], width=0.4,
               label="processor alone")
        a1.set_xticks(range(len(rows)), labels)
        a1.set_ylabel("articles/s")
        a1.set_title("throughput (articles, processors)")
        a1.legend(fontsize=8)
        bottom = [0.0] * len(rows)
        for st in stages:
            vals = [x["cpu_ms_per_article"][st] for x in rows]
            a2.bar(range(len(rows)), vals, bottom=bottom, label=st)
            bottom = [b + v for b, v in zip(bottom, vals)]
        a2.set_xticks(range(len(rows)), labels)
        a2.set_ylabel("CPU ms per article")
        a2.set_title("CPU per article per stage (stacked)")
        a2.legend(fontsize=8)
        one = [x for x in rows if x["processors"] == 1]
        for st in stages:
            a3.plot([x["articles"] for x in one], [x["cpu_ms_per_article"][st] for x in one], marker="o", label=st)
        a3.plot([x["articles"] for x in one], [sum(x["cpu_ms_per_article"].values()) for x in one], marker="s",
                color="black", label="all stages")
        a3.set_xscale("log")
        a3.set_xlabel("articles (1 processor)")
        a3.set_ylabel("CPU ms per article")
        a3.set_title("scaling: flat is linear cost")
        a3.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "sustained.png", dpi=110)
        plt.close(fig)
        made.append(("sustained.png", "Whole pipeline, sustained: throughput against the processor alone, CPU "
                                      "per article per stage for each size and number of processors, and how the CPU "
                                      "per article grows with the number of articles."))

    # memory per stage
    mem = memory_rows(results)
    if mem:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(mem) + 1.6))
        names = [m[0] for m in mem]
        ax.barh(names, [m[1] for m in mem], color="tab:purple", label="stage process")
        extra = [max(0, (m[2] or m[1]) - m[1]) for m in mem]
        ax.barh(names, extra, left=[m[1] for m in mem], color="plum", label="its worker processes")
        for y, m in enumerate(mem):
            ax.text((m[2] or m[1]), y, f" {(m[2] or m[1]):.0f} MiB", va="center", fontsize=8)
        ax.set_xlabel("peak RSS, MiB")
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("Peak memory per stage")
        fig.tight_layout()
        fig.savefig(out / "memory.png", dpi=110)
        plt.close(fig)
        made.append(("memory.png", "Peak resident memory of each stage."))
    return made


def _enrichment_steps(p: dict[str, Any]) -> dict[str, float]:
    for key in ("enrichment_ms_per_article", "step_ms", "steps_ms", "enrichment_ms", "enrich_steps_ms"):
        v = p.get(key)
        if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
            return {str(k): float(x) for k, x in v.items()}
    return {}


def memory_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, float, float | None, str]]:
    """(label, stage peak MiB, stage+workers peak MiB, source)."""
    rows = []
    e = results.get("e2e", {}).get("result") if results.get("e2e", {}).get("status") == "ok" else None
    if e:
        for stage, mib in e.get("peak_rss_mib", {}).items():
            rows.append((f"{stage} (end-to-end run)", float(mib), float(e.get("peak_rss_tree_mib", {}).get(stage, mib)),
                         "e2e"))
    pl = results.get("poller", {}).get("result") if results.get("poller", {}).get("status") == "ok" else None
    for x in poller_rows(pl) if pl else []:
        rows.append((f"poller, cycle of {x['feeds']:,} feeds", float(x["peak_rss_mib"]), None, "poller bench"))
    p = results.get("processor", {}).get("result") if results.get("processor", {}).get("status") == "ok" else None
    if p:
        for key, label in (("peak_rss_per_worker_mib", "processor, one extraction worker (models loaded)"),
                           ("peak_rss_per_worker_enrich_off_mib", "processor, one extraction worker (enrichment off)")):
            if isinstance(p.get(key), (int, float)):
                rows.append((label, float(p[key]), None, "processor bench"))
    return rows


# --- the report ---------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)) and len(v) <= 8 and all(isinstance(x, (int, float, str)) for x in v):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict) and len(v) <= 10 and all(isinstance(x, (int, float, str, bool)) for x in v.values()):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def scalars(r: dict[str, Any], skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    out = []
    for k, v in r.items():
        if k in skip or k in ("machine",):
            continue
        if isinstance(v, (list, dict)) and len(_fmt(v)) > 160:
            continue
        out.append((k, _fmt(v)))
    return out


def verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**NOT met**", None: "not measured"}[met]


def render(mach: dict[str, Any], results: dict[str, dict[str, Any]], plots: list[tuple[str, str]],
           quick: bool, total_s: float) -> str:
    g = goals(results)
    met = sum(1 for r in g if r["met"] is True)
    not_met = [r for r in g if r["met"] is False]
    unmeasured = [r for r in g if r["met"] is None]
    lines = [
        "# Newsflow benchmark report",
        "",
        f"Written by `make bench` (`bench/run.py{' --quick' if quick else ''}`) on {mach['date']}; "
        f"the whole run took {total_s / 60:.1f} min. Every ratio compares Newsflow with the library it is "
        "built on, measured side by side in this one run on the same cores; figures are medians of "
        "several repetitions (the per-repetition values are listed).",
        "",
        "## Verdict",
        "",
        f"**{met} of {len(g)} goals met**"
        + (f"; not met: {', '.join(r['area'] + ' — ' + r['goal'] for r in not_met)}" if not_met else "")
        + (f"; not measured: {', '.join(r['area'] + ' — ' + r['goal'] for r in unmeasured)}" if unmeasured else "")
        + ".",
        "",
        "| area | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['area']} | {r['goal']} | {r['measured']} | {verdict(r['met'])} |" for r in g]
    lines += [
        "",
        "## Machine",
        "",
        f"- {mach['nproc']} CPUs ({mach['cpu_model']}), {mach['memory_gib']} GiB memory, {mach['os']}",
        f"- Python {mach['python']}; " + ", ".join(f"{k} {v}" for k, v in mach["libraries"].items()),
        "- services: " + ", ".join(f"{k} {v}" for k, v in mach["services"].items()),
        f"- load average at start {mach['load_avg_start']}, at end {mach.get('load_avg_end')} "
        "(the machine is shared: wall times are noisy, ratios less so because both sides run back to back, "
        "alternating)",
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        for f, caption in plots:
            lines += [f"![{caption}]({f})", "", f"*{caption}*", ""]
    for name in BENCHES:
        entry = results.get(name)
        if entry is None:
            continue
        lines += [f"## {SECTION.get(name, name.capitalize())}", ""]
        if entry["status"] != "ok":
            lines += [f"**{entry['status']}**: {entry.get('error')}", ""]
            continue
        r = entry["result"]
        doc = (importlib.import_module(f"bench.bench_{name}").__doc__ or "").split("\n\n")[0]
        desc = r.get("description") or " ".join(doc.split())
        lines += [desc, "", f"Ran for {entry['seconds']:.0f} s. Goal {verdict(_met(r)) if _met(r) is not None else ''}".rstrip(), ""]
        if name == "poller":
            rows = poller_rows(r)
            cols = [c for c in ("feeds", "wall_s", "poll_s", "cpu_s", "ms_per_feed", "peak_rss_mib",
                                "baseline_rss_mib", "pages_produced", "wall_s_runs") if any(c in x for x in rows)]
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(x.get(c, "")) for c in cols) + " |" for x in rows]
            lines += [""]
            lines += [f"- {k}: {v}" for k, v in scalars(r, skip=("results", "description", "name"))]
            lines += [""]
        elif name == "sustained":
            lines += sustained_rows(r) + [""]
            lines += [f"- {k}: {v}" for k, v in scalars(r, skip=("results",))] + [""]
        elif name == "e2e":
            lines += [
                f"- p50 **{r['p50_s']:.3f} s**, p99 **{r['p99_s']:.3f} s** (median over {r['repetitions']} "
                f"repetitions of {r['duration_s']:.0f} s at {r['rate_per_s']:g} articles/s; per repetition: "
                f"p50 {_fmt(r['p50_s_runs'])}, p99 {_fmt(r['p99_s_runs'])})",
                f"- articles never searchable: {r['missing']}",
                "- median of each leg (first repetition): " + _fmt(r["runs"][0].get("legs_median_s", {})),
                f"- peak RSS per stage (MiB): {_fmt(r['peak_rss_mib'])}; with worker processes: "
                f"{_fmt(r['peak_rss_tree_mib'])}",
                f"- CPU per article (ms, stage + workers, median): {_fmt(r.get('cpu_ms_per_article', {}))}",
                f"- 1-minute load average at start/end of each repetition: {r.get('load_avg_1m_runs')}",
                f"- settings: {_fmt(r['settings'])}",
            ]
            lines += [""]
        else:
            lines += [f"- {k}: {v}" for k, v in scalars(r)]
            lines += [""]
    mem = memory_rows(results)
    if mem:
        lines += ["## Memory: peak RSS per stage", "", "| stage | process MiB | with workers MiB | from |",
                  "|---|---|---|---|"]
        lines += [f"| {m[0]} | {m[1]:.0f} | {'' if m[2] is None else f'{m[2]:.0f}'} | {m[3]} |" for m in mem]
        lines += [""]
    for fname, title, origin in (("chaos-table.tsv", "Fault injection", "make test-chaos"),
                                 ("hostile-table.tsv", "Hostile inputs", "make test / make test-chaos")):
        f = REPO / "bench" / "out" / fname
        if f.exists():
            when = datetime.fromtimestamp(f.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
            rows = [ln.split("\t") for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
            lines += [f"## {title} (last `{origin}`, {when}; not part of this run)", ""]
            lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in rw) + " |" for rw in rows[1:]]
            lines += [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (a smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    ap.add_argument("--sizes", help="sustained: comma-separated numbers of articles (default 1000,5000,20000; "
                    "--quick: 1000)")
    ap.add_argument("--out", type=Path, default=REPO / "bench", help="where report.md and the plots go")
    args = ap.parse_args(argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    mach = machine()
    sizes = {"sizes": tuple(int(x) for x in args.sizes.split(","))} if args.sizes else {}
    results = {name: run_one(name, args.quick, **(sizes if name == "sustained" else {})) for name in only}
    mach["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    total = time.monotonic() - started
    raw = {"machine": mach, "quick": args.quick, "results": results, "goals": goals(results)}
    (args.out / "report.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    plots = plot_all(results, args.out)
    (args.out / "report.md").write_text(render(mach, results, plots, args.quick, total), encoding="utf-8")
    print(f"\nwrote {args.out / 'report.md'} and {len(plots)} plots", file=sys.stderr)
    for r in goals(results):
        print(f"  {verdict(r['met']).replace('*', ''):13} {r['area']}: {r['goal']} — {r['measured']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
