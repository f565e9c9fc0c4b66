"""Processors: the processor stage (clean + enrich, this package) and the indexer stage (``processors.index``)."""
