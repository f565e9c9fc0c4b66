"""The indexer stage: articles.enriched -> Elasticsearch (indexer, sink, bulk rules), reindex and search."""
