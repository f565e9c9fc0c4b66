"""Elasticsearch client factory, index layout, the index template and the alias swap.

Layout::

    read alias  articles ──▶ articles-2024.03  articles-2024.04  ...      generation "articles"
                             articles-v2-2024.03  articles-v2-2024.04 ... generation "articles-v2"
                                                                          (built by `newsflow reindex`)

* A *generation* is a family of monthly indices ``<generation>-YYYY.MM``. The first one is named
  like the alias; ``newsflow reindex --to articles-v2`` builds the next one from Kafka.
* The read alias points at every index of exactly one generation, the *current* one. The live
  indexer asks which one before each bulk write, so after an alias swap it writes to the new one.
* A document's month is the UTC month of its ``first_seen_at``, which never changes for a URL
  (the poller keeps it in its compacted state). The same ``_id`` (sha256 of the canonical URL)
  therefore always lands in the same index: a re-delivery overwrites, it never duplicates, and no
  search is needed before a write.
* The template (``newsflow/data/articles-template.json``, package data) gives every generation its
  mapping (pattern ``<alias>-*``) but no alias: the indexer creates each monthly index itself,
  with the alias when it belongs to the current generation, without it while a reindex builds
  the next generation, so searches never see two copies of an article.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from newsflow.liveness import ES_REQUEST_TIMEOUT_S
from newsflow.settings import PACKAGE_DATA, Settings

log = logging.getLogger(__name__)

TEMPLATE_FILE = PACKAGE_DATA / "articles-template.json"
ILM_POLICY_FILE = PACKAGE_DATA / "ilm-policy.json"
_MONTHLY = re.compile(r"^(?P<generation>.+)-(?P<month>\d{4}\.\d{2})$")
_GENERATION = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def make_es(settings: Settings, **overrides: Any) -> Elasticsearch:
    """The client: API key (else basic auth) and, for https:// URLs, certificate verification against
    ``es_ca_certs`` (else the system's CAs) unless ``es_verify_certs`` is off."""
    kw: dict[str, Any] = {"request_timeout": ES_REQUEST_TIMEOUT_S, "retry_on_timeout": False, "max_retries": 0}
    if settings.es_url.startswith("https://"):
        kw["verify_certs"] = settings.es_verify_certs
        if settings.es_ca_certs is not None:
            kw["ca_certs"] = str(settings.es_ca_certs)
    if settings.es_api_key is not None:
        kw["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password is not None:
        kw["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    kw.update(overrides)
    return Elasticsearch(settings.es_url, **kw)


# --- naming (pure) ---------------------------------------------------------------------------
def month_of(first_seen_at: datetime) -> str:
    """``YYYY.MM`` of the instant in UTC (a naive datetime is taken as UTC)."""
    if first_seen_at.tzinfo is not None:
        first_seen_at = first_seen_at.astimezone(UTC)
    return f"{first_seen_at:%Y.%m}"


def index_name(generation: str, first_seen_at: datetime) -> str:
    """Monthly index of a document: routed by ``first_seen_at``, which never changes for a URL,
    so re-deliveries with an edited ``published_at`` land on the same ``_id`` in the same index."""
    return f"{generation}-{month_of(first_seen_at)}"


def split_index(name: str) -> tuple[str, str] | None:
    """``articles-v2-2024.03`` -> ``("articles-v2", "2024.03")``; None if not a monthly index."""
    m = _MONTHLY.match(name)
    return (m["generation"], m["month"]) if m else None


def check_generation(alias: str, generation: str) -> str:
    """A generation name must be a valid index-name prefix that the template covers."""
    if not _GENERATION.match(generation) or generation.endswith("-"):
        raise ValueError(f"{generation!r} is not a valid index name prefix (lowercase letters, digits, -_.)")
    if generation != alias and not generation.startswith(f"{alias}-"):
        raise ValueError(f"generation {generation!r} must be {alias!r} or start with {alias + '-'!r} "
                         f"(the template covers {alias}-*)")
    if split_index(generation):
        raise ValueError(f"{generation!r} looks like a monthly index itself; pick a name like {alias}-v2")
    return generation


# --- generations and the alias -----------------------------------------------------------------
def generations(index_names: Iterable[str]) -> set[str]:
    return {parts[0] for n in index_names if (parts := split_index(n))}


def current_generation(es: Elasticsearch, alias: str) -> str:
    """The generation the read alias points at; the alias name itself before any index exists.

    If the alias spans several generations (someone edited it by hand), the greatest name wins
    and a warning is logged: ``newsflow reindex`` always leaves exactly one.
    """
    try:
        body = es.indices.get_alias(name=alias).body
    except NotFoundError:
        return alias
    gens = generations(body)
    if not gens:
        return alias
    if len(gens) > 1:
        log.warning("alias %s spans generations %s; writing to %s", alias, sorted(gens), max(gens))
    return max(gens)


def generation_indices(es: Elasticsearch, generation: str) -> list[str]:
    """Every monthly index of one generation (``articles`` does not include ``articles-v2-*``)."""
    body = es.indices.get(index=f"{generation}-*", allow_no_indices=True, ignore_unavailable=True,
                          expand_wildcards="open,closed").body
    return sorted(n for n in body if (parts := split_index(n)) and parts[0] == generation)


def ensure_index(es: Elasticsearch, name: str, alias: str | None) -> bool:
    """Create a monthly index (settings and mappings from the template), with the read alias if
    given. Returns True if it was created here, False if it already existed. Idempotent and safe
    between concurrent indexers: the loser of a creation race gets ``resource_already_exists``."""
    try:
        if alias:
            es.indices.create(index=name, aliases={alias: {}})
        else:
            es.indices.create(index=name)
        log.info("created index %s%s", name, f" (alias {alias})" if alias else "")
        return True
    except BadRequestError as exc:
        if _error_type(exc) == "resource_already_exists_exception":
            return False
        raise


def swap_alias(es: Elasticsearch, alias: str, generation: str) -> dict[str, list[str]]:
    """Point the read alias at every index of ``generation`` and at nothing else, atomically.

    Idempotent: run again it fixes stragglers (an index of the old generation that a lagging
    indexer created with the alias while the swap happened).
    """
    target = generation_indices(es, generation)
    if not target:
        raise ValueError(f"generation {generation!r} has no index: nothing to point {alias!r} at")
    try:
        current = sorted(es.indices.get_alias(name=alias).body)
    except NotFoundError:
        current = []
    remove = [n for n in current if n not in target]
    add = [n for n in target if n not in current]
    actions: list[dict[str, Any]] = [{"remove": {"index": n, "alias": alias}} for n in remove]
    actions += [{"add": {"index": n, "alias": alias}} for n in add]
    if actions:
        es.indices.update_aliases(actions=actions)
        log.info("alias %s now points at generation %s (+%d -%d indices)", alias, generation, len(add), len(remove))
    return {"added": add, "removed": remove}


# --- the template ------------------------------------------------------------------------------
def load_template(settings: Settings, path: Path = TEMPLATE_FILE) -> dict[str, Any]:
    """The index template body for ``put_index_template``, rendered for these settings."""
    raw = path.read_text(encoding="utf-8")
    raw = raw.replace("{{ALIAS}}", settings.es_index).replace("{{TEXT_ANALYZER}}", settings.es_text_analyzer)
    doc = json.loads(raw)
    doc.pop("_comment", None)
    version = doc.pop("template_version")
    doc["version"] = version
    doc["_meta"] = {"newsflow_template_version": version}
    mappings = doc["template"]["mappings"]
    mappings["_meta"] = {"newsflow_template_version": version, "text_analyzer": settings.es_text_analyzer}
    index_settings = doc["template"]["settings"]
    index_settings["number_of_shards"] = settings.es_shards
    index_settings["number_of_replicas"] = settings.es_replicas
    if settings.es_ilm_policy:
        index_settings["index.lifecycle.name"] = settings.es_ilm_policy
    return doc


def load_ilm_policy(path: Path = ILM_POLICY_FILE) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("_comment", None)
    return doc["policy"]


def apply_template(es: Elasticsearch, settings: Settings) -> None:
    """Create or update the index template (and the ILM policy when ``es_ilm_policy`` is set,
    which needs a full Elasticsearch; the local distribution has no ILM). Idempotent.

    A template change applies to indices created afterwards. A new top-level field is also added to
    the existing indices (``add_new_fields``): their mapping is strict, so without it a re-processed
    article carrying the field would be refused there. Any other change needs ``newsflow reindex``."""
    if settings.es_ilm_policy:
        es.ilm.put_lifecycle(name=settings.es_ilm_policy, policy=load_ilm_policy())
    template = load_template(settings)
    es.indices.put_index_template(name=settings.es_index, **template)
    add_new_fields(es, settings.es_index, template["template"]["mappings"]["properties"])
    es.indices.put_settings(index=f"{settings.es_index}-*", settings={"index.number_of_replicas": settings.es_replicas},
                            allow_no_indices=True, expand_wildcards="open")


def new_fields(wanted: dict[str, Any], have: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of ``wanted`` that ``have`` lacks (pure)."""
    return {name: spec for name, spec in wanted.items() if name not in have}


def add_new_fields(es: Elasticsearch, alias: str, properties: dict[str, Any]) -> dict[str, list[str]]:
    """Put the template's new top-level fields into every existing ``<alias>-*`` index (every
    generation). Adding a field is the one mapping change Elasticsearch allows in place; fields that
    exist are left as they are. Returns the fields added per index."""
    mappings = es.indices.get_mapping(index=f"{alias}-*", allow_no_indices=True, ignore_unavailable=True).body
    added: dict[str, list[str]] = {}
    for index, body in sorted(mappings.items()):
        missing = new_fields(properties, body.get("mappings", {}).get("properties", {}))
        if missing:
            es.indices.put_mapping(index=index, properties=missing)
            added[index] = sorted(missing)
            log.info("index %s: added new template fields %s", index, sorted(missing))
    return added


def _error_type(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("type", ""))
    return ""
