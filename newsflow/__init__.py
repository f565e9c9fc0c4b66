"""Newsflow: feeds -> Kafka -> processors -> Elasticsearch."""

__version__ = "0.1.0"
