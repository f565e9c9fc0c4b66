"""Indexer subcommands: index, search."""

from __future__ import annotations

import argparse
import json

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="run the indexer stage (articles.enriched -> Elasticsearch)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="full-text search of indexed articles")
    p.add_argument("query", nargs="?", default="", help="query string (Elasticsearch simple_query_string)")
    p.add_argument("-n", "--size", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_search)


def cmd_index(args, settings: Settings) -> int:
    from processors.indexer import make_runner

    return make_runner(settings).serve(idle_exit_s=args.idle_exit)


def cmd_search(args, settings: Settings) -> int:
    from newsflow.search import print_hits, search

    result = search(settings, args.query, size=args.size)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_hits(result)
    return 0
