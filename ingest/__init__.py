"""Ingest: feed pollers that fetch article pages and produce them to ``articles.raw``."""
