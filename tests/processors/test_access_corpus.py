"""The access flag on the real corpus pages (``$NEWSFLOW_CORPUS/pages`` and ``news-metadata``).

Each page goes through the processor's chain (``build_article``, enrichment off). The counts per
value and source are written to ``.local/reports/access.json``. They are checked against a crude,
independent reading of the raw HTML: a page whose markup says ``isAccessibleForFree: false`` or
``content_tier`` locked/metered must come out paywalled; one that only says it is free, free.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsflow.schema import RawArticle, article_id
from newsflow.settings import REPO_ROOT
from newsflow.stage.outcomes import Quarantine
from processors.article import Limits, build_article
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPORT = REPO_ROOT / ".local" / "reports" / "access.json"
_NOT_FREE = re.compile(
    r'isAccessibleForFree"?\s*:\s*"?(?:https?://schema\.org/)?false|content[-_]tier"\s+content="(?:locked|metered)"',
    re.IGNORECASE)
_FREE = re.compile(r'isAccessibleForFree"?\s*:\s*"?(?:https?://schema\.org/)?true|content[-_]tier"\s+content="free"',
                   re.IGNORECASE)


def corpus_pages() -> list[tuple[str, str, bytes]]:
    pages = [("pages", p.name, p.read_bytes()) for p in sorted((CORPUS / "pages").glob("*.html"))]
    meta = CORPUS / "news-metadata" / "pages"
    pages += [("news-metadata", p.name, gzip.decompress(p.read_bytes())) for p in sorted(meta.glob("*.html.gz"))]
    return pages


def access_of(name: str, body: bytes) -> tuple[str, str] | None:
    url = f"https://corpus.example/{name}"
    raw = RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=NOW,
                     first_seen_at=NOW, body_b64=RawArticle.encode_body(body))
    try:
        article = build_article(raw, limits=Limits(), now=NOW).article
    except Quarantine:
        return None  # not an article (empty extraction): counted apart
    return article.access, article.provenance.fields["access"]


def test_access_on_the_real_corpus(record_property):
    if not (CORPUS / "pages").is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    counts: dict[str, Counter[str]] = {"pages": Counter(), "news-metadata": Counter()}
    sources: Counter[str] = Counter()
    wrong: list[str] = []
    for folder, name, body in corpus_pages():
        found = access_of(name, body)
        if found is None:
            counts[folder]["not an article"] += 1
            continue
        access, source = found
        counts[folder][access] += 1
        sources[source] += 1
        html = body.decode("utf-8", "replace")
        if _NOT_FREE.search(html) and access != "paywalled":
            wrong.append(f"{folder}/{name}: declares not free, came out {access}")
        elif not _NOT_FREE.search(html) and _FREE.search(html) and access != "free":
            wrong.append(f"{folder}/{name}: declares free, came out {access} ({source})")
    report = {"counts": {k: dict(v) for k, v in counts.items()}, "sources": dict(sources)}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    record_property("access", report)
    print(json.dumps(report, indent=2))
    assert not wrong, "\n".join(wrong)
    total = sum(sum(c.values()) for c in counts.values())
    assert total == len(corpus_pages()) and all(counts[f]["paywalled"] and counts[f]["free"] for f in counts)
