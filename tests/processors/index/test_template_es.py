"""A template change on a running deployment: existing indices get the template's new fields."""

from __future__ import annotations

import pytest

from newsflow.elastic import add_new_fields, apply_template, load_template, make_es, new_fields
from tests.processors.index.helpers import make_article, make_runner, produce

pytestmark = pytest.mark.integration


def test_new_fields_is_the_top_level_difference():
    assert new_fields({"a": {"type": "keyword"}, "b": {"type": "date"}}, {"a": {"type": "text"}}) == {
        "b": {"type": "date"}}


def test_an_index_made_before_the_access_field_gets_it_and_takes_the_new_articles(make_settings):
    s = make_settings()
    mappings = load_template(s)["template"]["mappings"]
    before = {k: v for k, v in mappings["properties"].items() if k != "access"}
    index = f"{s.es_index}-2024.03"
    es = make_es(s)
    try:
        es.indices.create(index=index, mappings=mappings | {"properties": before}, aliases={s.es_index: {}})
        apply_template(es, s)
        assert es.indices.get_mapping(index=index)[index]["mappings"]["properties"]["access"] == {
            "type": "keyword", "ignore_above": 16}
        assert add_new_fields(es, s.es_index, mappings["properties"]) == {}  # idempotent
    finally:
        es.close()
    article = make_article(access="paywalled")  # first_seen_at in 2024-03: this very index
    produce(s, [article])
    make_runner(s).run(idle_exit_s=3)
    es = make_es(s)
    try:
        es.indices.refresh(index=index)
        assert es.get(index=index, id=article.id)["_source"]["access"] == "paywalled"
    finally:
        es.close()
