"""Poller benchmark: one poll cycle over 100, 1,000 and 10,000 locally served feeds, mostly answering 304.

Goal (issue 3): 1,000 feeds in under 10 s and under 200 MiB, cost growing linearly.

Setup, per size N (not measured):

* a feed server in its own process (asyncio, HTTP/1.1 keep-alive) on 127.0.0.1. Feed ``i`` lives on its
  own host name ``f<i>.bench.test`` (one feed per host, as with real publishers; the poller resolves
  them through a stub resolver to 127.0.0.1), has 10 entries and honours ``If-None-Match``. For the
  measured cycle, 1 feed in 20 has published one new entry (200, one page to fetch, robots.txt 404);
  the others answer 304;
* fresh Kafka topics; the N feed definitions, and a steady-state feed state for each (validators and
  the 10 entries seen, computed with the poller's own pure functions, as a previous cycle leaves
  them), written to the feeds and feed-state topics.

Measured, in a fresh child process (so peak RSS is the poller's alone): ``Poller.run(once=True,
force=True)``: join the consumer group, load the N definitions and states from Kafka, poll every feed,
fetch the new pages, produce them, persist N states, exit. ``wall_s`` is that whole run; ``poll_s``
is the time of the poll batches alone (fetch + produce + persist); ``cpu_s`` the poller's CPU time
(user + system), steadier than wall time on a busy machine. Peak RSS is ``ru_maxrss`` of the
child, which includes the interpreter and its libraries (``baseline_rss_mib``: the same imports,
no work). Sizes up to 1,000 run three times and the median run (by wall time) is reported, with all
three wall times: the machine is shared, wall time is noisy.

``run(quick) -> dict`` is what ``make bench`` calls (quick: 100 and 1,000 feeds);
``python bench/bench_poller.py [--quick]`` prints a table and the same dict as JSON.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import re
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from newsflow.settings import Settings  # noqa: E402
from newsflow.topology import ensure_topics, namespaced, teardown  # noqa: E402

GOAL = {"feeds": 1000, "wall_s": 10.0, "peak_rss_mib": 200.0}
ENTRIES = 10
NEW_EVERY = 20  # 1 feed in 20 has a new entry in the measured cycle
REPEATS = 3  # sizes up to 1,000 are measured 3 times (fresh topics each time) and the median run is kept
HOST = "f{i}.bench.test"


# --- the feed server (a child process) ------------------------------------------------------------------
def feed_body(i: int, version: int, port: int) -> bytes:
    items = []
    for j in range(version, version + ENTRIES):
        link = f"http://{HOST.format(i=i)}:{port}/page/{i}/{j}.html"
        pub = (datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=j)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        items.append(f"<item><title>Feed {i} story {j}</title><link>{link}</link><guid>{i}-{j}</guid>"
                     f"<pubDate>{pub}</pubDate><description>Summary of story {j} of feed {i}.</description></item>")
    items.reverse()  # newest first
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench feed {i}</title>'
            f"<link>http://{HOST.format(i=i)}/</link><description>bench</description>{''.join(items)}"
            "</channel></rss>").encode()


PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>Story</title></head><body><article>"
        + "<p>" + "A paragraph of a benchmark story. " * 40 + "</p>" * 1 + "</article></body></html>").encode()
_PATH = re.compile(rb"^GET /(feed|page)/(\d+)(?:/(\d+))?")


def version_of(i: int) -> int:
    return 1 if i % NEW_EVERY == 0 else 0


def serve(port_out, ready) -> None:
    """Run the feed server until killed; sends its port through ``port_out``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                inm = None
                for line in head.split(b"\r\n"):
                    if line[:14].lower() == b"if-none-match:":
                        inm = line[14:].strip().decode()
                m = _PATH.match(head)
                status, headers, body = 404, {}, b""
                if m and m.group(1) == b"feed":
                    i = int(m.group(2))
                    etag = f'"{i}-{version_of(i)}"'
                    headers = {"ETag": etag}
                    if inm == etag:
                        status = 304
                    else:
                        status, body = 200, feed_body(i, version_of(i), port)
                        headers["Content-Type"] = "application/rss+xml; charset=utf-8"
                elif m and m.group(1) == b"page":
                    status, body, headers = 200, PAGE, {"Content-Type": "text/html; charset=utf-8"}
                reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
                lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_out.send(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- setup ---------------------------------------------------------------------------------------------------
def bench_settings(base: Settings, tag: str) -> Settings:
    return namespaced(base, tag, allow_private_addresses=True, metrics_port=0,
                      feeds_file=REPO / ".local" / f"{tag}-no-feeds.yaml", log_level="WARNING")


def write_tables(s: Settings, n: int, port: int) -> None:
    """N definitions and their steady-state states (version 0 seen), co-partitioned."""
    from ingest import state as S
    from ingest import transitions as T
    from ingest.parse import parse_feed
    from ingest.store import definition_for, put_definition, put_state
    from newsflow.kafka_io import make_producer

    policy = S.Policy.from_settings(s)
    now = datetime.now(UTC) - timedelta(minutes=5)
    producer = make_producer(s, linger_ms=50)
    try:
        for i in range(n):
            url = f"http://{HOST.format(i=i)}:{port}/feed/{i}"
            d = definition_for(url)
            body = feed_body(i, 0, port)
            parsed = parse_feed(body, url=url, content_type="application/rss+xml", max_entries=s.max_entries_per_feed)
            st, fresh = T.on_feed(S.new_state(d), parsed, body_hash="steady", headers={"etag": f'"{i}-0"'},
                                  status=200, now=now, policy=policy, rand=0.5)
            outcomes = [T.PageOutcome(r, "delivered", "ok", T.page_article_id(r), now) for r in fresh]
            st = T.record_page_outcomes(st, outcomes, delivered_ok={r.key for r in fresh}, now=now, policy=policy)
            partition = i % s.topic_partitions
            put_definition(producer, s, d, partition=partition)
            put_state(producer, s, st, partition)
        producer.flush()
    finally:
        producer.close(timeout=10)


# --- the measured child -----------------------------------------------------------------------------------
def child(n: int, tag: str, port: int) -> dict[str, Any]:
    """One cycle in this process; returns the measurements."""
    from ingest import poller as poller_module
    from ingest.netguard import StubResolver
    from ingest.poller import Poller

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = bench_settings(Settings(), tag)
    resolver = StubResolver({HOST.format(i=i): "127.0.0.1" for i in range(n)})
    poller = Poller(s, resolver=resolver)
    batch_time = [0.0]
    real_run_batch = poller.run_batch

    def timed_run_batch(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real_run_batch(*args, **kwargs)
        finally:
            batch_time[0] += time.perf_counter() - t
    poller.run_batch = timed_run_batch
    started = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    poller.run(once=True, force=True)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    polls = poller_module.metrics.POLLS
    outcomes = {k: int(polls.labels(k)._value.get()) for k in ("not_modified", "new", "unchanged")}
    return {
        "feeds": n, "wall_s": round(wall, 2), "poll_s": round(batch_time[0], 2), "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "baseline_rss_mib": round(baseline, 1), "polled": poller.stats.polls,
        "batches": poller.stats.batches, "pages_produced": poller.stats.produced, "outcomes": outcomes,
    }


def measure(n: int, port: int) -> dict[str, Any]:
    tag = f"benchpoll{uuid.uuid4().hex[:8]}"
    s = bench_settings(Settings(), tag)
    ensure_topics(s)
    try:
        t = time.perf_counter()
        write_tables(s, n, port)
        print(f"[bench poller] {n} feeds: tables written in {time.perf_counter() - t:.1f}s, measuring ...",
              file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--child", str(n), tag, str(port)], capture_output=True,
                             text=True, timeout=1800, env=os.environ | {"PYTHONPATH": str(REPO)})
        if out.returncode != 0:
            raise RuntimeError(f"bench child failed ({out.returncode}):\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["feeds_per_s"] = round(n / result["poll_s"], 1) if result["poll_s"] else None
        result["ms_per_feed"] = round(1000 * result["wall_s"] / n, 2)
        return result
    finally:
        for problem in teardown(s):
            print(f"[bench poller] clean-up: {problem}", file=sys.stderr)


def run(quick: bool = False) -> dict[str, Any]:
    sizes = [100, 1000] if quick else [100, 1000, 10000]
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe()
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(child_conn, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("feed server did not start")
        port = parent_conn.recv()
        results = []
        for n in sizes:
            runs = sorted((measure(n, port) for _ in range(REPEATS if n <= 1000 else 1)), key=lambda r: r["wall_s"])
            best = dict(runs[len(runs) // 2])  # the median run (by wall time)
            best["wall_s_runs"] = [r["wall_s"] for r in runs]
            results.append(best)
    finally:
        server.terminate()
        server.join(10)
    at_goal = next((r for r in results if r["feeds"] == GOAL["feeds"]), None)
    base = Settings()
    return {
        "name": "poller",
        "description": "one poll cycle over N locally served feeds (1 in 20 with a new entry, the rest 304), "
                       "state loaded from and persisted to Kafka",
        "goal": GOAL,
        "meets_goal": bool(at_goal and at_goal["wall_s"] < GOAL["wall_s"]
                           and at_goal["peak_rss_mib"] < GOAL["peak_rss_mib"]),
        "results": results,
        "settings": {k: getattr(base, k) for k in ("fetch_concurrency", "host_concurrency", "host_rate_per_s",
                                                    "poll_batch_s", "respect_robots")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
    }


def table(report: dict[str, Any]) -> str:
    cols = ("feeds", "wall_s", "poll_s", "cpu_s", "ms_per_feed", "peak_rss_mib", "baseline_rss_mib",
            "pages_produced")
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in report["results"]:
        lines.append(" | ".join(str(r[c]) for c in cols))
    lines.append(f"goal: {GOAL['feeds']} feeds < {GOAL['wall_s']} s and < {GOAL['peak_rss_mib']} MiB -> "
                 f"{'met' if report['meets_goal'] else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        report = run(quick="--quick" in sys.argv[1:])
        print(table(report), file=sys.stderr)
        print(json.dumps(report, indent=2))
