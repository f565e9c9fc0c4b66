"""Newsflow: feeds -> Kafka -> processors -> Elasticsearch."""

from importlib.metadata import PackageNotFoundError, version


def newsflow_version() -> str:
    """The installed distribution's version (pyproject.toml's, via the package metadata)."""
    try:
        return version("newsflow")
    except PackageNotFoundError:
        return "0+unknown"
