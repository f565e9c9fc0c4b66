"""``newsflow reindex``: rebuild from the compacted topic, swap the alias, the live indexer follows."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from newsflow import cli
from newsflow.elastic import current_generation, ensure_index, generation_indices, make_es
from newsflow.kafka_io import make_admin
from processors.index.reindex import reindex, reindex_group
from tests.processors.index.helpers import all_docs, make_article, make_runner, produce

pytestmark = pytest.mark.integration


def alias_indices(s) -> list[str]:
    es = make_es(s)
    try:
        return sorted(es.indices.get_alias(name=s.es_index).body)
    finally:
        es.close()


def ids_behind_alias(s) -> Counter:
    return Counter(d["_id"] for d in all_docs(s, index=s.es_index))


def test_reindex_rebuilds_from_kafka_swaps_the_alias_and_the_live_indexer_follows(make_settings):
    s = make_settings()
    alias, target = s.es_index, f"{s.es_index}-v2"
    march = [make_article(first_seen_at=datetime(2024, 3, 5, tzinfo=UTC)) for _ in range(3)]
    april = [make_article(first_seen_at=datetime(2024, 4, 2, tzinfo=UTC)) for _ in range(2)]
    produce(s, march + april)
    make_runner(s).run(idle_exit_s=3)
    assert alias_indices(s) == [f"{alias}-2024.03", f"{alias}-2024.04"]

    late = [make_article(first_seen_at=datetime(2024, 4, 20, tzinfo=UTC))]
    straggler = f"{alias}-2024.09"
    phases: list[str] = []

    def phase(msg: str) -> None:
        phases.append(msg)
        if msg.startswith("swapping"):
            # The live indexer still writes to the old generation right before the swap...
            produce(s, late)
            make_runner(s).run(idle_exit_s=2)
        if msg.startswith("catching up"):
            # ...and a lagging one creates an old-generation month index with the alias after it.
            es = make_es(s)
            ensure_index(es, straggler, alias)
            es.close()

    progress: list[tuple[int, int]] = []
    report = reindex(s, target, progress=lambda d, t: progress.append((d, t)), phase=phase)

    everything = march + april + late
    assert (report.previous, report.target, report.indexed) == (alias, target, len(everything))
    assert report.caught_up == 1
    assert alias_indices(s) == [f"{target}-2024.03", f"{target}-2024.04"]  # straggler removed
    assert ids_behind_alias(s) == Counter(a.id for a in everything)
    assert {d["_index"].rsplit("-", 1)[0] for d in all_docs(s, index=alias)} == {target}
    assert progress[-1][0] == progress[-1][1] > 0
    assert report.old_indices == [f"{alias}-2024.03", f"{alias}-2024.04", straggler]  # kept, out of the alias
    admin = make_admin(s)
    try:
        assert reindex_group(s, target) not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()

    # The live indexer looks the generation up: a new month lands in the new generation, with the alias.
    may = make_article(first_seen_at=datetime(2024, 5, 1, tzinfo=UTC))
    produce(s, [may])
    make_runner(s).run(idle_exit_s=3)
    es = make_es(s)
    try:
        assert current_generation(es, alias) == target
        assert generation_indices(es, alias) == [f"{alias}-2024.03", f"{alias}-2024.04", straggler]
    finally:
        es.close()
    assert f"{target}-2024.05" in alias_indices(s)
    assert ids_behind_alias(s) == Counter(a.id for a in [*everything, may])

    with pytest.raises(ValueError, match="already the current generation"):
        reindex(s, target)
    with pytest.raises(ValueError, match="must be"):
        reindex(s, "other-v3")


def test_reindex_command_reports_and_refuses_to_overwrite(make_settings, monkeypatch, capsys):
    s = make_settings()
    articles = [make_article() for _ in range(3)]
    produce(s, articles)
    for name in ("es_url", "es_index", "kafka_bootstrap", "topic_enriched", "topic_dlq", "group_prefix"):
        monkeypatch.setenv(f"NEWSFLOW_{name.upper()}", str(getattr(s, name)))
    target = f"{s.es_index}-v7"

    assert cli.main(["reindex", "--to", target, "--json"]) == 0  # from Kafka alone: no live indexer ran
    report = json.loads(capsys.readouterr().out)
    assert report["indexed"] == 3 and report["target_indices"] == [f"{target}-2024.03"]
    assert ids_behind_alias(s) == Counter(a.id for a in articles)

    es = make_es(s)
    try:
        ensure_index(es, f"{s.es_index}-v8-2024.03", None)  # leftovers of some earlier attempt
    finally:
        es.close()
    assert cli.main(["reindex", "--to", f"{s.es_index}-v8"]) == 2
    assert "already has indices" in capsys.readouterr().err
