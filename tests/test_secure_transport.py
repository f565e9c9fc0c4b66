"""Secured transports, for real.

* Kafka: the pipeline runs through a SASL_SSL listener (SCRAM-SHA-512 over mutual TLS, certificates
  from a CA made by the test) of a broker of this session (``sasl_kafka``, tests/conftest.py). Wrong
  credentials or certificates fail within seconds with an error that names the setting to fix and
  never contains a secret.
* Elasticsearch: the client's TLS settings against a local HTTPS server with the test CA's
  certificate (the local Elasticsearch distribution has no TLS): the CA file is used, verification
  is on by default and can be switched off, the API key is sent.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elastic_transport import TlsError
from pydantic import ValidationError

from newsflow.elastic import make_es
from newsflow.kafka_io import make_admin
from newsflow.kafka_preflight import KafkaSecurityError
from newsflow.settings import Settings
from newsflow.topology import namespaced
from tests.support.stages import newsflow
from tests.support.tls import Pki, make_ca
from tests.test_pipeline_e2e import serve_feed

EX_CONFIG = 78


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# --- Kafka SASL_SSL -----------------------------------------------------------------------------------
@pytest.mark.integration
def test_pipeline_runs_through_sasl_ssl(site, tmp_path, make_settings, sasl_kafka):
    """poller -> processor -> indexer as the real commands, every Kafka client on the SASL_SSL
    listener (the only bootstrap address they get), logging at DEBUG: records flow, no secret logged."""
    settings = make_settings(feeds_file=serve_feed(site, tmp_path), enrich=False, log_level="DEBUG",
                             log_format="json", state_dir=tmp_path, **sasl_kafka.client_settings())
    log = tmp_path / "stages.log"
    for args in (["poll", "--once"], ["process", "--idle-exit", "3"], ["index", "--idle-exit", "3"]):
        proc = newsflow(settings, *args, stderr=log)
        assert proc.wait(timeout=180) == 0, f"newsflow {' '.join(args)} failed:\n{_read(log)[-3000:]}"
    es = make_es(settings)
    try:
        es.indices.refresh(index=settings.es_index)
        assert es.count(index=settings.es_index)["count"] == 2
    finally:
        es.close()
    text = _read(log)
    assert "Authenticated as newsflow via SASL / SCRAM-SHA-512" in text  # kafka-python's own word for it
    assert sasl_kafka.password not in text


@pytest.mark.integration
@pytest.mark.parametrize("args", [["topology"], ["poll", "--once"], ["process"], ["index"]])
def test_a_wrong_password_fails_fast_naming_the_setting_never_the_secret(args, stack, sasl_kafka, tmp_path):
    wrong = f"wrong-{secrets.token_hex(10)}"
    settings = namespaced(stack, f"t{secrets.token_hex(5)}", metrics_port=0, state_dir=tmp_path,
                          log_level="DEBUG", log_format="json",
                          **sasl_kafka.client_settings(kafka_sasl_password=wrong))
    log = tmp_path / "stage.log"
    started = time.monotonic()
    proc = newsflow(settings, *args, stderr=log, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    text = out.decode(errors="replace") + _read(log)
    assert proc.returncode == EX_CONFIG, text[-3000:]
    assert elapsed < 20, f"took {elapsed:.1f}s (kafka-python alone would retry for its 30 s bootstrap timeout)"
    assert "rejected the SASL SCRAM-SHA-512 login of user 'newsflow'" in text
    assert "NEWSFLOW_KAFKA_SASL_PASSWORD" in text
    assert wrong not in text and sasl_kafka.password not in text


OTHER_CA = "another CA"  # replaced by a CA the test makes, which never signed the broker's certificate
NO_CLIENT_CERT = {"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}


@pytest.mark.integration
@pytest.mark.parametrize(("change", "named", "says"), [
    ({"kafka_sasl_password": "wrong"}, "NEWSFLOW_KAFKA_SASL_PASSWORD", "rejected the SASL SCRAM-SHA-512 login"),
    ({"kafka_sasl_username": "nobody"}, "NEWSFLOW_KAFKA_SASL_USERNAME", "login of user 'nobody'"),
    ({"kafka_sasl_mechanism": "SCRAM-SHA-256"}, "NEWSFLOW_KAFKA_SASL_MECHANISM", "it offers SCRAM-SHA-512"),
    (NO_CLIENT_CERT, "NEWSFLOW_KAFKA_SSL_CERTFILE", "wants a client certificate"),
    ({"kafka_ssl_cafile": OTHER_CA}, "NEWSFLOW_KAFKA_SSL_CAFILE", "does not verify"),
    ({"kafka_ssl_cafile": None}, "NEWSFLOW_KAFKA_SSL_CAFILE", "unset: the system's CAs"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_cafile": None} | NO_CLIENT_CERT,
     "NEWSFLOW_KAFKA_SECURITY_PROTOCOL", "no Kafka response"),
], ids=["password", "user", "mechanism", "no-client-cert", "other-ca", "system-cas", "no-tls"])
def test_each_refusal_names_the_setting_to_fix(change, named, says, sasl_kafka, tmp_path):
    if change.get("kafka_ssl_cafile") == OTHER_CA:
        change = change | {"kafka_ssl_cafile": make_ca(tmp_path, cn="Somebody else's CA")}
    settings = Settings(**sasl_kafka.client_settings(**change))
    started = time.monotonic()
    with pytest.raises(KafkaSecurityError) as refused:
        make_admin(settings).close()  # the factory every command uses
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert named in message and says in message, message
    assert sasl_kafka.password not in message


@pytest.mark.integration
def test_the_right_settings_pass_and_make_a_working_client(sasl_kafka):
    admin = make_admin(Settings(**sasl_kafka.client_settings()))
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


@pytest.mark.parametrize(("change", "complaint"), [
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
     "NEWSFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs NEWSFLOW_KAFKA_SASL_MECHANISM, NEWSFLOW_KAFKA_SASL_PASSWORD"),
    ({"kafka_ssl_cafile": "CA"}, "NEWSFLOW_KAFKA_SSL_CAFILE set, but NEWSFLOW_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "CA"}, "needs both NEWSFLOW_KAFKA_SSL_CERTFILE"),
    ({"es_ca_certs": "CA"}, "NEWSFLOW_ES_URL must be https://"),
])
def test_inconsistent_security_settings_are_refused_at_start(change, complaint, pki):
    change = {k: (pki.ca if v == "CA" else v) for k, v in change.items()}
    with pytest.raises(ValidationError, match=re.escape(complaint)):
        Settings(**change)


# --- Elasticsearch TLS client configuration -----------------------------------------------------------
class FakeTlsES:
    """An HTTPS server on 127.0.0.1 with the test CA's server certificate that answers ``GET /`` as
    Elasticsearch does, and keeps the headers it received."""

    def __init__(self, pki: Pki):
        headers = self.headers = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                headers.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps({"name": "fake", "cluster_name": "fake", "cluster_uuid": "x",
                                   "version": {"number": "9.5.4", "build_flavor": "default"},
                                   "tagline": "You Know, for Search"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert("server"), pki.key("server"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTlsES:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_es(pki) -> Iterator[FakeTlsES]:
    with FakeTlsES(pki) as es:
        yield es


def test_es_client_trusts_es_ca_certs_and_sends_the_api_key(pki, tls_es):
    key = f"key-{secrets.token_hex(8)}"
    es = make_es(Settings(es_url=tls_es.url, es_ca_certs=pki.ca, es_api_key=key))
    try:
        assert es.info()["tagline"] == "You Know, for Search"
    finally:
        es.close()
    assert tls_es.headers[-1]["authorization"] == f"ApiKey {key}"


def test_es_client_refuses_a_certificate_no_trusted_ca_signed(tls_es):
    es = make_es(Settings(es_url=tls_es.url))  # the system's CAs never signed the test CA
    try:
        with pytest.raises(TlsError) as refused:
            es.info()
        assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value)
    finally:
        es.close()
    assert not tls_es.headers


def test_es_verify_certs_off_accepts_any_certificate(tls_es):
    with pytest.warns(Warning, match="verify_certs=False is insecure"):  # said loudly, at start
        es = make_es(Settings(es_url=tls_es.url, es_verify_certs=False))
    try:
        with pytest.warns(Warning, match="Unverified HTTPS request"):
            assert es.info()["tagline"] == "You Know, for Search"
    finally:
        es.close()
