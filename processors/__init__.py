"""Processors: the processor stage (clean + enrich) and the indexer stage (write to Elasticsearch)."""
