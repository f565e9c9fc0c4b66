"""Search the read alias: the query behind ``newsflow search``.

``build_query`` and ``build_aggs`` are pure (unit-tested); ``search`` runs them and shapes the
answer as plain data (``--json`` prints it as is); ``print_hits`` renders it with rich.

Filter semantics (every flag can be repeated):

* ``--lang``, ``--source``, ``--story``: any of the values (an article has one of each);
  ``--source`` matches the source name, the site name or the host;
* ``--person``, ``--org``, ``--place``: all of the values (an article names many);
* ``--access``: any of ``free``, ``paywalled``, ``unknown`` (``unknown`` also matches articles
  indexed before the field existed, and the access facet counts them as ``unknown``);
* keyword filters ignore case; ``--since``/``--until`` take ``7d``, ``12h``, ``30m``, ``2w`` (ago)
  or an ISO date/time, and apply to ``published_at``, or to ``first_seen_at`` for an article
  without a publication date.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from newsflow.elastic import make_es
from newsflow.settings import Settings

MARK, END_MARK = "<mark>", "</mark>"
TEXT_FIELDS = ["title^3", "description^2", "text", "source.text", "authors.text", "author.text"]  # author: v1
FACETS = {  # facet name -> keyword field
    "sources": "source",
    "persons": "persons",
    "organizations": "organizations",
    "places": "places",
    "languages": "language",
    "access": "access",
}
_MISSING = {"access": "unknown"}  # documents indexed before the field existed
_HIT_FIELDS = ["title", "source", "host", "language", "published_at", "first_seen_at", "canonical_url",
               "authors", "author", "description", "persons", "organizations", "places", "story_id", "access"]
_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    stories: tuple[str, ...] = ()
    access: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if v}


def parse_when(value: str, now: datetime | None = None, *, end_of_day: bool = False) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` before ``now``, or an ISO date or date-time (UTC if naive).

    ``end_of_day``: a bare date means its last instant (``--until 2024-03-01`` includes that day).
    """
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m[2]]: int(m[1])})
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration like 7d/12h/30m/2w nor an ISO date") from None
    if end_of_day and len(text) == 10:  # YYYY-MM-DD
        when += timedelta(days=1, microseconds=-1)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _term(field: str, value: str) -> dict[str, Any]:
    return {"term": {field: {"value": value, "case_insensitive": True}}}


def _any_of(fields: Sequence[str], values: Sequence[str]) -> dict[str, Any]:
    return {"bool": {"should": [_term(f, v) for v in values for f in fields], "minimum_should_match": 1}}


