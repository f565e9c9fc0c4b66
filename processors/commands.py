"""Processor and indexer subcommands: process, index."""

from __future__ import annotations

import argparse

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="run the processor stage (articles.raw -> articles.enriched)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("index", help="run the indexer stage (articles.enriched -> Elasticsearch)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_index)


def _run(runner, args) -> int:
    runner.install_signal_handlers()
    runner.run(idle_exit_s=args.idle_exit)
    return 0


def cmd_process(args, settings: Settings) -> int:
    from processors.processor import make_runner

    return _run(make_runner(settings), args)


def cmd_index(args, settings: Settings) -> int:
    from processors.indexer import make_runner

    return _run(make_runner(settings), args)
