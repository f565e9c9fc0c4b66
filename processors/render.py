"""Rich renderings for the processor commands (``newsflow enrich``, ``newsflow dlq list``)."""

from __future__ import annotations

from collections import Counter

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from newsflow.schema import Article
from newsflow.stage.deadletters import DeadRecord

TEXT_PREVIEW = 600


def render_article(a: Article) -> Group:
    src = a.provenance.fields
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="bold cyan", no_wrap=True)
    meta.add_column()
    meta.add_column(style="dim")
    rows = [
        ("title", a.title, src.get("title")), ("authors", ", ".join(a.authors) or None, src.get("authors")),
        ("published", a.published_at.isoformat() if a.published_at else None, src.get("published_at")),
        ("source", a.source, None), ("site name", a.site_name, src.get("site_name")),
        ("url", a.url, None), ("canonical", a.canonical_url, src.get("canonical_url")),
        ("language", a.language, src.get("language")), ("description", a.description, src.get("description")),
        ("categories", ", ".join(a.categories), src.get("categories")), ("tags", ", ".join(a.tags), src.get("tags")),
        ("image", a.image, src.get("image")),
        ("words", f"{a.word_count} (~{round(a.reading_time_s / 60)} min read)", None),
        ("content hash", a.content_hash, None), ("story", a.story_id, None),
        ("extractor", f"{a.provenance.extractor} {a.provenance.extractor_version}".strip(), src.get("text")),
    ]
    for name, value, source in rows:
        meta.add_row(name, Text(str(value)) if value else Text("-", style="dim"), f"from {source}" if source else "")

    ents = Table.grid(padding=(0, 2))
    ents.add_column(style="bold magenta", no_wrap=True)
    ents.add_column()
    for name, values in (("persons", a.persons), ("organizations", a.organizations), ("places", a.places),
                         ("dates", a.dates), ("numbers", a.numbers), ("keywords", a.keywords)):
        ents.add_row(name, Text(", ".join(values)) if values else Text("-", style="dim"))

    quotes = Table("speaker", "quote", "as written", expand=True, show_lines=False)
    for q in a.quotes:
        quotes.add_row(Text(q.speaker or "?", style="bold"), Text(f"“{q.text}”"), Text(q.speaker_raw or "", style="dim"))

    steps = Table.grid(padding=(0, 2))
    steps.add_column(style="bold", no_wrap=True)
    steps.add_column(style="dim")
    for step, what in a.provenance.steps.items():
        steps.add_row(step, what)

    preview = a.text if len(a.text) <= TEXT_PREVIEW else a.text[:TEXT_PREVIEW] + " …"
    return Group(
        Panel(meta, title=f"Article {a.id[:16]}…", title_align="left"),
        Panel(ents, title="entities and keywords", title_align="left"),
        Panel(quotes if a.quotes else Text("no attributed quotes", style="dim"), title=f"quotes ({len(a.quotes)})",
              title_align="left"),
        Panel(steps, title="processing steps", title_align="left"),
        Panel(Text(preview), title="text", title_align="left"),
    )


def render_dead(records: list[DeadRecord], *, topic: str, pending_only: bool) -> Group:
    what = "pending" if pending_only else "all"
    table = Table(title=f"{topic}: {len(records)} record(s), {what}", title_justify="left")
    for col in ("offset", "time (UTC)", "stage", "error class", "message", "original record", "attempts"):
        table.add_column(col, overflow="fold" if col == "message" else "ellipsis")
    for r in records:
        origin = f"{r.topic}/{r.original_partition}@{r.original_offset}" if r.topic else "-"
        table.add_row(
            f"{r.partition}:{r.offset}", r.timestamp.strftime("%Y-%m-%d %H:%M:%S") if r.timestamp else "-",
            r.stage or "-", Text(r.error_class or "-", style="bold red"), (r.message or "")[:300], origin,
            str(r.attempts),
        )
    counts = Counter((r.stage or "-", r.error_class or "-") for r in records)
    summary = Text(", ".join(f"{stage}/{reason}: {n}" for (stage, reason), n in counts.most_common()) or "empty",
                   style="dim")
    return Group(table, summary)
