"""Indexer, index design, search, reindex and Kibana tests."""
