"""Search the ``articles`` alias: the query behind ``newsflow search``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from newsflow.elastic import make_es
from newsflow.settings import Settings


def build_query(query: str) -> dict[str, Any]:
    if not query.strip():
        return {"match_all": {}}
    return {
        "simple_query_string": {
            "query": query,
            "fields": ["title^3", "description^2", "text", "source.text", "author.text"],
            "default_operator": "and",
        }
    }


def search(settings: Settings, query: str, *, size: int = 10) -> dict[str, Any]:
    es = make_es(settings)
    try:
        resp = es.search(
            index=settings.es_index,
            query=build_query(query),
            size=size,
            sort=["_score", {"published_at": {"order": "desc", "missing": "_last"}}],
            highlight={
                "pre_tags": ["[bold yellow]"], "post_tags": ["[/bold yellow]"],
                "fields": {"text": {"fragment_size": 160, "number_of_fragments": 1}, "title": {}},
            },
            source_excludes=["text"],
            track_total_hits=True,
        )
    finally:
        es.close()
    hits = []
    for h in resp["hits"]["hits"]:
        src = h["_source"]
        hl = h.get("highlight", {})
        hits.append({
            "id": h["_id"],
            "index": h["_index"],
            "score": h["_score"],
            "title": src.get("title"),
            "source": src.get("source"),
            "published_at": src.get("published_at"),
            "url": src.get("canonical_url"),
            "snippet": (hl.get("text") or [src.get("description") or ""])[0],
        })
    return {"total": resp["hits"]["total"]["value"], "hits": hits}


def print_hits(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{result['total']}[/bold] matching articles")
    for h in result["hits"]:
        date = (h.get("published_at") or "")[:10] or "undated"
        console.print(f"\n[bold]{escape(h.get('title') or '(untitled)')}[/bold]")
        console.print(f"[dim]{escape(h.get('source') or '')} · {date} · {escape(h.get('url') or '')}[/dim]")
        snippet = h.get("snippet") or ""
        # Highlight tags are rich markup; everything else in the snippet is escaped.
        parts = snippet.split("[bold yellow]")
        text = escape(parts[0]) + "".join(
            "[bold yellow]" + escape(p.split("[/bold yellow]", 1)[0]) + "[/bold yellow]"
            + escape(p.split("[/bold yellow]", 1)[1] if "[/bold yellow]" in p else "")
            for p in parts[1:]
        )
        console.print("  " + text.replace("\n", " "))
