"""Indexer subcommands: index, search, reindex."""

from __future__ import annotations

import argparse
import json
import sys

from newsflow.schema import ACCESS_VALUES
from newsflow.settings import Settings

SEARCH_EPILOG = """\
filters can be repeated: --lang/--source/--story/--access match any of the values,
--person/--org/--place must all be named in the article. Keyword filters ignore case. --source
matches the source name, the site name or the host. --access is free, paywalled or unknown: what
the page declares, or a truncated text behind paywall markup (README, "Access"). --since/--until
take 7d, 12h, 30m, 2w (ago) or an ISO date, and apply to published_at (first_seen_at for undated
articles).

examples:
  newsflow search "troops border" --since 7d --lang en
  newsflow search --person "John Kirby" --place Ukraine --sort newest
  newsflow search ukraine --json | jq '.facets.persons'
  newsflow search --access paywalled --since 7d
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="run the indexer stage (articles.enriched -> Elasticsearch)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="full-text search of indexed articles, with filters and facets",
                       description="Search the articles behind the read alias (NEWSFLOW_ES_INDEX): highlighted "
                                   "snippets, top sources/persons/organizations/places/languages and the count "
                                   "per access value (free/paywalled/unknown).",
                       epilog=SEARCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", default="",
                   help="words to find (simple_query_string: \"phrase\", -exclude, a|b); empty = everything")
    p.add_argument("--since", metavar="WHEN", help="published at or after: 7d, 12h, 30m, 2w or an ISO date")
    p.add_argument("--until", metavar="WHEN", help="published at or before: same forms as --since")
    p.add_argument("--lang", action="append", default=[], metavar="CODE", help="language code, e.g. en")
    p.add_argument("--source", action="append", default=[], metavar="NAME", help="source, site name or host")
    p.add_argument("--person", action="append", default=[], metavar="NAME", help="a person named in the article")
    p.add_argument("--org", action="append", default=[], metavar="NAME", help="an organisation named in it")
    p.add_argument("--place", action="append", default=[], metavar="NAME", help="a place named in it")
    p.add_argument("--story", action="append", default=[], metavar="ID", help="story id (same-story cluster)")
    p.add_argument("--access", action="append", default=[], choices=ACCESS_VALUES,
                   help="free, paywalled or unknown (repeatable: any of them)")
    p.add_argument("-n", "--size", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--facets", type=int, default=10, metavar="N", help="values per facet (default 10, 0 = none)")
    p.add_argument("--sort", choices=["relevance", "newest"],
                   help="default: relevance with a query, newest without")
    p.add_argument("--json", action="store_true", help="print JSON for scripts (highlights as <mark>...</mark>)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("reindex", help="rebuild the index from articles.enriched, then swap the alias",
                       description="Replay the compacted topic articles.enriched into a new generation of "
                                   "monthly indices (<NAME>-YYYY.MM, current template), then point the read "
                                   "alias at it atomically. The live indexer may keep running. Interrupted? "
                                   "Run the same command again: it resumes. The old indices are kept.")
    p.add_argument("--to", required=True, metavar="NAME",
                   help="the new generation, e.g. articles-v2 (must start with the alias name)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_reindex)


def cmd_index(args, settings: Settings) -> int:
    from processors.index.indexer import make_runner

    return make_runner(settings).serve(idle_exit_s=args.idle_exit)


def filters_from_args(args) -> object:
    from processors.index.search import Filters, parse_when

    return Filters(
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until, end_of_day=True) if args.until else None,
        languages=tuple(args.lang), sources=tuple(args.source), persons=tuple(args.person),
        organizations=tuple(args.org), places=tuple(args.place), stories=tuple(args.story),
        access=tuple(args.access),
    )


def cmd_search(args, settings: Settings) -> int:
    from processors.index.search import print_hits, search

    try:
        filters = filters_from_args(args)
    except ValueError as exc:
        print(f"newsflow search: {exc}", file=sys.stderr)
        return 2
    result = search(settings, args.query, filters, size=args.size, facet_size=args.facets, sort=args.sort)
    if args.json:
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    else:
        print_hits(result)
    return 0


def cmd_reindex(args, settings: Settings) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from processors.index.reindex import reindex

    console = Console(stderr=True)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("offsets"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"reindex -> {args.to}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = reindex(settings, args.to, progress=progress, phase=lambda msg: bar.console.log(msg))
        except ValueError as exc:
            console.print(f"[red]newsflow reindex: {exc}[/red]")
            return 2
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    console.print(f"[bold green]alias {report.alias!r} now points at {report.target!r}[/bold green] "
                  f"({len(report.target_indices)} indices, {report.seconds}s): {report.indexed} indexed, "
                  f"{report.duplicates} duplicates, {report.dead_letters} dead-lettered, "
                  f"{report.caught_up} records caught up after the swap", soft_wrap=True)
    if report.old_indices:
        console.print(f"old generation {report.previous!r} kept, out of the alias: {', '.join(report.old_indices)}\n"
                      f"delete it when satisfied: curl -X DELETE '{settings.es_url}/{','.join(report.old_indices)}'",
                      soft_wrap=True)
    return 0
