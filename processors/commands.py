"""Processor subcommands: process."""

from __future__ import annotations

import argparse

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="run the processor stage (articles.raw -> articles.enriched)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this long without records (batch jobs, tests)")
    p.set_defaults(func=cmd_process)


def cmd_process(args, settings: Settings) -> int:
    from processors.processor import make_runner

    return make_runner(settings).serve(idle_exit_s=args.idle_exit)
