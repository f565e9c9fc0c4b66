"""Secrets (ES password / API key, Kafka SASL password) never appear in logs or `newsflow status`."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys

import pytest
import structlog
from elastic_transport import ConnectionError as ESConnectionError

from newsflow.elastic import make_es
from newsflow.kafka_io import common_config
from newsflow.logs import MASK, Redactor, configure_logging, secret_values
from newsflow.schema import RawArticle, article_id
from newsflow.settings import REPO_ROOT, Settings
from tests.ops.helpers import closed_port, env_for, newsflow

ES_PASSWORD = "Es-Pa55-7f3e1c"
ES_API_KEY = "ApiK3y-9d2c0b-secret"
SASL_PASSWORD = "Sasl-Pw-41ab77"
SECRETS = (ES_PASSWORD, ES_API_KEY, SASL_PASSWORD, base64.b64encode(f"elastic:{ES_PASSWORD}".encode()).decode())


def revalidated(s: Settings, **update) -> Settings:
    return Settings(**(s.model_dump() | update))  # model_copy(update=...) would skip validation


def with_secrets(base: Settings, **more) -> Settings:
    host = base.es_url.split("//", 1)[1]
    return revalidated(base, **{
        "es_url": f"http://elastic:{ES_PASSWORD}@{host}", "es_username": "elastic",
        "es_password": ES_PASSWORD, "kafka_sasl_username": "newsflow", "kafka_sasl_password": SASL_PASSWORD,
    } | more)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret[:4]}… leaked"


# --- the redactor ----------------------------------------------------------------------------------
def test_redactor_masks_values_fields_urls_and_nested_data():
    s = Settings(es_password=ES_PASSWORD, es_username="elastic", es_api_key=ES_API_KEY,
                 kafka_sasl_password=SASL_PASSWORD)
    r = Redactor(secret_values(s))
    assert r.text(f"auth failed for {ES_API_KEY}!") == f"auth failed for {MASK}!"
    assert r.text("GET http://bob:hunter2@es:9200/_bulk") == f"GET http://bob:{MASK}@es:9200/_bulk"
    event = {"cfg": {"sasl_plain_password": "anything", "bootstrap_servers": ["k:9092"]},
             "headers": [("authorization", "Basic " + SECRETS[3])], "api_key": "x", "n": 3, "flag": True}
    out = r(None, "info", event)
    assert out["cfg"] == {"sasl_plain_password": MASK, "bootstrap_servers": ["k:9092"]}
    assert out["api_key"] == MASK and out["n"] == 3 and out["flag"] is True
    assert_no_secret(json.dumps(out))


def test_nothing_secret_reaches_the_log_whatever_path_it_takes():
    s = with_secrets(Settings(), es_url=f"http://elastic:{ES_PASSWORD}@127.0.0.1:{closed_port()}",
                     es_api_key=ES_API_KEY)
    out = io.StringIO()
    configure_logging(revalidated(s, log_level="DEBUG", log_format="json"), stream=out)
    try:
        log = structlog.get_logger("test")
        log.info("settings", **s.model_dump())
        log.info("kafka config", cfg=common_config(revalidated(s, kafka_security_protocol="SASL_PLAINTEXT",
                                                               kafka_sasl_mechanism="PLAIN")))
        logging.getLogger("lib").warning("login %s:%s refused", "newsflow", SASL_PASSWORD)
        logging.getLogger("lib").info("request", extra={"url": s.es_url, "password": ES_PASSWORD})
        es = make_es(s, request_timeout=1)
        with pytest.raises(ESConnectionError):
            es.info()  # a real failing request: elastic_transport logs it at DEBUG/WARNING
        es.close()
        try:
            raise RuntimeError(f"cannot connect with {ES_API_KEY} to {s.es_url}")
        except RuntimeError:
            log.exception("traceback with secrets")
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    text = out.getvalue()
    assert len(text.splitlines()) >= 6 and "traceback with secrets" in text and "RuntimeError" in text
    assert_no_secret(text)


# --- the real commands -------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("auth", ["basic", "api_key"])
def test_status_and_config_never_show_secrets(make_settings, tmp_path, auth):
    base = make_settings(state_dir=tmp_path)
    s = with_secrets(base, es_api_key=ES_API_KEY if auth == "api_key" else None)
    outputs = []
    for args in (["status", "--json"], ["status"], ["config"]):
        done = subprocess.run([sys.executable, "-m", "newsflow.cli", *args], cwd=REPO_ROOT, env=env_for(s),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    report = json.loads(outputs[0])
    assert report["elasticsearch"]["ok"], report["elasticsearch"]  # it really talked to ES with the credentials
    assert report["connection"]["es_auth"] == ("api key" if auth == "api_key" else "basic (elastic)")
    assert MASK in report["connection"]["es_url"]
    for text in outputs:
        assert_no_secret(text)


@pytest.mark.integration
def test_stage_debug_logs_never_show_secrets(make_settings, tmp_path):
    """Processor and indexer at DEBUG (kafka-python, urllib3, elastic_transport chatter included)."""
    base = make_settings(state_dir=tmp_path)
    s = with_secrets(base, log_level="DEBUG", log_format="json")
    from newsflow.kafka_io import make_producer

    url = "https://kestrel.example/redaction.html"
    body = (REPO_ROOT / "newsflow" / "demo_site" / "ferry-returns.html").read_bytes()
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    raw = RawArticle(id=article_id(url), url=url, canonical_url=url, final_url=url, fetched_at=now,
                     first_seen_at=now, body_b64=RawArticle.encode_body(body))
    p = make_producer(base)
    p.send(base.topic_raw, key=raw.id.encode(), value=raw.to_bytes())
    p.close()
    log = tmp_path / "stages.log"
    for stage in ("process", "index"):
        proc = newsflow(s, stage, "--idle-exit", "4", stderr=log)
        assert proc.wait(timeout=180) == 0
    text = log.read_text()
    assert '"level": "debug"' in text and raw.id in text  # verbose, and it did handle the article
    es = make_es(base)
    es.indices.refresh(index=base.es_index)
    assert es.count(index=base.es_index)["count"] == 1
    es.close()
    assert_no_secret(text)
