"""Shared fixtures. Integration tests talk to the real local Kafka and Elasticsearch (`make up`)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from newsflow.settings import REPO_ROOT, Settings
from tests.support.netguard import LoopbackGuard
from tests.support.secure_kafka import SecureKafka, secure_kafka
from tests.support.site import FixtureSite
from tests.support.tls import Pki, make_pki, tools_missing

CORPUS = Path(os.environ.get("NEWSFLOW_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))
SEED = CORPUS.parent / "seed" / "ukraine-2022-02-09.txt"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[LoopbackGuard]:
    """Safety net for the whole suite: any connect outside 127.0.0.0/8 or ::1 fails the test."""
    guard = LoopbackGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()
    assert not guard.violations, f"non-loopback connect attempted: {guard.violations}"


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    s = FixtureSite().start()
    yield s
    s.stop()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The real local stack; `make test` starts it. Missing services fail loudly, never skip."""
    base = Settings()
    host, _, port = base.kafka_bootstrap.split(",")[0].rpartition(":")
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable at {base.kafka_bootstrap}: run `make up`")
    es_host = base.es_url.split("//", 1)[-1].split("/")[0]
    eh, _, ep = es_host.rpartition(":")
    if not _reachable(eh, int(ep)):
        pytest.fail(f"Elasticsearch is not reachable at {base.es_url}: run `make up`")
    return base


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """The session's test CA, server and client certificates and broker stores (openssl, keytool)."""
    missing = tools_missing()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the TLS tests make their certificates with openssl "
                    "and keytool (from the JDK that runs Kafka)")
    return make_pki(tmp_path_factory.mktemp("pki"), store_password=secrets.token_hex(8))


@pytest.fixture(scope="session")
def sasl_kafka(pki: Pki, tmp_path_factory) -> Iterator[SecureKafka]:
    """A broker of this session alone with a SASL_SSL listener (SCRAM-SHA-512, mutual TLS): see
    tests/support/secure_kafka.py. Stopped and removed at the end; the shared stack is not touched."""
    state = tmp_path_factory.mktemp("sasl-kafka")
    kafka = secure_kafka(pki, state)
    try:
        yield kafka.start()
    finally:
        try:
            kafka.stop()
        finally:
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def make_settings(stack: Settings, request) -> Iterator[Callable[..., Settings]]:
    """Factory: settings with this test's own topics, consumer groups and index alias.

    The topology (topics + index template) is applied for each settings object made, and
    torn down after the test.
    """
    from newsflow.topology import apply, namespaced, teardown

    made: list[Settings] = []

    def factory(**overrides) -> Settings:
        tag = f"t{uuid.uuid4().hex[:10]}"
        s = namespaced(stack, tag, **({
            "topic_partitions": 2,
            "batch_wait_ms": 200,
            "metrics_port": 0,
            "allow_private_addresses": True,
            "respect_robots": False,
            # never seed a test's poller from the default feed list (real feeds: non-loopback)
            "feeds_file": Path(tempfile.gettempdir()) / f"{tag}-no-feeds.yaml",
        } | overrides))
        apply(s)
        made.append(s)
        return s

    yield factory

    for s in made:
        teardown(s)  # best effort: a test's own topics, groups and indices


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()
