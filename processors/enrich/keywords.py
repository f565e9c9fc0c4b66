"""Keywords with YAKE (unsupervised, per language), then overlap de-duplication."""

from __future__ import annotations

import re

import yake

TOP = 10
CANDIDATES = 20
NGRAM = 2
MAX_CHARS = 4_000


def make_extractor(language: str) -> yake.KeywordExtractor:
    return yake.KeywordExtractor(lan=language, n=NGRAM, dedupLim=0.9, top=CANDIDATES)


def _tokens(phrase: str) -> set[str]:
    return set(re.findall(r"\w+", phrase.casefold()))


def dedupe(ranked: list[str], top: int = TOP) -> list[str]:
    """Keep the best-ranked phrase of every group of overlapping ones: a phrase is dropped when
    its words are a subset or superset of a kept phrase's, or share at least half of them."""
    kept: list[tuple[str, set[str]]] = []
    for phrase in ranked:
        words = _tokens(phrase)
        if not words:
            continue
        if any(words <= k or k <= words or len(words & k) * 2 >= min(len(words), len(k)) for _p, k in kept):
            continue
        kept.append((phrase, words))
        if len(kept) >= top:
            break
    return [p for p, _w in kept]


def keywords(extractor: yake.KeywordExtractor, text: str) -> list[str]:
    """Best ``TOP`` keywords of the first ``MAX_CHARS`` characters (YAKE: lower score = better)."""
    scored = extractor.extract_keywords(text[:MAX_CHARS])
    return dedupe([kw for kw, _score in sorted(scored, key=lambda kv: kv[1])])
