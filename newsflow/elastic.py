"""Elasticsearch client factory, index naming and the index template."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from newsflow.settings import REPO_ROOT, Settings

TEMPLATE_FILE = REPO_ROOT / "deploy" / "elasticsearch" / "articles-template.json"


def make_es(settings: Settings, **overrides: Any) -> Elasticsearch:
    kw: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": False, "max_retries": 0}
    if settings.es_api_key is not None:
        kw["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password is not None:
        kw["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    kw.update(overrides)
    return Elasticsearch(settings.es_url, **kw)


def index_name(alias: str, first_seen_at: datetime) -> str:
    """Monthly index for a document. Routed by ``first_seen_at``, which never changes for a URL,
    so re-deliveries with edited ``published_at`` always land on the same ``_id`` in the same index."""
    return f"{alias}-{first_seen_at:%Y.%m}"


def load_template(settings: Settings, path: Path = TEMPLATE_FILE) -> dict[str, Any]:
    raw = path.read_text(encoding="utf-8")
    raw = raw.replace("{{ALIAS}}", settings.es_index).replace("{{TEXT_ANALYZER}}", settings.es_text_analyzer)
    doc = json.loads(raw)
    doc.pop("_comment", None)
    doc["version"] = doc.pop("template_version")
    return doc


def apply_template(es: Elasticsearch, settings: Settings) -> None:
    """Create or update the index template. Idempotent."""
    body = load_template(settings)
    es.indices.put_index_template(name=settings.es_index, **body)
