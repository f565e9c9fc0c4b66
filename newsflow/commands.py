"""Core subcommands: run, stop, status, healthcheck, topology, config."""

from __future__ import annotations

import argparse
import json

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    from newsflow.supervisor import STAGE_COMMANDS

    p = sub.add_parser("run", help="run every stage, supervised, until Ctrl-C / SIGTERM",
                       description="Start the stages as child processes, restart a crashed one with backoff "
                                   "(1s, 2s, 4s ... 60s), stop them all on Ctrl-C or SIGTERM. Each stage serves "
                                   "/metrics on NEWSFLOW_METRICS_PORT + 0 (poller), + 1 (processor), + 2 (indexer).")
    p.add_argument("--stages", default="poller,processor,indexer",
                   help="comma-separated stages to run (default: all)")
    p.add_argument("--max-backoff", type=float, default=60.0, metavar="SECONDS",
                   help="longest wait before restarting a crashed stage (default 60)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stop", help="stop a running `newsflow run` (SIGTERM, wait until it is gone)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait (default: shutdown_timeout_s + 10)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="stages, health, lag, feeds, Elasticsearch and DLQ at a glance",
                       description="Stage processes and their health, consumer lag per topic and partition, "
                                   "feeds summary and worst feeds, Elasticsearch documents and index sizes, "
                                   "dead-letter topic size. Secrets are never shown.")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="refresh interval for --watch (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts (one object per refresh)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("healthcheck", help="exit 0 if the stage processes here answer /healthz, else 1 (container "
                                           "HEALTHCHECK; no curl needed)",
                       description="Asks /healthz of every live stage process registered in NEWSFLOW_STATE_DIR/run "
                                   "on this host (or of one --stage) and exits 0 when each answers 200, 1 otherwise "
                                   "or when none is registered.")
    p.add_argument("--stage", choices=list(STAGE_COMMANDS), help="check only this stage")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per request (default 5)")
    p.set_defaults(func=cmd_healthcheck)

    p = sub.add_parser("topology", help="create the Kafka topics and the Elasticsearch template (idempotent)")
    p.set_defaults(func=cmd_topology)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--markdown", action="store_true", help="print the README configuration table instead")
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the configuration table in README.md from the settings model")
    p.set_defaults(func=cmd_config)


def parse_stages(value: str) -> list[str]:
    from newsflow.supervisor import STAGE_COMMANDS

    stages = [s.strip() for s in value.split(",") if s.strip()]
    unknown = set(stages) - set(STAGE_COMMANDS)
    if unknown or not stages:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown)) or '(none given)'}; "
                         f"known: {', '.join(STAGE_COMMANDS)}")
    return stages


def cmd_run(args, settings: Settings) -> int:
    from newsflow.logs import bind_process
    from newsflow.supervisor import Supervisor
    from newsflow.topology import apply

    stages = parse_stages(args.stages)
    bind_process(stage="supervisor")
    apply(settings)
    return Supervisor(settings, stages, max_backoff_s=args.max_backoff).run()


def cmd_stop(args, settings: Settings) -> int:
    from newsflow.supervisor import stop_supervisors

    pids = stop_supervisors(settings, timeout_s=args.timeout or settings.shutdown_timeout_s + 10)
    print(f"stopped newsflow run pid(s) {', '.join(map(str, pids))}" if pids else "no newsflow run is running")
    return 0


def cmd_status(args, settings: Settings) -> int:
    import time

    from newsflow.status import gather_report
    from newsflow.status_view import render, watch

    if args.json:
        while True:
            print(json.dumps(gather_report(settings), default=str), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.interval)
    if args.watch:
        watch(settings, args.interval)
        return 0
    from rich.console import Console

    console = Console()
    console.print(render(gather_report(settings), console.width))
    return 0


def cmd_healthcheck(args, settings: Settings) -> int:
    from newsflow.ops import healthcheck

    ok, lines = healthcheck(settings, args.stage, args.timeout)
    print("\n".join(lines))
    return 0 if ok else 1


def cmd_topology(args, settings: Settings) -> int:
    from newsflow.topology import ensure_index, ensure_topics

    created = ensure_topics(settings)
    ensure_index(settings)
    print(f"topics created: {', '.join(created) or 'none (all existed)'}; index template {settings.es_index!r} applied")
    return 0


README_TABLE_BEGIN = "<!-- settings-table:begin (generated: newsflow config --update-readme) -->"
README_TABLE_END = "<!-- settings-table:end -->"


def readme_with_table(readme: str, table: str) -> str:
    """README text with the block between the settings-table markers replaced by ``table``."""
    head, sep, rest = readme.partition(README_TABLE_BEGIN)
    _old, sep2, tail = rest.partition(README_TABLE_END)
    if not sep or not sep2:
        raise ValueError(f"README.md lacks the markers {README_TABLE_BEGIN!r} ... {README_TABLE_END!r}")
    return f"{head}{README_TABLE_BEGIN}\n{table}{README_TABLE_END}{tail}"


def cmd_config(args, settings: Settings) -> int:
    from newsflow.settings import REPO_ROOT, settings_table

    if args.update_readme:
        path = REPO_ROOT / "README.md"
        path.write_text(readme_with_table(path.read_text(encoding="utf-8"), settings_table()), encoding="utf-8")
        print(f"configuration table in {path} updated")
    elif args.markdown:
        print(settings_table(), end="")
    else:
        from newsflow.logs import Redactor, secret_values

        # SecretStr fields are masked by redacted(); the redactor also masks user:password@ in URLs.
        print(json.dumps(Redactor(secret_values(settings)).value(settings.redacted()), indent=2, default=str))
    return 0
