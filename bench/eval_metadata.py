"""``make eval``: metadata accuracy on real publisher pages, Newsflow next to trafilatura alone.

    python bench/eval_metadata.py [--out bench/eval.md] [--limit N] [--failures N]

Reads ``$NEWSFLOW_CORPUS/news-metadata/`` (index.json + pages/*.html.gz + the expected *.json, see its
README) and runs every page through Newsflow's own processor transform (``processors.article.
build_article``: extraction + merge, enrichment off), in three modes of feed entry, as the poller
would put them on the ``RawArticle``:

  (a) no feed entry;
  (b) a feed entry with the expected title and publishing date;
  (c) as (b) plus ``dc:creator`` (the expected authors, comma-joined as in one ``<dc:creator>``).

``trafilatura.bare_extraction(with_metadata=True)`` runs on the same pages in the same run (it takes no
feed entry, so its figures are the same in every mode).

Scoring (exact match per page, mean over pages):

* title: equal after Unicode NFKC, case folding and removal of punctuation/whitespace runs;
* date: the same calendar day (in the expected value's offset or as written);
* authors: the same set of names, each normalised as titles are (no authors expected = none given);
* body: bag-of-words precision / recall / F1 of the text against the expected body (summary,
  section headlines, paragraphs), averaged over pages;
* language: the ISO 639-1 code equal to py3langid's reading of the *expected* body (the corpus has no
  language label; Newsflow's value with enrichment off is the page's ``<html lang>``).

The report (``--out``) has the table and, per field and mode, the pages Newsflow gets wrong with the
value it gave and the expected one, so rules can be driven by the failures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import py3langid  # noqa: E402
import trafilatura  # noqa: E402

from newsflow.schema import FeedEntry, RawArticle, article_id  # noqa: E402
from newsflow.stage.outcomes import Quarantine  # noqa: E402
from processors.article import Limits, build_article, html_lang  # noqa: E402

CORPUS = Path(os.environ.get("NEWSFLOW_CORPUS", REPO.parent / "shared" / "corpus"))
MODES = {"a": "no feed entry", "b": "feed: title + date", "c": "feed: title + date + dc:creator"}
FIELDS = ("title", "date", "authors", "language")
GOALS = {  # (mode, field) -> minimum exact-match accuracy (issue 11)
    ("a", "title"): 0.88, ("a", "date"): 0.97, ("a", "authors"): 0.85,
    ("b", "title"): 0.95, ("b", "date"): 0.98,
    ("c", "title"): 0.95, ("c", "date"): 0.98, ("c", "authors"): 0.90,
}


def log(msg: str) -> None:
    print(f"[eval] {msg}", file=sys.stderr, flush=True)


# --- normalisation and scoring ----------------------------------------------------------------------
def fold(value: str | None) -> str:
    """NFKC, case folding, punctuation and whitespace runs -> one space."""
    value = unicodedata.normalize("NFKC", value or "").casefold()
    value = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in value)
    return " ".join(value.split())


def author_set(names: Iterable[str]) -> frozenset[str]:
    return frozenset(f for f in map(fold, names) if f)


def parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # as the poller stores a zoneless date


def same_day(got: datetime | None, want: datetime | None) -> bool:
    if got is None or want is None:
        return got is None and want is None
    days = {got.date()}
    if got.tzinfo is not None and want.tzinfo is not None:
        days.add(got.astimezone(want.tzinfo).date())
    return want.date() in days


def words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def prf(got: str, want: str) -> tuple[float, float, float]:
    g, w = words(got), words(want)
    common = sum((g & w).values())
    p = common / sum(g.values()) if g else 0.0
    r = common / sum(w.values()) if w else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def expected_body(body: dict) -> str:
    parts = list(body.get("summary") or [])
    for section in body.get("sections") or []:
        parts += list(section.get("headline") or []) + list(section.get("paragraphs") or [])
    return "\n".join(parts)


# --- the pages -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    name: str
    url: str
    html: bytes
    title: str
    authors: list[str]
    date: datetime | None
    fetched: datetime
    body: str
    language: str | None


def load_pages(limit: int | None) -> list[Page]:
    root = CORPUS / "news-metadata"
    rows = json.loads((root / "index.json").read_text(encoding="utf-8"))[:limit]
    ident = py3langid.langid.LanguageIdentifier.from_model_file(py3langid.langid.MODEL_FILE, norm_probs=True)
    pages = []
    for row in rows:
        want = json.loads((root / row["expected"]).read_text(encoding="utf-8"))
        body = expected_body(want.get("body") or {})
        fetched = parse_when(want.get("crawl_date")) or datetime.now(UTC)  # never None: ``now`` of the run
        pages.append(Page(
            name=Path(row["page"]).name.removesuffix(".html.gz"), url=row["url"].strip(),
            html=gzip.decompress((root / row["page"]).read_bytes()), title=want.get("title") or "",
            authors=list(want.get("authors") or []), date=parse_when(want.get("publishing_date")),
            fetched=fetched, body=body,
            language=ident.classify(body[:5000])[0] if body.strip() else None,
        ))
    return pages


def entry_for(page: Page, mode: str) -> FeedEntry:
    if mode == "a":
        return FeedEntry()
    return FeedEntry(title=page.title, link=page.url, published=page.date,
                     author=", ".join(page.authors) if mode == "c" and page.authors else None)


# --- the systems ------------------------------------------------------------------------------------
@dataclass
class Result:
    title: str | None = None
    date: datetime | None = None
    authors: list[str] = field(default_factory=list)
    language: str | None = None
    text: str = ""
    sources: dict[str, str] = field(default_factory=dict)


def newsflow(page: Page, mode: str, limits: Limits) -> Result:
    raw = RawArticle(
        id=article_id(page.url), url=page.url, canonical_url=page.url, final_url=page.url,
        entry=entry_for(page, mode), fetched_at=page.fetched, first_seen_at=page.fetched,
        content_type="text/html; charset=utf-8", charset="utf-8", body_b64=RawArticle.encode_body(page.html),
    )
    try:
        art = build_article(raw, limits=limits, now=page.fetched).article
    except Quarantine as exc:
        return Result(sources={"quarantine": exc.reason})
    return Result(title=art.title, date=art.published_at, authors=list(art.authors), language=art.language,
                  text=art.text, sources=dict(art.provenance.fields))


def trafilatura_alone(page: Page) -> Result:
    doc = trafilatura.bare_extraction(page.html.decode("utf-8", "replace"), url=page.url, with_metadata=True)
    if doc is None:
        return Result()
    return Result(title=doc.title, date=parse_when(doc.date),
                  authors=[a.strip() for a in (doc.author or "").split(";") if a.strip()],
                  language=html_lang(doc.language), text=doc.text or "")


# --- scoring ----------------------------------------------------------------------------------------
@dataclass
class Tally:
    right: Counter[str] = field(default_factory=Counter)
    given: Counter[str] = field(default_factory=Counter)  # pages where the system gave a value at all
    body: list[tuple[float, float, float]] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def add(self, page: Page, got: Result) -> None:
        checks = {
            "title": (fold(got.title) == fold(page.title), got.title, page.title),
            "date": (same_day(got.date, page.date), got.date and got.date.isoformat(),
                     page.date and page.date.isoformat()),
            "authors": (author_set(got.authors) == author_set(page.authors), got.authors, page.authors),
            "language": (got.language == page.language, got.language, page.language),
        }
        for name, (ok, value, want) in checks.items():
            self.given[name] += bool(value)
            if ok:
                self.right[name] += 1
            else:
                src = got.sources.get({"date": "published_at"}.get(name, name), "")
                self.failures.setdefault(name, []).append(
                    f"`{page.name}`: got {value!r}" + (f" ({src})" if src else "") + f", expected {want!r}")
        self.body.append(prf(got.text, page.body))

    def accuracy(self, name: str, n: int) -> float:
        return self.right[name] / n if n else 0.0

    def body_mean(self) -> tuple[float, float, float]:
        n = len(self.body) or 1
        return tuple(sum(x[i] for x in self.body) / n for i in range(3))  # type: ignore[return-value]


def evaluate(pages: list[Page]) -> tuple[dict[str, Tally], Tally, float]:
    limits = Limits()
    ours = {m: Tally() for m in MODES}
    theirs = Tally()
    started = time.monotonic()
    for i, page in enumerate(pages, 1):
        for mode in MODES:
            ours[mode].add(page, newsflow(page, mode, limits))
        theirs.add(page, trafilatura_alone(page))
        if i % 20 == 0 or i == len(pages):
            log(f"{i}/{len(pages)} pages, {time.monotonic() - started:.0f}s")
    return ours, theirs, time.monotonic() - started


# --- the report -------------------------------------------------------------------------------------
def report(pages: list[Page], ours: dict[str, Tally], theirs: Tally, seconds: float, max_failures: int) -> str:
    n = len(pages)
    publishers = len({p.name.split("_")[0] for p in pages})
    lines = [
        "# Metadata evaluation (`make eval`)",
        "",
        f"{n} real publisher pages ({publishers} publishers) from `$NEWSFLOW_CORPUS/news-metadata/`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f}s, trafilatura {trafilatura.__version__}. "
        "Newsflow = the processor's own transform (`build_article`, enrichment off); "
        "trafilatura alone takes no feed entry, so its column is the same in every mode. "
        "Scoring: see `bench/eval_metadata.py`. A goal is marked ✓/✗; n/a: the system gives no such value "
        "(trafilatura reports no language unless asked to filter by one).",
        "",
        "| field | " + " | ".join(f"Newsflow ({m}) | trafilatura ({m})" for m in MODES) + " |",
        "|---|" + "---:|" * (2 * len(MODES)),
    ]
    for name in FIELDS:
        cells = []
        for m in MODES:
            acc = ours[m].accuracy(name, n)
            goal = GOALS.get((m, name))
            mark = "" if goal is None else (" ✓" if acc >= goal else f" ✗ (goal {goal:.2f})")
            cells += [f"{acc:.3f}{mark}", f"{theirs.accuracy(name, n):.3f}" if theirs.given[name] else "n/a"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for i, label in enumerate(("body precision", "body recall", "body F1")):
        cells = []
        for m in MODES:
            cells += [f"{ours[m].body_mean()[i]:.3f}", f"{theirs.body_mean()[i]:.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Modes: " + "; ".join(f"({m}) {d}" for m, d in MODES.items()) + ".", ""]
    lines += ["## Newsflow's failures", "",
              "Per field and mode: the value given (with its `provenance.fields` source) and the expected one.", ""]
    for m, desc in MODES.items():
        for name in FIELDS:
            fails = ours[m].failures.get(name, [])
            if not fails:
                continue
            lines += [f"### {name}, mode ({m}) {desc}: {len(fails)} of {n}", ""]
            lines += [f"- {f}" for f in fails[:max_failures]]
            if len(fails) > max_failures:
                lines.append(f"- … {len(fails) - max_failures} more")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "eval.md", help="report file (Markdown)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pages (quick look)")
    ap.add_argument("--failures", type=int, default=200, help="at most N failures listed per field and mode")
    args = ap.parse_args(argv)
    if not (CORPUS / "news-metadata" / "index.json").exists():
        ap.error(f"no {CORPUS}/news-metadata/index.json: set NEWSFLOW_CORPUS")
    pages = load_pages(args.limit)
    log(f"{len(pages)} pages from {CORPUS / 'news-metadata'}")
    ours, theirs, seconds = evaluate(pages)
    text = report(pages, ours, theirs, seconds, args.failures)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text.split("\n## ")[0])
    log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
