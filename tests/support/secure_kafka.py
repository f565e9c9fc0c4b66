"""A Kafka broker with a SASL_SSL listener (SCRAM-SHA-512 over mutual TLS), for one test session.

Started with ``deploy/local/stack.sh`` (the local stack's own code path: jars, config, KRaft format)
in a temporary state dir on free ports, so the shared broker on 9092 is never touched:

    PLAINTEXT  127.0.0.1:<free>   inter-broker and controller traffic only
    SASL_SSL   127.0.0.1:<free>   what the tests' clients use: the broker's certificate is signed by
                                  the session's test CA (``tests/support/tls.py``), a client
                                  certificate from that CA is required, and the SCRAM-SHA-512 user
                                  ``newsflow`` has a random password made for this session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsflow.settings import REPO_ROOT
from tests.ops.helpers import closed_port as free_port
from tests.support.tls import Pki

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"
USER = "newsflow"


@dataclass
class SecureKafka:
    pki: Pki
    state_dir: Path
    sasl_port: int
    password: str
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def client_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings overrides for a client of the SASL_SSL listener (mutual TLS + SCRAM-SHA-512)."""
        return {
            "kafka_bootstrap": self.bootstrap, "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": USER,
            "kafka_sasl_password": self.password, "kafka_ssl_cafile": self.pki.ca,
            "kafka_ssl_certfile": self.pki.cert("client"), "kafka_ssl_keyfile": self.pki.key("client"),
        } | overrides

    def _stack(self, *args: str) -> str:
        done = subprocess.run(["bash", str(STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> SecureKafka:
        self._stack("up", "kafka")
        return self

    def stop(self) -> None:
        self._stack("down", "kafka")


def secure_kafka(pki: Pki, state_dir: Path) -> SecureKafka:
    """Not started yet: ``.start()`` it, ``.stop()`` it."""
    password = f"scram-{secrets.token_hex(12)}"
    sasl_port = free_port()
    env = os.environ | {
        "NEWSFLOW_STATE_DIR": str(state_dir), "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_SASL_SSL_PORT": str(sasl_port),
        "KAFKA_SSL_KEYSTORE": str(pki.keystore), "KAFKA_SSL_TRUSTSTORE": str(pki.truststore),
        "KAFKA_SSL_PASSWORD": pki.store_password, "KAFKA_SSL_CLIENT_AUTH": "required",
        "KAFKA_SCRAM_USERS": f"{USER}={password}",
    }
    return SecureKafka(pki=pki, state_dir=state_dir, sasl_port=sasl_port, password=password, env=env)
