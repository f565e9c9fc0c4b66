"""Ingest tests: pure rules (table-driven), the fetcher and jobs against FixtureSite, the poller on real Kafka."""
