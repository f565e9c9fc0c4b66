"""How ``newsflow status`` shows its report: one rich screen (``render``), refreshed by ``watch``.
The report itself is gathered by ``newsflow.status.gather_report``."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from newsflow.settings import Settings
from newsflow.status import FEEDS_REFRESH_S, gather_report

def _yes(ok: Any) -> Text:
    if ok is None:
        return Text("-", style="dim")
    return Text("ok", style="green") if ok else Text("NO", style="bold red")


def _cell(v: Any) -> str:
    if v is None or v is False:
        return ""
    if v is True:
        return "yes"
    if isinstance(v, str) and len(v) > 19 and v[10:11] == "T":  # ISO timestamp
        return v[:16].replace("T", " ")
    return str(v)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _why(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    if "checks" in body:
        return "; ".join(f"{k}: {c['detail']}" for k, c in body["checks"].items() if not c.get("ok"))
    return str(body.get("detail", ""))


def render(report: dict[str, Any], width: int = 100) -> Group:
    """The report as rich tables for a terminal ``width`` columns wide."""
    parts: list[Any] = []
    c = report["connection"]
    parts.append(Text(f"newsflow status  {report['generated_at']}  kafka {c['kafka_bootstrap']}  "
                      f"es {c['es_url']} (auth: {c['es_auth']})  alias {c['es_alias']}", style="bold"))

    t = Table(title="Stages", title_justify="left", expand=False)
    for col in ("stage", "pid", "up", "live", "ready", "in", "out", "drop", "dlq", "MiB", "why"):
        right = col in ("pid", "up", "in", "out", "drop", "dlq", "MiB")
        t.add_column(col, justify="right" if right else "left", no_wrap=col != "why",
                     overflow="fold" if col == "why" else "ellipsis", min_width=9 if col == "stage" else None)
    for s in report["stages"]:
        n = s.get("counters") or {}
        health, ready = s.get("health"), s.get("ready")
        why = _why(health if health and not health.get("ok") else ready)
        if n.get("paused"):
            why = "paused: sink pushing back. " + why
        t.add_row(s["stage"], str(s["pid"]), _duration(s.get("uptime_s") or 0),
                  _yes(health.get("ok") if health else None), _yes(ready.get("ok") if ready else None),
                  *(f"{n[k]:.0f}" if isinstance(n.get(k), float) else "-"
                    for k in ("in", "out", "dropped", "dead_letters")),
                  f"{s['rss_mb']:.0f}" if s.get("rss_mb") else "-", why)
    for sup in report["supervisors"]:
        for name, ch in sup["children"].items():
            if ch.get("pid") is None:
                t.add_row(name, "-", "-", Text("DOWN", style="bold red"), "-", "-", "-", "-", "-", "-",
                          f"restart {ch['restarts']} pending (last exit {ch['last_exit']})")
    if not report["stages"] and not report["supervisors"]:
        t.caption = "no stage process is running (start them with `make run` or `newsflow run`)"
    parts.append(t)
    if report["supervisors"]:
        sup_lines = [f"newsflow run pid {s['pid']}: " + ", ".join(
            f"{n} restarts={ch['restarts']}" for n, ch in s["children"].items()) for s in report["supervisors"]]
        parts.append(Text("\n".join(sup_lines), style="dim"))

    k = report["kafka"]
    if k.get("ok"):
        t = Table(title="Consumer lag (group <prefix>-<stage>; --json has offsets)", title_justify="left")
        for col in ("stage", "topic", "lag", "by partition"):
            t.add_column(col, justify="right" if col == "lag" else "left", no_wrap=col != "by partition")
        grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in k["lag"]:
            grouped[(r["stage"], r["topic"])].append(r)
        for (stage, topic), rows in grouped.items():
            total = sum(r["lag"] for r in rows)
            style = "bold red" if total > 1000 else ("yellow" if total > len(rows) else "")
            by_part = "  ".join(f"{r['partition']}:{r['lag']}" + ("" if r["committed"] is not None else "*")
                                for r in sorted(rows, key=lambda r: r["partition"]))
            t.add_row(stage, topic, Text(str(total), style=style), by_part)
        parts.append(t)
        parts.append(Text("  * never committed; a caught-up partition of a transactional topic shows lag 1 "
                          "(its commit marker)", style="dim"))
        dlq = k["dlq"]
        approx = "" if dlq.get("exact", True) else "about "
        parts.append(Text(f"Dead-letter topic {dlq['topic']}: {approx}{dlq['records']} records retained",
                          style="bold red" if dlq["records"] else "green"))
    else:
        parts.append(Text(f"Kafka unreachable: {k.get('error')}", style="bold red"))

    f = report["feeds"]
    line = f"Feeds: {f['configured'] if f.get('configured') is not None else '?'} in {f['file']}"
    if "summary" in f:
        sm = f["summary"]
        line += f"; {f.get('source', 'health')}: " + ", ".join(f"{n} {state}" for state, n in sm.items())
    for key in ("error", "catalog_error", "detail"):
        if f.get(key):
            line += f"\n  {f[key]}"
    parts.append(Text(line))
    if f.get("worst"):
        # One feed per row: what it is, then why it is unwell on a dim second line. Long URLs and
        # errors are cut to the terminal; `newsflow feeds status` has the whole story.
        t = Table(title="Worst feeds", title_justify="left")
        t.add_column("feed", overflow="ellipsis", no_wrap=True, min_width=20, max_width=max(20, width - 48))
        t.add_column("state", no_wrap=True, min_width=11)
        t.add_column("errors", justify="right", no_wrap=True, min_width=6)
        t.add_column("last ok", no_wrap=True, min_width=16)
        for w in f["worst"]:
            cell = Text(w.get("url") or w.get("feed_id") or "?", no_wrap=True, overflow="ellipsis")
            why = ": ".join(x for x in (w.get("last_error_class"), w.get("last_error")) if x)
            if why:
                cell.append("\n" + why.replace("\n", " "), style="dim")
            state = w.get("state") or ("retired" if w.get("retired") else "")
            t.add_row(cell, state, str(w.get("consecutive_errors", "")), _cell(w.get("last_success")) or "never")
        parts.append(t)

    e = report["elasticsearch"]
    if e.get("ok"):
        parts.append(Text(f"Elasticsearch: {e['docs']} documents behind alias {e['alias']!r}"
                          + (f" ({e['detail']})" if e.get("detail") else "")))
        if e["indices"]:
            t = Table()
            for col in ("index", "in alias", "health", "articles", "size"):
                t.add_column(col, justify="right" if col in ("articles", "size") else "left", no_wrap=True)
            for i in e["indices"]:
                t.add_row(i["index"], "yes" if i.get("in_alias", True) else Text("no (old generation?)", style="dim"),
                          i.get("health") or "-", str(i["docs"]), _size(i["size_bytes"]))
            parts.append(t)
    else:
        parts.append(Text(f"Elasticsearch unreachable: {e.get('error')}", style="bold red"))
    return Group(*parts)


def watch(settings: Settings, interval_s: float, console: Console | None = None) -> None:
    """Refresh the tables every ``interval_s`` until Ctrl-C."""
    from rich.live import Live

    console = console or Console()
    report = gather_report(settings)
    feeds_at = time.monotonic()
    with Live(render(report, console.width), console=console, refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval_s)
            stale = time.monotonic() - feeds_at > FEEDS_REFRESH_S
            report = gather_report(settings, feeds=None if stale else report["feeds"])
            feeds_at = time.monotonic() if stale else feeds_at
            live.update(render(report, console.width))
