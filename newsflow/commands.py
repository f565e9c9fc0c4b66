"""Core subcommands: run, topology, config."""

from __future__ import annotations

import argparse
import json

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run every stage, supervised, until Ctrl-C / SIGTERM")
    p.add_argument("--stages", default="poller,processor,indexer",
                   help="comma-separated stages to run (default: all)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("topology", help="create the Kafka topics and the Elasticsearch template (idempotent)")
    p.set_defaults(func=cmd_topology)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--markdown", action="store_true", help="print the README configuration table instead")
    p.set_defaults(func=cmd_config)


def cmd_run(args, settings: Settings) -> int:
    from newsflow.supervisor import STAGE_COMMANDS, Supervisor
    from newsflow.topology import apply

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGE_COMMANDS)
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown))}; known: {', '.join(STAGE_COMMANDS)}")
    apply(settings)
    return Supervisor(stages, grace_s=settings.shutdown_timeout_s + 5).run()


def cmd_topology(args, settings: Settings) -> int:
    from newsflow.topology import ensure_index, ensure_topics

    created = ensure_topics(settings)
    ensure_index(settings)
    print(f"topics created: {', '.join(created) or 'none (all existed)'}; index template {settings.es_index!r} applied")
    return 0


def cmd_config(args, settings: Settings) -> int:
    from newsflow.settings import settings_table

    if args.markdown:
        print(settings_table(), end="")
    else:
        print(json.dumps(settings.redacted(), indent=2, default=str))
    return 0

