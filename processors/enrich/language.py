"""Language identification with py3langid (normalised probabilities)."""

from __future__ import annotations

from dataclasses import dataclass

import py3langid
from py3langid.langid import MODEL_FILE, LanguageIdentifier

SAMPLE_CHARS = 5000
MIN_CHARS = 20
MIN_CONFIDENCE = 0.5
VERSION = getattr(py3langid, "__version__", "")


@dataclass(frozen=True)
class Language:
    code: str | None
    confidence: float


def load_identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(identifier: LanguageIdentifier, text: str) -> Language:
    """ISO 639-1 code of the text's first ``SAMPLE_CHARS`` characters; ``None`` when the text is
    too short or the best guess is below ``MIN_CONFIDENCE``."""
    sample = text[:SAMPLE_CHARS]
    if len(sample.strip()) < MIN_CHARS:
        return Language(None, 0.0)
    code, prob = identifier.classify(sample)
    prob = float(prob)
    return Language(code if prob >= MIN_CONFIDENCE else None, round(prob, 4))