def _date_range(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    rng: dict[str, str] = {}
    if since:
        rng["gte"] = since.isoformat()
    if until:
        rng["lte"] = until.isoformat()
    return {"bool": {"should": [
        {"range": {"published_at": rng}},
        {"bool": {"must_not": [{"exists": {"field": "published_at"}}],
                  "filter": [{"range": {"first_seen_at": rng}}]}},
    ], "minimum_should_match": 1}}


def build_query(text: str, filters: Filters = Filters()) -> dict[str, Any]:
    must: list[dict[str, Any]] = []
    if text.strip():
        must.append({"simple_query_string": {"query": text, "fields": TEXT_FIELDS, "default_operator": "and"}})
    flt: list[dict[str, Any]] = []
    if filters.since or filters.until:
        flt.append(_date_range(filters.since, filters.until))
    if filters.languages:
        flt.append(_any_of(["language"], filters.languages))
    if filters.sources:
        flt.append(_any_of(["source", "site_name", "host"], filters.sources))
    if filters.stories:
        flt.append(_any_of(["story_id"], filters.stories))
    if filters.access:
        flt.append(_access(filters.access))
    for field, values in (("persons", filters.persons), ("organizations", filters.organizations),
                          ("places", filters.places)):
        flt.extend(_term(field, v) for v in values)
    if not must and not flt:
        return {"match_all": {}}
    return {"bool": {"must": must or [{"match_all": {}}], "filter": flt}}


def _access(values: Sequence[str]) -> dict[str, Any]:
    unknown = "unknown" in values
    query = _any_of(["access"], values)
    if unknown:
        query["bool"]["should"].append({"bool": {"must_not": [{"exists": {"field": "access"}}]}})
    return query


def build_aggs(size: int) -> dict[str, Any]:
    return {name: {"terms": {"field": field, "size": size} | ({"missing": _MISSING[field]} if field in _MISSING else {})}
            for name, field in FACETS.items()}


def build_sort(order: str) -> list[Any]:
    newest = {"published_at": {"order": "desc", "missing": "_last"}}
    if order == "newest":
        return [newest, {"first_seen_at": {"order": "desc"}}, "_score"]
    if order == "relevance":
        return ["_score", newest]
    raise ValueError(f"unknown sort {order!r}: relevance or newest")


def search(
    settings: Settings,
    text: str,
    filters: Filters = Filters(),
    *,
    size: int = 10,
    facet_size: int = 10,
    sort: str | None = None,
    es: Elasticsearch | None = None,
) -> dict[str, Any]:
    """Run one search. ``sort`` defaults to relevance with a query and newest without one."""
    sort = sort or ("relevance" if text.strip() else "newest")
    body: dict[str, Any] = {
        "query": build_query(text, filters),
        "size": size,
        "sort": build_sort(sort),
        "track_total_hits": True,
        "source_includes": _HIT_FIELDS,
        "highlight": {
            "pre_tags": [MARK], "post_tags": [END_MARK],
            "fields": {"title": {"number_of_fragments": 0},
                       "text": {"fragment_size": 180, "number_of_fragments": 1},
                       "description": {"fragment_size": 180, "number_of_fragments": 1}},
        },
    }
    if facet_size > 0:
        body["aggs"] = build_aggs(facet_size)
    own = es is None
    es = es or make_es(settings)
    result: dict[str, Any] = {"alias": settings.es_index, "query": text, "filters": filters.describe(), "sort": sort}
    try:
        resp = es.search(index=settings.es_index, **body).body
    except NotFoundError:
        return result | {"total": 0, "took_ms": 0, "hits": [], "facets": {},
                         "note": f"nothing indexed yet: alias {settings.es_index!r} does not exist"}
    finally:
        if own:
            es.close()
    return result | {
        "total": resp["hits"]["total"]["value"],
        "took_ms": resp.get("took", 0),
        "hits": [_hit(h) for h in resp["hits"]["hits"]],
        "facets": {name: [{"value": b["key"], "count": b["doc_count"]} for b in aggs[name]["buckets"]]
                   for name in FACETS if name in (aggs := resp.get("aggregations", {}))},
    }


def _hit(h: dict[str, Any]) -> dict[str, Any]:
    src = h["_source"]
    hl = h.get("highlight", {})
    snippet = (hl.get("text") or hl.get("description") or [src.get("description") or ""])[0]
    return {
        "id": h["_id"],
        "index": h["_index"],
        "score": h.get("_score"),
        "title": src.get("title"),
        "title_highlight": (hl.get("title") or [src.get("title")])[0],
        "source": src.get("source"),
        "host": src.get("host"),
        "language": src.get("language"),
        "published_at": src.get("published_at"),
        "url": src.get("canonical_url"),
        "authors": src.get("authors") or ([src["author"]] if src.get("author") else []),  # v1 documents: one string
        "persons": src.get("persons", []),
        "organizations": src.get("organizations", []),
        "places": src.get("places", []),
        "story_id": src.get("story_id"),
        "access": src.get("access", "unknown"),
        "snippet": snippet,
    }


# --- rendering -------------------------------------------------------------------------------------
def marked(snippet: str | None, style: str = "bold yellow") -> Text:
    """A highlighted fragment as rich Text: ``<mark>`` spans styled, everything else literal."""
    out = Text()
    rest = " ".join((snippet or "").split())
    while MARK in rest:
        before, _, rest = rest.partition(MARK)
        inside, _, rest = rest.partition(END_MARK)
        out.append(before)
        out.append(inside, style=style)
    out.append(rest)
    return out


def _facet_table(name: str, buckets: list[dict[str, Any]]) -> Table:
    title = f"top {name}"
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False,
                  min_width=len(title))
    table.add_column(overflow="ellipsis", no_wrap=True, max_width=28)
    table.add_column(justify="right", style="cyan")
    for b in buckets:
        table.add_row(str(b["value"]), str(b["count"]))
    return table


def print_hits(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if result.get("note"):
        console.print(f"[yellow]{result['note']}[/yellow]")
        return
    head = Text()
    head.append(str(result["total"]), style="bold")
    head.append(" matching articles" + (f" for {result['query']!r}" if result["query"] else ""))
    for k, v in result["filters"].items():
        head.append(f" · {k}={','.join(v) if isinstance(v, list) else v}", style="dim")
    head.append(f"  ({result['took_ms']} ms, by {result['sort']})", style="dim")
    console.print(head)
    for n, h in enumerate(result["hits"], 1):
        console.print()
        title = Text(f"{n:>2}. ", style="dim") + marked(h["title_highlight"] or "(untitled)", "bold underline")
        title.stylize("bold")
        console.print(title)
        access = h["access"] if h["access"] != "unknown" else None
        meta = " · ".join(x for x in [h["source"], ", ".join(h["authors"][:5]), (h["published_at"] or "undated")[:10],
                                      h["language"], access, h["url"]] if x)
        console.print(Text("    " + meta, style="dim"))
        if h["snippet"]:
            console.print(Text("    ") + marked(h["snippet"]))
        who = [f"{k}: {', '.join(h[k][:5])}" for k in ("persons", "organizations", "places") if h[k]]
        if who:
            console.print(Text("    " + " · ".join(who), style="green"))
    tables = [_facet_table(name, b) for name, b in result["facets"].items() if b]
    if tables:
        console.print()
        grid = Table.grid(padding=(0, 3))
        for _ in tables:
            grid.add_column(vertical="top")
        grid.add_row(*tables)
        console.print(Group(grid))
