"""Duplicates and stories: exact content hash, MinHash signature, story labels via LSH.

* ``content_hash``  sha256 of the clean text: equal hashes are byte-identical articles.
* ``minhash``       MinHash (datasketch, ``NUM_PERM`` permutations) of the text's word 3-shingles,
                    stored on the Article as base64 of little-endian uint32 values.
* ``StoryIndex``    a bounded window of recent articles (``settings.story_window``) in two LSH
                    indexes. An article joins the story of its most similar recent article when

                    - its text is a near-duplicate (estimated Jaccard of shingles >= ``NEAR_DUP``):
                      the same wire copy on several outlets; or
                    - it is about the same thing (Jaccard of its *topic set*, i.e. persons,
                      organisations, places and keyword words, >= ``SAME_TOPIC``, sharing at least
                      ``MIN_SHARED`` of them) and was published within ``STORY_HOURS`` of it;

                    otherwise it starts a story whose id is its own article id. Labels only: no
                    article is ever dropped. Re-processing an article still in the window keeps
                    its story. The oldest article leaves the window first.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM = 64
SHINGLE = 3
NEAR_DUP = 0.5
SAME_TOPIC = 0.4
MIN_SHARED = 4
STORY_HOURS = 72
SEED = 1
SCHEME = "affine32"  # datasketch >= 2.0 permutation scheme; stored signatures depend on it


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shingles(text: str, k: int = SHINGLE) -> set[bytes]:
    words = re.findall(r"\w+", text.casefold())
    if len(words) < k:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)}


def _minhash(items: set[bytes]) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    if items:
        m.update_batch(list(items))
    return m


def text_minhash(text: str) -> MinHash:
    return _minhash(shingles(text))


def encode_signature(m: MinHash) -> str:
    return base64.b64encode(m.hashvalues.astype("<u4").tobytes()).decode("ascii")


def decode_signature(value: str) -> MinHash:
    values = np.frombuffer(base64.b64decode(value), dtype="<u4").astype(np.uint64)
    if len(values) != NUM_PERM:
        raise ValueError(f"signature has {len(values)} values, expected {NUM_PERM}")
    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME, hashvalues=values)


def topic_set(persons: list[str], organizations: list[str], places: list[str], keywords: list[str]) -> set[str]:
    out = {e.casefold() for e in (*persons, *organizations, *places)}
    out |= {w for kw in keywords for w in re.findall(r"\w{3,}", kw.casefold())}
    return out


@dataclass
class _Entry:
    story_id: str
    text: MinHash
    topics: set[str]
    published: datetime | None


class StoryIndex:
    """Story labelling over a bounded window. Not thread-safe; one per processor."""

    def __init__(self, window: int):
        self.window = window
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.text_lsh = MinHashLSH(threshold=NEAR_DUP, num_perm=NUM_PERM)
        self.topic_lsh = MinHashLSH(threshold=SAME_TOPIC, num_perm=NUM_PERM)

    def __len__(self) -> int:
        return len(self.entries)

    def assign(self, article_id: str, signature: MinHash, topics: set[str], published: datetime | None) -> str:
        """The story of ``article_id``; the article enters the window."""
        old = self.entries.get(article_id)
        story = old.story_id if old is not None else self._match(signature, topics, published) or article_id
        self.add(article_id, story, signature, topics, published)
        return story

    def add(self, article_id: str, story_id: str, signature: MinHash, topics: set[str],
            published: datetime | None) -> None:
        """Put a labelled article in the window (also used to seed it from ``articles.enriched``)."""
        self._remove(article_id)
        self.entries[article_id] = _Entry(story_id, signature, topics, published)
        self.text_lsh.insert(article_id, signature)
        self.topic_lsh.insert(article_id, _minhash({t.encode() for t in topics}))
        while len(self.entries) > self.window:
            self._remove(next(iter(self.entries)))

    def _remove(self, article_id: str) -> None:
        if self.entries.pop(article_id, None) is not None:
            self.text_lsh.remove(article_id)
            self.topic_lsh.remove(article_id)

    def _match(self, signature: MinHash, topics: set[str], published: datetime | None) -> str | None:
        best: tuple[float, str] | None = None
        for key in self.text_lsh.query(signature):
            sim = signature.jaccard(self.entries[key].text)
            if sim >= NEAR_DUP and (best is None or sim > best[0]):
                best = (sim, key)
        if best is None and len(topics) >= MIN_SHARED:
            for key in self.topic_lsh.query(_minhash({t.encode() for t in topics})):
                entry = self.entries[key]
                shared = len(topics & entry.topics)
                sim = shared / len(topics | entry.topics)
                if sim >= SAME_TOPIC and shared >= MIN_SHARED and _close_in_time(published, entry.published) \
                        and (best is None or sim > best[0]):
                    best = (sim, key)
        return self.entries[best[1]].story_id if best else None


def _close_in_time(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return True
    return abs((a - b).total_seconds()) <= STORY_HOURS * 3600
