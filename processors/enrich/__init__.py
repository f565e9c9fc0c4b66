"""Enrichment steps. Each module is a small, pure function over the clean text; ``Enricher``
holds the per-worker models (spaCy, py3langid, YAKE) and runs the steps in order, timing each."""
