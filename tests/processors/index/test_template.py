"""The index template against the Article schema, without Elasticsearch."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from newsflow.elastic import ILM_POLICY_FILE, TEMPLATE_FILE, load_ilm_policy, load_template
from newsflow.schema import Article
from newsflow.settings import Settings

LUCENE_MAX_TERM_BYTES = 32766


def flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every mapped field by dotted path (sub-fields ``fields`` included)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        out[path] = spec
        if "properties" in spec:
            out |= flatten(spec["properties"], f"{path}.")
        for sub, subspec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = subspec
    return out


def model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field path of a pydantic model, nested models and lists of models included."""
    out = set()
    for name, field in model.model_fields.items():
        out.add(f"{prefix}{name}")
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            inner = typing.get_args(arg) or (arg,)
            for t in inner:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    out |= model_paths(t, f"{prefix}{name}.")
    return out


def mapping(settings: Settings | None = None) -> dict[str, Any]:
    return load_template(settings or Settings())["template"]["mappings"]


def test_every_article_field_is_mapped_and_nothing_else_is_dynamic():
    m = mapping()
    assert m["dynamic"] == "strict"
    fields = flatten(m["properties"])
    missing = model_paths(Article) - set(fields)
    assert not missing, f"Article fields without a mapping: {sorted(missing)}"
    assert "indexed_at" in fields and fields["indexed_at"]["type"] == "date"


def test_field_types_the_issue_asks_for():
    f = flatten(mapping()["properties"])
    assert f["quotes"]["type"] == "nested"
    assert f["quotes.speaker"]["type"] == "keyword" and f["quotes.text"]["type"] == "text"
    for date in ("published_at", "fetched_at", "indexed_at"):
        assert f[date]["type"] == "date"
    for count in ("word_count", "reading_time_s"):
        assert f[count]["type"] == "integer"
    for facet in ("source", "site_name", "host", "language", "authors", "author", "persons", "organizations", "places",
                  "keywords", "story_id", "feed_url", "canonical_url", "access"):
        assert f[facet]["type"] == "keyword", facet
        assert f[facet].get("doc_values", True), f"{facet} must be aggregatable"


def test_every_keyword_is_guarded_against_the_lucene_term_limit():
    """ignore_above counts characters; a character is at most 4 bytes in UTF-8."""
    for path, spec in flatten(mapping()["properties"]).items():
        if spec.get("type") in ("keyword", "flattened"):
            assert "ignore_above" in spec, f"{path} has no ignore_above"
            assert spec["ignore_above"] * 4 <= LUCENE_MAX_TERM_BYTES, path


def test_text_fields_use_the_configured_analyzer():
    for analyzer in ("newsflow_text", "english"):
        fields = flatten(mapping(Settings(es_text_analyzer=analyzer))["properties"])
        texts = {p: s for p, s in fields.items() if s.get("type") == "text"}
        assert {"title", "text", "description", "quotes.text"} <= set(texts)
        assert all(s["analyzer"] == analyzer for s in texts.values()), analyzer
    local = load_template(Settings())["template"]["settings"]["analysis"]["analyzer"]["newsflow_text"]
    assert local == {"type": "standard", "stopwords": "_english_"}  # no analysis-common needed


def test_template_is_versioned_and_carries_no_alias():
    raw = json.loads(TEMPLATE_FILE.read_text())
    body = load_template(Settings(es_index="news"))
    assert body["version"] == raw["template_version"] >= 2
    assert body["template"]["mappings"]["_meta"]["newsflow_template_version"] == body["version"]
    assert body["index_patterns"] == ["news-*"]
    assert "aliases" not in body["template"]  # the indexer adds the alias itself (see newsflow/elastic.py)
    assert "{{" not in json.dumps(body)


def test_ilm_is_optional_and_never_rolls_over_or_freezes_writes():
    assert "index.lifecycle.name" not in load_template(Settings())["template"]["settings"]
    with_ilm = load_template(Settings(es_ilm_policy="newsflow-articles"))
    assert with_ilm["template"]["settings"]["index.lifecycle.name"] == "newsflow-articles"
    policy = load_ilm_policy(ILM_POLICY_FILE)
    actions = {a for phase in policy["phases"].values() for a in phase["actions"]}
    # Routing is by first_seen_at month: a rollover would break it, and an old month must stay writable.
    assert not actions & {"rollover", "readonly", "delete", "freeze", "searchable_snapshot"}
    assert policy["phases"]["hot"]["min_age"] == "0ms"


def test_shards_and_replicas_are_settings_not_fixed_in_the_template():
    raw = json.loads(TEMPLATE_FILE.read_text())["template"]["settings"]
    assert "number_of_shards" not in raw and "number_of_replicas" not in raw
    local = load_template(Settings())["template"]["settings"]
    assert (local["number_of_shards"], local["number_of_replicas"]) == (1, 0)
    cluster = load_template(Settings(es_shards=3, es_replicas=2))["template"]["settings"]
    assert (cluster["number_of_shards"], cluster["number_of_replicas"]) == (3, 2)


@pytest.mark.integration
def test_replicas_and_shards_reach_new_and_existing_indices(make_settings):
    """On the real Elasticsearch: the template carries es_shards/es_replicas, and `newsflow topology`
    (apply_template) raises the replicas of indices that already exist (shards are fixed at creation)."""
    from newsflow.elastic import apply_template, ensure_index, make_es

    s = make_settings()  # the topology applied with the defaults: 1 shard, 0 replicas
    cluster = Settings(**(s.model_dump() | {"es_shards": 2, "es_replicas": 1}))
    es = make_es(s)
    try:
        existing = f"{s.es_index}-2024.01"
        ensure_index(es, existing, s.es_index)
        apply_template(es, cluster)
        created = f"{s.es_index}-2024.02"
        ensure_index(es, created, s.es_index)
        got = {name: body["settings"]["index"] for name, body in
               es.indices.get_settings(index=f"{s.es_index}-*").body.items()}
    finally:
        es.close()
    assert (got[existing]["number_of_shards"], got[existing]["number_of_replicas"]) == ("1", "1")
    assert (got[created]["number_of_shards"], got[created]["number_of_replicas"]) == ("2", "1")
