"""Newsflow's extracted text against plain ``trafilatura.extract`` on the corpus pages.

Scored as trafilatura scores its evaluation (../shared/corpus/README.md): whitespace runs collapsed,
each ``with`` string found = true positive (else false negative), each ``without`` string found =
false positive (else true negative); a page with no result misses all its ``with`` strings.
Newsflow's text is the ``text`` of the Article that the processor would emit (enrichment off).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import trafilatura

from newsflow.schema import RawArticle, article_id
from newsflow.stage.outcomes import Quarantine
from processors.article import Limits, build_article
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus

PAGES = CORPUS / "pages"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _ws(s: str) -> str:
    return re.sub(r"\s+", " ", s)


@dataclass
class Score:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def add(self, text: str | None, expect: dict) -> None:
        found = _ws(text) if text else None
        for s in expect["with"]:
            if found is not None and _ws(s) in found:
                self.tp += 1
            else:
                self.fn += 1
        for s in expect["without"]:
            if found is not None and _ws(s) in found:
                self.fp += 1
            else:
                self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn)

    def __str__(self) -> str:
        return f"precision {self.precision:.4f} recall {self.recall:.4f} (tp {self.tp} fn {self.fn} fp {self.fp} tn {self.tn})"


def newsflow_text(name: str, url: str | None) -> str | None:
    url = url or f"https://corpus.invalid/{name}"
    raw = RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=NOW,
                     first_seen_at=NOW, body_b64=RawArticle.encode_body((PAGES / name).read_bytes()))
    try:
        return build_article(raw, limits=Limits(), now=NOW).article.text
    except Quarantine:
        return None


def test_newsflow_text_is_no_worse_than_trafilatura(record_property):
    expectations = json.loads((PAGES / "expectations.json").read_text(encoding="utf-8"))
    assert len(expectations) > 300
    ours, theirs = Score(), Score()
    for name, expect in expectations.items():
        body = (PAGES / name).read_bytes()
        theirs.add(trafilatura.extract(body, url=expect["url"]), expect)
        ours.add(newsflow_text(name, expect["url"]), expect)
    print(f"\ntrafilatura.extract: {theirs}\nnewsflow:            {ours}")
    record_property("trafilatura", str(theirs))
    record_property("newsflow", str(ours))
    assert ours.precision >= theirs.precision, (str(ours), str(theirs))
    assert ours.recall >= theirs.recall, (str(ours), str(theirs))
