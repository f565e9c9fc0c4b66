"""Processor subcommands: process, reprocess, enrich, dlq list, dlq replay."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="run the processor stage (articles.raw -> articles.enriched)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_process)

    p = sub.add_parser(
        "reprocess", help="run stored pages (articles.raw) through the current processor again, without fetching",
        description=textwrap.fill(
            "Feeds the pages articles.raw still holds (NEWSFLOW_RAW_RETENTION_DAYS) through the current processor "
            "(extraction, enrichment, access flag) into articles.enriched, exactly once (Kafka transactions, like the "
            "processor's). The running indexer then replaces each indexed article with its new version (newer "
            "processed_at). Progress is kept in a consumer group of its own per selection: interrupted, or stopped by "
            "--limit, the same command continues where it stopped. A run that reaches the end offsets read at its "
            "start deletes its group, so the next reprocess starts from the oldest page again.", 100),
        epilog="examples:\n  newsflow reprocess\n  newsflow reprocess --since 7d --host example.com\n"
               "  newsflow reprocess --since 2024-03-01 --limit 1000   # run again for the next 1000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", metavar="DATE",
                   help="only pages fetched at or after DATE: an ISO date/time or 7d, 12h, 30m, 2w (ago)")
    p.add_argument("--host", metavar="H", help="only pages of this host (and its subdomains; www./m. ignored)")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N selected pages (run again to continue)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_reprocess)

    p = sub.add_parser(
        "enrich",
        help="run the whole processing chain on one page or text file and print the Article",
        description="Runs extraction, cleaning, metadata merge and enrichment on one HTML page (a file or an "
        "http(s) URL, fetched like the poller fetches) or one plain-text file (no extraction; a leading "
        "`date YYYY-MM-DD` line is its date), and prints the enriched Article. Touches no Kafka topic.",
    )
    p.add_argument("target", metavar="PATH_OR_URL", help="an .html/.txt file, or an http(s) URL")
    p.add_argument("--json", action="store_true", help="print the Article as JSON (schema of articles.enriched)")
    p.add_argument("--html", action="store_true", help="treat PATH as HTML whatever its name and content")
    p.set_defaults(func=cmd_enrich)

    dlq = sub.add_parser("dlq", help="inspect and replay the dead-letter topic")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = dsub.add_parser("list", help="list dead-lettered records (pending ones: not replayed yet)",
                        description="Lists the records of the dead-letter topic from the replay group's committed "
                        "offset on (records not replayed yet); --all lists the whole topic.")
    _filters(p)
    p.add_argument("--all", action="store_true", help="also list records already replayed (or re-queued)")
    p.add_argument("--limit", type=int, metavar="N", help="show the last N records only")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.set_defaults(func=cmd_dlq_list)

    p = dsub.add_parser(
        "replay", help="re-inject pending dead-lettered records into the topics they came from",
        description="Replays pending DLQ records that match the filters, as their stage needs: processor and "
        "indexer dead letters go back to their original topic (header nf-topic), carrying nf-attempts; the "
        "poller's page dead letters are fetched again now (robots.txt, address guard and caps as in the "
        "poller) and go to the raw topic, or back to the DLQ with their new reason; feed-table poison and "
        "records without an original topic are refused. Whatever is not replayed stays pending (re-queued at "
        "the end of the DLQ). Each batch and the replay group's offset commit in one Kafka transaction: a "
        "record is never replayed twice.",
    )
    _filters(p)
    p.add_argument("--limit", type=int, metavar="N", help="resend or refetch at most N records")
    p.set_defaults(func=cmd_dlq_replay)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", action="append", default=[], metavar="STAGE",
                   help="only records dead-lettered by this stage (repeatable): poller, processor, indexer")
    p.add_argument("--reason", action="append", default=[], metavar="ERROR_CLASS",
                   help="only records with this error class (repeatable), e.g. extract_timeout")


def cmd_process(args, settings: Settings) -> int:
    from processors.processor import make_runner

    return make_runner(settings).serve(idle_exit_s=args.idle_exit)


def cmd_reprocess(args, settings: Settings) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from processors.index.search import parse_when
    from processors.reprocess import Selection, reprocess, selection_label

    console = Console(stderr=True)
    try:
        since = parse_when(args.since) if args.since else None
    except ValueError as exc:
        console.print(f"[red]newsflow reprocess: {exc}[/red]")
        return 2
    if args.limit is not None and args.limit < 1:
        console.print("[red]newsflow reprocess: --limit must be at least 1[/red]")
        return 2
    selection = Selection(since=since, host=args.host, label=selection_label(args.since, args.host))
    columns = [TextColumn("[bold]reprocess[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("offsets · {task.fields[counts]}"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{settings.topic_raw} ({selection.label})", total=None, counts="starting")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def counts(c) -> None:
            bar.update(task, counts=f"{c['reprocessed']} reprocessed, {c['skipped']} skipped, "
                                    f"{c['dead_letters']} dead-lettered")

        report = reprocess(settings, selection, limit=args.limit, progress=progress, counts=counts)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    c = report.counts
    console.print(f"[bold green]{c.get('reprocessed', 0)} page(s) reprocessed[/bold green] -> {settings.topic_enriched} "
                  f"({c.get('skipped', 0)} skipped: not selected or invalid; {c.get('dead_letters', 0)} dead-lettered) "
                  f"in {report.seconds}s{' (resumed)' if report.resumed else ''}", soft_wrap=True)
    if report.finished:
        console.print("done: reached the end of the stored pages; the indexer replaces the indexed versions")
    else:
        console.print(f"stopped before the end (--limit): run the same command again to continue "
                      f"(progress in consumer group {report.group})", soft_wrap=True)
    return 0


# --- enrich ---------------------------------------------------------------------------------


def _looks_like_html(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<!--")) or b"<html" in head


def _fetch(url: str, settings: Settings):
    import asyncio

    from ingest.fetch import Fetcher

    async def go():
        fetcher = Fetcher(settings)
        try:
            return await fetcher.get(url, max_bytes=settings.max_page_bytes, what="page")
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def enrich_target(target: str, settings: Settings, *, force_html: bool = False):
    """PATH_OR_URL -> Article, through the same chain as the processor (in this process)."""
    from ingest.decode import detect_charset
    from ingest.pagehead import page_identity
    from newsflow.schema import RawArticle, article_id
    from processors.article import Limits, build_article, build_from_text
    from processors.enrich.enricher import Enricher
    from processors.enrich.stories import StoryIndex
    from processors.processor import label_story

    limits = Limits.from_settings(settings)
    enricher = Enricher(max_chars=settings.enrich_max_chars) if settings.enrich else None
    now = datetime.now(UTC)
    if target.startswith(("http://", "https://")):
        resp = _fetch(target, settings)
        if not resp.is_ok:
            raise SystemExit(f"{target}: HTTP {resp.status}")
        url, final, body, ctype = target, resp.final_url, resp.body, resp.headers.get("content-type")
    else:
        path = Path(target)
        if not path.is_file():
            raise SystemExit(f"{target}: no such file")
        body = path.read_bytes()
        url = final = path.resolve().as_uri()
        ctype = "text/html"
    if url.startswith("file:") and not (force_html or Path(target).suffix.lower() in (".html", ".htm", ".xhtml")
                                        or _looks_like_html(body)):
        built = build_from_text(body.decode("utf-8", "replace"), path=Path(target), limits=limits,
                                enricher=enricher, now=now)
    else:
        charset, _source = detect_charset(body, ctype)
        canon, canon_from = page_identity(body, charset, final)
        raw = RawArticle(
            id=article_id(canon), url=url, canonical_url=canon, canonical_from=canon_from, final_url=final,
            fetched_at=now, first_seen_at=now, content_type=ctype, charset=charset,
            body_b64=RawArticle.encode_body(body),
        )
        built = build_article(raw, limits=limits, enricher=enricher, now=now)
    # A story label needs a window of recent articles: alone, an article starts its own story.
    return label_story(built.article, StoryIndex(settings.story_window)) if settings.enrich else built.article


def cmd_enrich(args, settings: Settings) -> int:
    from newsflow.stage.outcomes import Quarantine

    try:
        article = enrich_target(args.target, settings, force_html=args.html)
    except Quarantine as exc:
        print(f"newsflow enrich: {args.target} would be dead-lettered: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        print(article.model_dump_json(indent=2, exclude_none=True))
    else:
        from rich.console import Console

        from processors.render import render_article

        Console().print(render_article(article))
    return 0


# --- dlq ----------------------------------------------------------------------------------


def cmd_dlq_list(args, settings: Settings) -> int:
    from processors.dlq import Filters, list_dead

    records = list_dead(settings, include_handled=args.all, filters=Filters(tuple(args.stage), tuple(args.reason)))
    if args.limit is not None:
        records = records[-args.limit :] if args.limit > 0 else []
    if args.json:
        for r in records:
            print(json.dumps(r.as_json(), ensure_ascii=False))
        return 0
    from rich.console import Console

    from processors.render import render_dead

    Console().print(render_dead(records, topic=settings.topic_dlq, pending_only=not args.all))
    return 0


def cmd_dlq_replay(args, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from processors.dlq import Filters, replay

    console = Console(stderr=True)
    with Progress(TextColumn("replaying {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(settings.topic_dlq, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = replay(settings, filters=Filters(tuple(args.stage), tuple(args.reason)), limit=args.limit,
                        progress=progress)
    for line in replay_report(result, settings):
        console.print(line, soft_wrap=True)
    return 0


def replay_report(result, settings: Settings) -> list:
    """``dlq replay``'s summary: one line per action that happened (rich Text)."""
    from rich.text import Text

    def counts(counter) -> str:
        return ", ".join(f"{what}: {n}" for what, n in counter.most_common())

    lines = [Text.assemble(("replayed ", "bold"), (str(result.replayed), "bold green"), " record(s); ",
                           (str(result.kept), "bold yellow"), " left pending")]

    def line(label: str, style: str, n: int, detail: str) -> None:
        lines.append(Text.assemble("  ", (f"{label}: ", style), (str(n), "bold"), f" {detail}"))

    resent = sum(result.resent.values())
    if resent:
        line("resent", "green", resent, "(" + ", ".join(f"{n} -> {t}" for t, n in sorted(result.resent.items())) + ")")
    if result.refetched:
        line("refetched", "green", result.refetched, f"page(s) fetched again -> {settings.topic_raw}")
    if result.still_dead:
        line("still dead", "red", sum(result.still_dead.values()),
             f"page(s) ({counts(result.still_dead)}), re-queued in {settings.topic_dlq} with the new reason")
    if result.not_fetched:
        line("not fetched now", "yellow", sum(result.not_fetched.values()),
             f"page(s) ({counts(result.not_fetched)}), left pending as they were")
    for why, n in result.refused.most_common():
        line("refused", "red", n, f"{why}, left pending")
    if result.unmatched:
        line("not matching the filters", "dim", result.unmatched, "record(s), left pending")
    return lines
