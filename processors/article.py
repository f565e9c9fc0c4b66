"""RawArticle (or a plain-text file) -> Article: the whole chain of one document. Pure: no Kafka,
no network; runs inside an extraction worker.

    size guard -> parse HTML -> page metadata -> merge with the feed entry (processors/merge.py)
    -> main text (processors/extract.py) -> cleaning (processors/clean.py)
    -> enrichment (processors/enrich/, when an ``Enricher`` is given) -> counts, content hash

Story labels are added afterwards by the processor, which owns the recent-articles window.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from newsflow.schema import Access, Article, Provenance, Quote, RawArticle, article_id
from newsflow.settings import Settings
from newsflow.stage.outcomes import Quarantine
from processors.access import decide_access, read_signals
from processors.clean import FIELD_BYTES, clean_field, clean_list, clean_text, truncate_bytes
from processors.enrich.enricher import Enricher, Enrichment
from processors.enrich.stories import content_hash
from processors.extract import EXTRACTOR_VERSION, EmptyPage, decode_page, extract_text, load_page, read_meta
from processors.jsonld import ld_blocks
from processors.merge import Merged, merge

WORDS_PER_MINUTE = 238  # average silent reading speed of English non-fiction (Brysbaert, 2019)
_DATE_LINE = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\b[ \t]*\n?")


@dataclass(frozen=True)
class Limits:
    max_page_bytes: int = 5 * 1024 * 1024
    min_chars: int = 250
    max_text_bytes: int = 1_000_000

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(max_page_bytes=s.max_page_bytes, min_chars=s.extract_min_chars, max_text_bytes=s.max_text_bytes)


@dataclass
class Built:
    article: Article
    timings: dict[str, float] = field(default_factory=dict)


def reading_time_s(word_count: int) -> int:
    return math.ceil(word_count * 60 / WORDS_PER_MINUTE) if word_count else 0


def html_lang(value: str | None) -> str | None:
    """``en-US`` -> ``en``; anything that is not a language tag -> None."""
    m = re.match(r"^([A-Za-z]{2,3})(?:[-_]|$)", value or "")
    return m.group(1).lower() if m else None


def build_article(raw: RawArticle, *, limits: Limits, enricher: Enricher | None = None,
                  now: datetime | None = None) -> Built:
    """One fetched page -> Article (no story label yet). Raises Quarantine for pages that can
    never become an article: too large, not HTML, no main text."""
    now = now or datetime.now(UTC)
    body = raw.body
    if len(body) > limits.max_page_bytes:
        raise Quarantine("page_too_large", f"{len(body)} bytes > max_page_bytes={limits.max_page_bytes}")
    t = time.process_time()
    html = decode_page(body, raw.charset)
    try:
        tree = load_page(html)
    except EmptyPage as exc:
        raise Quarantine("not_html", f"{exc} ({raw.content_type or 'no content type'})") from exc
    ld_scripts = ld_blocks(tree)  # parsed once, read by both
    page = read_meta(tree, raw.final_url, ld_scripts)
    access_signals = read_signals(tree, ld_scripts)  # markers read lazily: extraction leaves the tree as is
    merged = merge(page, raw.entry, feed_title=raw.feed_title, canonical=raw.canonical_url,
                   canonical_from=raw.canonical_from, now=min(now, raw.fetched_at))  # nothing is newer than the fetch
    extraction = extract_text(tree, html, raw.final_url, min_chars=limits.min_chars)
    timings = {"extract": time.process_time() - t}
    t = time.process_time()
    text = truncate_bytes(clean_text(extraction.text), limits.max_text_bytes, at_space=True)
    timings["clean"] = time.process_time() - t
    if not text:
        raise Quarantine("empty_extraction", f"no main text found in {raw.final_url}")
    sources = dict(merged.sources) | {"text": extraction.extractor}
    access, sources["access"] = decide_access(access_signals, text)
    # the language the source declares (a news sitemap's news:language), else the page's <html lang>
    declared = html_lang(raw.entry.language)
    fallback_lang = (declared, "feed:language") if declared else (html_lang(page.lang), "page:html-lang")
    article = _assemble(
        ident=raw.id, url=raw.url, final_url=raw.final_url, feed_url=raw.feed_url,
        source=clean_field(raw.feed_title, "source"), merged=merged, text=text, sources=sources,
        extractor=extraction.extractor, fetched_at=raw.fetched_at, first_seen_at=raw.first_seen_at,
        now=now, enricher=enricher, fallback_lang=fallback_lang, timings=timings, access=access,
    )
    return Built(article, timings)


def split_date_line(text: str) -> tuple[datetime | None, str]:
    """A leading ``date YYYY-MM-DD`` (as in the seed article) is the text's date."""
    m = _DATE_LINE.match(text)
    if not m:
        return None, text
    try:
        date = datetime.strptime(m.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None, text
    return date, text[m.end():]


def build_from_text(raw_text: str, *, path: Path, limits: Limits, enricher: Enricher | None = None,
                    now: datetime | None = None) -> Built:
    """A plain-text file -> Article: no extraction; the rest of the chain as for a page."""
    now = now or datetime.now(UTC)
    date, body = split_date_line(raw_text)
    t = time.process_time()
    text = truncate_bytes(clean_text(body), limits.max_text_bytes, at_space=True)
    timings = {"clean": time.process_time() - t}
    if not text:
        raise Quarantine("empty_extraction", f"{path} holds no text")
    url = path.resolve().as_uri()
    merged = Merged(published_at=date, canonical_url=url, sources={"canonical_url": "file"})
    sources = {"published_at": "text:date-line" if date else "none", "text": "file", "access": "none"}
    article = _assemble(
        ident=article_id(url), url=url, final_url=None, feed_url=None, source=path.name, merged=merged,
        text=text, sources=sources, extractor="plain-text", fetched_at=now, first_seen_at=now, now=now,
        enricher=enricher, fallback_lang=(None, "none"), timings=timings,
    )
    return Built(article, timings)


def _assemble(*, ident: str, url: str, final_url: str | None, feed_url: str | None, source: str | None,
              merged: Merged, text: str, sources: dict[str, str], extractor: str, fetched_at: datetime,
              first_seen_at: datetime, now: datetime, enricher: Enricher | None,
              fallback_lang: tuple[str | None, str],
              timings: dict[str, float], access: Access = "unknown") -> Article:
    host = (urlsplit(merged.canonical_url).hostname or "").lower()
    steps: dict[str, str] = {}
    if enricher is not None:
        found = enricher.enrich(text, merged.title)
        timings.update(found.timings)
        steps.update(found.steps)
        language = found.language
        sources["language"] = "py3langid" if language else "none"
        if not language and fallback_lang[1] == "feed:language":  # detection unsure: the source's word
            language, sources["language"] = fallback_lang
    else:
        found = Enrichment()
        steps["enrichment"] = "off (settings.enrich)"
        language = fallback_lang[0]
        sources["language"] = fallback_lang[1] if language else "none"
    words = len(text.split())
    return Article(
        id=ident,
        url=url,
        canonical_url=merged.canonical_url,
        final_url=final_url,
        feed_url=feed_url,
        host=host,
        source=source or merged.site_name or host or "unknown",
        site_name=merged.site_name,
        title=merged.title,
        text=text,
        description=merged.description,
        authors=merged.authors,
        published_at=merged.published_at,
        fetched_at=fetched_at,
        first_seen_at=first_seen_at,
        processed_at=now,
        language=language,
        categories=merged.categories,
        tags=merged.tags,
        image=merged.image,
        access=access,
        persons=clean_list(found.entities.persons),
        organizations=clean_list(found.entities.organizations),
        places=clean_list(found.entities.places),
        dates=clean_list(found.entities.dates),
        numbers=clean_list(found.entities.numbers),
        quotes=[
            Quote(
                text=truncate_bytes(q.text, FIELD_BYTES["quote"], at_space=True),
                speaker=clean_field(q.speaker, "speaker"),
                speaker_raw=clean_field(q.speaker_raw, "speaker"),
            )
            for q in found.quotes
        ],
        keywords=clean_list(found.keywords),
        word_count=words,
        reading_time_s=reading_time_s(words),
        content_hash=content_hash(text),
        minhash=found.minhash,
        provenance=Provenance(
            extractor=extractor,
            extractor_version=EXTRACTOR_VERSION if extractor.startswith("trafilatura") else "",
            fields=sources,
            steps=steps,
        ),
    )
