"""Ingest subcommands: ``poll`` and ``feeds add|remove|list|import|export|discover|status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from newsflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("poll", help="run the feed poller stage",
                       description="Poll the feeds this instance owns (consumer group on the feeds topic), fetch "
                       "new articles' pages and produce them to articles.raw. Seeds the feeds topic from "
                       "NEWSFLOW_FEEDS_FILE when it was never written to.")
    p.add_argument("--once", action="store_true",
                   help="poll each due feed once (and fetch its new pages), then exit")
    p.add_argument("--force", action="store_true",
                   help="treat every active feed as due now (Retry-After is still honoured)")
    p.set_defaults(func=cmd_poll)

    feeds = sub.add_parser("feeds", help="manage the feed list (add, remove, list, import, export, discover, status)",
                           description="Feed definitions live in the compacted feeds topic; running pollers "
                           "pick up changes between two poll batches.")
    fs = feeds.add_subparsers(dest="feeds_command", metavar="ACTION", required=True)

    a = fs.add_parser("add", help="add a feed or a sitemap (re-adding a retired one reactivates it)")
    a.add_argument("url", help="URL (http or https) of an RSS, Atom or JSON feed, or of a sitemap: a <urlset> "
                   "(Google News or plain), or a sitemap index; gzip files (.xml.gz) too")
    a.add_argument("--title", help="display title (default: the feed's own)")
    a.add_argument("--category", help="category, kept in OPML exports")
    a.set_defaults(func=cmd_feeds_add)

    r = fs.add_parser("remove", help="remove a feed and its state")
    r.add_argument("feed", help="feed URL or id")
    r.set_defaults(func=cmd_feeds_remove)

    ls = fs.add_parser("list", help="list the feed definitions")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ls.set_defaults(func=cmd_feeds_list)

    i = fs.add_parser("import", help="add every feed of an OPML file")
    i.add_argument("file", type=Path, help="OPML file")
    i.set_defaults(func=cmd_feeds_import)

    e = fs.add_parser("export", help="write the feed list as OPML")
    e.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    e.set_defaults(func=cmd_feeds_export)

    d = fs.add_parser("discover", help="find the feeds and sitemaps of a web site (trafilatura feed discovery, "
                      "robots.txt Sitemap: lines)")
    d.add_argument("site_url", help="the site's home page or any page of it")
    d.add_argument("--add", action="store_true", help="add the feeds and sitemaps found")
    d.set_defaults(func=cmd_feeds_discover)

    st = fs.add_parser("status", help="health of every feed: state, last success, next check, errors")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_feeds_status)


def cmd_poll(args, settings: Settings) -> int:
    from ingest.poller import Poller
    from newsflow.liveness import stall_after_s
    from newsflow.ops import stage_ops

    # /metrics /healthz /readyz and the `newsflow status` entry. No lag: the feeds topic is a table.
    poller = Poller(settings)
    with stage_ops(settings, "poller", progress_age=poller.progress_age,
                   stall_after_s=stall_after_s(settings, "poller")):
        poller.run(once=args.once, force=args.force)
    return 0


# --- feeds ------------------------------------------------------------------------------------
def _catalog(settings: Settings, *, writing: bool):
    """The feed tables. Commands that write create the topics first; read-only ones (``list``,
    ``status``, ``export``) create nothing and see an empty list where the topics do not exist."""
    from ingest.store import TableMissing, load_catalog
    from newsflow.topology import ensure_topics

    if writing:
        ensure_topics(settings)
    try:
        return load_catalog(settings)
    except TableMissing as exc:
        print(f"no feeds: {exc}", file=sys.stderr)
        return {}, {}


def _find(defs, needle: str):
    from ingest.urls import canonical_url

    if needle in defs:
        return needle, defs[needle]
    try:
        canon = canonical_url(needle)
    except ValueError:
        return None, None
    for fid, (p, d) in defs.items():
        if canonical_url(d.url) == canon or canonical_url(d.added_url) == canon:
            return fid, (p, d)
    return None, None


def _write(settings: Settings, action) -> None:
    from newsflow.kafka_io import make_producer

    producer = make_producer(settings)
    try:
        action(producer)
        producer.flush()
    finally:
        producer.close(timeout=10)


def add_definitions(settings: Settings, new_defs) -> tuple[list, list, list]:
    """(added, reactivated, already present) after writing the definitions that are new or retired."""
    from ingest.state import utcnow
    from ingest.store import put_definition

    defs, states = _catalog(settings, writing=True)
    added, reactivated, present, writes = [], [], [], []
    for d in new_defs:
        fid, found = _find(defs, d.url)
        if found is None:
            added.append(d)
            writes.append((d, None))
            defs[d.id] = (-1, d)
            continue
        partition, existing = found
        if states.get(fid) is not None and states[fid].health == "retired":
            again = existing.model_copy(update={"reset_at": utcnow()})
            reactivated.append(again)
            writes.append((again, partition))
        else:
            present.append(existing)
    if writes:
        _write(settings, lambda prod: [put_definition(prod, settings, d, partition=p) for d, p in writes])
    return added, reactivated, present


def cmd_feeds_add(args, settings: Settings) -> int:
    from ingest.store import definition_for

    try:
        d = definition_for(args.url, title=args.title, category=args.category)
    except ValueError as exc:
        print(f"newsflow feeds add: {exc}", file=sys.stderr)
        return 2
    added, reactivated, present = add_definitions(settings, [d])
    for x in added:
        print(f"added {x.id} {x.url}")
    for x in reactivated:
        print(f"reactivated (was retired) {x.id} {x.url}")
    for x in present:
        print(f"already present {x.id} {x.url}")
    return 0


def cmd_feeds_remove(args, settings: Settings) -> int:
    from ingest.store import delete_feed

    defs, _ = _catalog(settings, writing=True)
    fid, found = _find(defs, args.feed)
    if found is None:
        print(f"newsflow feeds remove: no feed {args.feed!r}", file=sys.stderr)
        return 1
    partition, d = found
    _write(settings, lambda prod: delete_feed(prod, settings, fid, partition))
    print(f"removed {fid} {d.url}")
    return 0


def cmd_feeds_list(args, settings: Settings) -> int:
    defs, _ = _catalog(settings, writing=False)
    rows = sorted((d for _p, d in defs.values()), key=lambda d: d.url)
    if args.json:
        for d in rows:
            print(d.model_dump_json(exclude_none=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} feeds")
    for col in ("id", "url", "title", "category", "added"):
        table.add_column(col)
    for d in rows:
        table.add_row(d.id, d.url, d.title or "", d.category or "", f"{d.added_at:%Y-%m-%d}")
    Console().print(table)
    return 0


def cmd_feeds_import(args, settings: Settings) -> int:
    from ingest.opml import parse_opml

    try:
        new_defs = parse_opml(args.file.read_bytes())
    except (OSError, ValueError) as exc:
        print(f"newsflow feeds import: {args.file}: {exc}", file=sys.stderr)
        return 2
    added, reactivated, present = add_definitions(settings, new_defs)
    print(f"{args.file}: {len(new_defs)} feeds: {len(added)} added, {len(reactivated)} reactivated, "
          f"{len(present)} already present")
    return 0


def cmd_feeds_export(args, settings: Settings) -> int:
    from ingest.opml import to_opml

    defs, _ = _catalog(settings, writing=False)
    text = to_opml(d for _p, d in defs.values())
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(defs)} feeds written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_feeds_discover(args, settings: Settings) -> int:
    from ingest.discover import discover
    from ingest.fetch import FetchError
    from ingest.store import definition_for

    try:
        found, rejected = asyncio.run(discover(settings, args.site_url))
    except FetchError as exc:
        print(f"newsflow feeds discover: {args.site_url}: {exc}", file=sys.stderr)
        return 1
    for f in found:
        print(f"{f.url}\t{f.title or ''}\t{f.describe()}")
    for r in rejected:
        print(f"not a feed: {r.url}: {r.reason}", file=sys.stderr)
    if not found:
        print(f"no feed found on {args.site_url}", file=sys.stderr)
        return 1
    if args.add:
        added, reactivated, present = add_definitions(settings, [definition_for(f.url, title=f.title) for f in found])
        print(f"{len(added)} added, {len(reactivated)} reactivated, {len(present)} already present", file=sys.stderr)
    return 0


def cmd_feeds_status(args, settings: Settings) -> int:
    from ingest.status import COLUMNS, status_rows, summary

    defs, states = _catalog(settings, writing=False)
    rows = status_rows(defs, states)
    if args.json:
        print(json.dumps({"summary": summary(rows), "feeds": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    s = summary(rows)
    table = Table(title=f"{s['feeds']} feeds: {s['active']} active, {s['backing-off']} backing off, "
                        f"{s['retired']} retired")
    for col in COLUMNS:
        table.add_column(col.replace("_", " "), overflow="fold")
    colours = {"active": "green", "backing-off": "yellow", "retired": "red"}
    for r in rows:
        cells = []
        for col in COLUMNS:
            v = r[col]
            if col == "state":
                v = f"[{colours[v]}]{v}[/]"
            elif col in ("last_success", "last_new_entry", "next_check") and v:
                v = v[:19].replace("T", " ")
            elif col == "next_check" and not v:
                v = "now" if r["state"] != "retired" else "never (retired)"
            cells.append("" if v is None else str(v))
        table.add_row(*cells)
    Console().print(table)
    return 0
