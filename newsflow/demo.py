"""``make demo``: the whole river on a machine without internet, in about a minute.

1. Serve ``newsflow/demo_site/`` (a fictional local newspaper: seven articles and an RSS feed,
   written for this demo) on ``127.0.0.1:<port>``.
2. Point the pipeline at it (a feed list with that one feed, ``allow_private_addresses``), apply
   the topology, and run poller, processor and indexer under the supervisor, as ``newsflow run``
   would, with progress every few seconds.
3. Once every demo article has been (re)indexed behind the alias (or the time is up), print
   ``newsflow status``, stop the stages, and print search hits.

The articles flow through the real ``articles.*`` topics into the ``articles`` alias. The feed
tables are the demo's own, made for this run and deleted at its end: so every run polls the site
afresh, and a feed list of ``make run`` is neither polled nor changed. The site's URLs are stable
(fixed port), so running the demo again re-indexes the same documents instead of adding new ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError
from rich.console import Console

from newsflow.elastic import make_es
from newsflow.settings import Settings

SITE_DIR = Path(__file__).with_name("demo_site")
FEED_PATH = "/feed.xml"


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files from demo_site/; the feed gets the server's own address filled in."""

    base = ""

    def log_message(self, *args) -> None:  # the demo prints its own progress
        pass

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != FEED_PATH:
            return super().do_GET()
        body = (SITE_DIR / "feed.xml").read_text(encoding="utf-8").replace("{{BASE}}", self.base).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DemoSite:
    """The demo site on 127.0.0.1. ``port=0`` picks a free port (tests)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        handler = type("DemoHandler", (_SiteHandler,), {})
        self.server = ThreadingHTTPServer((host, port), partial(handler, directory=str(SITE_DIR)))
        self.server.daemon_threads = True
        handler.base = self.base
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-site", daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def feed_url(self) -> str:
        return self.base + FEED_PATH

    @staticmethod
    def article_count() -> int:
        return (SITE_DIR / "feed.xml").read_text(encoding="utf-8").count("<item>")

    def write_feed_list(self, directory: Path) -> Path:
        path = directory / "demo-feeds.yaml"
        path.write_text(f"# written by newsflow.demo\nfeeds:\n  - url: {self.feed_url}\n", encoding="utf-8")
        return path

    def __enter__(self) -> DemoSite:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def indexed(settings: Settings, feed_url: str, since: datetime | None = None) -> int:
    """Documents from ``feed_url`` searchable behind the alias, indexed ``since`` if given (0 while
    the alias does not exist)."""
    query: dict = {"bool": {"filter": [{"term": {"feed_url": feed_url}}]}}
    if since is not None:
        query["bool"]["filter"].append({"range": {"indexed_at": {"gte": since.isoformat()}}})
    es = make_es(settings, request_timeout=5)
    try:
        es.indices.refresh(index=settings.es_index)
        return es.count(index=settings.es_index, query=query)["count"]
    except NotFoundError:
        return 0
    finally:
        es.close()


def progress_line(settings: Settings, pids: set[int | None], elapsed: float, docs: int, want: int) -> str:
    """One line: what each of our stages (``pids``) has done so far, from its /metrics, and how many
    articles are in."""
    from newsflow.status import stage_processes

    rows, _ = stage_processes(settings)
    parts = []
    for r in sorted((r for r in rows if r["pid"] in pids), key=lambda r: r["stage"]):
        n = r.get("counters") or {}
        if "in" in n and r["stage"] != "poller":
            parts.append(f"{r['stage']} in {n['in']:.0f} out {n['out']:.0f}")
        else:
            parts.append(f"{r['stage']} up")
    return f"[{elapsed:5.1f}s] {' · '.join(parts) or 'starting stages'} · indexed this run {docs}/{want}"


def run_demo(settings: Settings, site: DemoSite, *, timeout_s: float, console: Console,
             query: str = "") -> int:
    """Run the stages until every demo article is indexed or ``timeout_s``; returns docs indexed."""
    from newsflow.status import gather_report
    from newsflow.status_view import render
    from newsflow.supervisor import Supervisor
    from newsflow.topology import apply

    want = site.article_count()
    since = datetime.now(UTC) - timedelta(seconds=1)
    console.print(f"applying topology: topics {settings.topic_raw}, {settings.topic_enriched}, "
                  f"{settings.topic_dlq}; index template {settings.es_index!r}")
    apply(settings)
    sup = Supervisor(settings, ["poller", "processor", "indexer"], max_backoff_s=5)
    runner = threading.Thread(target=sup.run, kwargs={"install_signals": False}, name="supervisor")
    console.print("starting poller, processor and indexer (as `newsflow run` does)")
    runner.start()
    started = time.monotonic()
    docs = 0
    try:
        while time.monotonic() - started < timeout_s:
            time.sleep(2)
            try:
                docs = indexed(settings, site.feed_url, since)
            except (TransportError, ApiError) as exc:
                console.print(f"  elasticsearch not answering yet: {exc}")
            pids = {c.pid for c in sup.children}
            console.print("  " + progress_line(settings, pids, time.monotonic() - started, docs, want))
            if docs >= want:
                break
        console.print()
        console.print(render(gather_report(settings), console.width))
    finally:
        console.print("stopping the stages (SIGTERM, as Ctrl-C on `newsflow run` does)")
        sup.stop()
        runner.join()
        drop_feed_tables(settings, console)
    return docs


def demo_settings(feeds_file: Path) -> Settings:
    """Settings of a demo run: the real article topics and alias, feed tables of its own."""
    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return Settings(
        feeds_file=feeds_file,
        allow_private_addresses=True,  # the demo site is on 127.0.0.1
        topic_feeds=f"newsflow.demo-{run}.feeds",
        topic_feed_state=f"newsflow.demo-{run}.feed-state",
        log_level="WARNING",  # the stages' logs would drown the progress lines
    )


def drop_feed_tables(settings: Settings, console: Console) -> None:
    from kafka.errors import KafkaError

    from newsflow.kafka_io import make_admin

    try:
        admin = make_admin(settings)
        try:
            admin.delete_topics([settings.topic_feeds, settings.topic_feed_state])
        finally:
            admin.close()
    except KafkaError as exc:
        console.print(f"[yellow]could not delete the demo's feed topics[/yellow] "
                      f"{settings.topic_feeds}, {settings.topic_feed_state}: {exc}")


def main(argv: list[str] | None = None) -> int:
    from newsflow.logs import configure_logging
    from processors.index.search import print_hits, search

    parser = argparse.ArgumentParser(prog="python -m newsflow.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765, help="port of the demo site on 127.0.0.1 (default 8765)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="give up after this long (default 300)")
    parser.add_argument("--min-docs", type=int, default=5, help="fail unless this many are indexed (default 5)")
    parser.add_argument("--query", default="ferry | bridge | library",
                        help="search to run at the end, simple_query_string syntax (default: %(default)r)")
    args = parser.parse_args(argv)
    console = Console()
    with DemoSite(port=args.port) as site, tempfile.TemporaryDirectory(prefix="newsflow-demo-") as tmp:
        settings = demo_settings(site.write_feed_list(Path(tmp)))
        configure_logging(settings)
        console.print(f"[bold]Newsflow demo[/bold]: serving {site.article_count()} articles of a fictional "
                      f"newspaper at {site.feed_url}")
        docs = run_demo(settings, site, timeout_s=args.timeout, console=console)
    console.print(f"\n[bold]newsflow search {args.query!r}[/bold] (alias {settings.es_index!r}):")
    print_hits(search(settings, args.query, size=5), console)
    if docs < args.min_docs:
        console.print(f"[bold red]demo failed:[/bold red] only {docs} of the demo articles were indexed "
                      f"within {args.timeout:.0f}s; see `newsflow status` and the stage logs above")
        return 1
    console.print(f"\n[green]{docs} demo articles are searchable[/green]; try "
                  "`.venv/bin/newsflow search \"wind farm\"`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
