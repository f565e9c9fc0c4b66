"""``newsflow`` command line. Each area registers its own subcommands (``register(subparsers)``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pydantic import ValidationError

from newsflow import newsflow_version

# Modules that add subcommands. Each has ``register(subparsers) -> None``; a subcommand sets
# ``func(args, settings) -> int | None`` with ``parser.set_defaults``.
COMMAND_MODULES = (
    "newsflow.commands",
    "ingest.commands",
    "processors.commands",
    "processors.index.commands",
)


EX_CONFIG = 78  # sysexits.h: configuration error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsflow",
        description="Streaming news ingestion: feeds -> Kafka -> enrichment -> Elasticsearch.",
        epilog="Settings come from NEWSFLOW_* environment variables and the YAML file in NEWSFLOW_CONFIG; "
        "see `newsflow config`.",
    )
    parser.add_argument("--log-level", help="override NEWSFLOW_LOG_LEVEL")
    parser.add_argument("--version", action="version", version=f"newsflow {newsflow_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from newsflow.logs import configure_logging
    from newsflow.settings import ConfigurationError, Settings

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {"log_level": args.log_level.upper()} if args.log_level else {}
        settings = Settings(**overrides)
    except (ValidationError, FileNotFoundError) as exc:
        from newsflow.settings import describe_settings_error

        print(f"newsflow: invalid settings (NEWSFLOW_* variables or NEWSFLOW_CONFIG):\n"
              f"{describe_settings_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as exc:  # a refused password, an untrusted CA: restarting will not help
        print(f"newsflow {args.command}: {exc}", file=sys.stderr)
        return EX_CONFIG
    except Exception as exc:
        logging.getLogger("newsflow").debug("command failed", exc_info=True)
        print(f"newsflow {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
