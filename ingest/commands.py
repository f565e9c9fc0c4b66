"""Ingest subcommands: poll."""

from __future__ import annotations

import argparse

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("poll", help="run the feed poller stage")
    p.add_argument("--once", action="store_true", help="poll every feed once, then exit")
    p.set_defaults(func=cmd_poll)


def cmd_poll(args, settings: Settings) -> int:
    from ingest.poller import Poller
    from newsflow.ops import stage_ops

    with stage_ops(settings, "poller"):
        Poller(settings).run(once=args.once)
    return 0
