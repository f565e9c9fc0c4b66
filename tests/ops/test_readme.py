"""README stays in sync with the settings model and the Makefile; settings errors are friendly."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from newsflow.commands import README_TABLE_BEGIN, README_TABLE_END, readme_with_table
from newsflow.settings import REPO_ROOT, Settings, settings_table

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"


def makefile_targets() -> list[str]:
    return re.findall(r"^([a-zA-Z_-]+):.*?## ", MAKEFILE.read_text(), flags=re.M)


def test_readme_settings_table_is_generated_from_the_model():
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text, settings_table()) == text, (
        "README.md's configuration table is out of date: run `.venv/bin/newsflow config --update-readme`"
    )
    block = text.split(README_TABLE_BEGIN)[1].split(README_TABLE_END)[0]
    for name in Settings.model_fields:
        assert f"`NEWSFLOW_{name.upper()}`" in block


def test_readme_table_update_replaces_only_the_block():
    text = f"intro\n{README_TABLE_BEGIN}\nold\n{README_TABLE_END}\noutro\n"
    assert readme_with_table(text, "| new |\n") == f"intro\n{README_TABLE_BEGIN}\n| new |\n{README_TABLE_END}\noutro\n"
    with pytest.raises(ValueError):
        readme_with_table("no markers", "x")


def test_every_make_target_is_in_help_and_in_the_readme():
    targets = makefile_targets()
    required = {"install", "up", "down", "status", "logs", "run", "demo", "stop", "test", "test-unit", "test-chaos",
                "bench", "topics", "templates", "replay", "clean", "help"}
    assert required <= set(targets)
    shown = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout
    shown = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    readme = README.read_text(encoding="utf-8")
    for t in targets:
        assert re.search(rf"\b{re.escape(t)}\b", shown), f"`make help` does not list {t}"
        if t != "help":
            assert f"make {t}" in readme, f"README's Makefile table lacks `make {t}`"
    for var in ("KAFKA_HOST", "KAFKA_PORT", "ES_HOST", "ES_PORT", "METRICS_PORT", "FEEDS"):
        assert var in shown


def test_invalid_settings_stop_the_cli_with_one_friendly_line_each(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "NEWSFLOW_TOPIC_PARTITIONS": "zero", "NEWSFLOW_ES_URL": "127.0.0.1:9200",
           "NEWSFLOW_ES_PASSWORD": "hunter2-secret", "NEWSFLOW_STATE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "newsflow.cli", "config"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    err = done.stderr
    assert "NEWSFLOW_TOPIC_PARTITIONS (got 'zero'): Input should be a valid integer" in err
    assert "NEWSFLOW_ES_URL (got '127.0.0.1:9200'): must start with http:// or https://" in err
    assert "errors.pydantic.dev" not in err and "Traceback" not in err
    assert "hunter2-secret" not in err


def test_unknown_yaml_key_names_the_file(tmp_path):
    cfg = tmp_path / "newsflow.yaml"
    cfg.write_text("topic_partitions: 3\nmetrics_prot: 1\n")
    done = subprocess.run([sys.executable, "-m", "newsflow.cli", "config"], cwd=REPO_ROOT,
                          env={"PATH": "/usr/bin:/bin", "NEWSFLOW_CONFIG": str(cfg)}, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"metrics_prot (in {cfg}): unknown setting" in done.stderr
