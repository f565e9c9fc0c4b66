"""Kafka pre-flight: one connection that says exactly why a secured broker refuses Newsflow.

kafka-python retries a refused TLS handshake or SASL login until its bootstrap timeout (30 s) and
then reports only ``Unable to bootstrap``; the broker's reason never reaches the operator. So
before the first client of a secured connection (any ``kafka_security_protocol`` but PLAINTEXT),
``newsflow.kafka_io`` runs :func:`check` once per process and settings:

    TCP connect ─▶ TLS handshake (SSL, SASL_SSL) ─▶ ApiVersions ─▶ SaslHandshake + login (SASL_*)

with the same files and credentials the clients get, speaking the protocol through kafka-python's
own request classes and SASL mechanisms. A definite refusal (a certificate that does not verify,
a TLS alert from the broker, a mechanism it does not offer, a login it rejects) raises
:class:`KafkaSecurityError` within ``timeout_s``; its message names the settings to fix and never
contains a secret. A broker that cannot be reached at all is not a security problem: the check
passes it by and the clients' own retries take over, as on a PLAINTEXT cluster that is down.
"""

from __future__ import annotations

import socket
import ssl
from contextlib import closing
from typing import Any

from kafka.errors import KafkaError
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from newsflow.settings import ConfigurationError, Settings

# TLS alerts a broker sends when it wants (another) client certificate.
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN",
                       "HANDSHAKE_FAILURE")
_checked: set[tuple[Any, ...]] = set()  # settings that passed, so each process checks once


class KafkaSecurityError(ConfigurationError):
    """A secured Kafka refused the connection: TLS or SASL settings are wrong."""


class _Closed(Exception):
    """The broker closed the connection without answering."""


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context kafka-python builds from the same settings (``kafka.net.transport``): TLS 1.2+,
    the broker's certificate and host name verified against ``kafka_ssl_cafile`` (else the system's
    CAs), and the client certificate for mutual TLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if settings.kafka_ssl_cafile:
            ctx.load_verify_locations(settings.kafka_ssl_cafile)
        else:
            ctx.load_default_certs()
    except ssl.SSLError as exc:
        raise KafkaSecurityError(f"NEWSFLOW_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile} holds no readable PEM "
                                 f"CA certificate ({exc.reason or exc})") from None
    if settings.kafka_ssl_certfile:
        try:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except ssl.SSLError as exc:
            raise KafkaSecurityError(
                f"NEWSFLOW_KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile} and NEWSFLOW_KAFKA_SSL_KEYFILE="
                f"{settings.kafka_ssl_keyfile} are not a PEM certificate and its unencrypted key "
                f"({exc.reason or exc})") from None
    return ctx


def check(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise :class:`KafkaSecurityError` if a reachable bootstrap broker refuses these settings'
    TLS or SASL credentials. Each broker is tried in turn until one answers; at most ``timeout_s``
    per connection step. A no-op for PLAINTEXT."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    ctx = tls_context(settings) if settings.kafka_security_protocol.endswith("SSL") else None
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        except (OSError, ValueError):
            continue  # unreachable: the clients retry; another broker may answer
        with closing(sock):
            try:
                if _check_broker(settings, sock, ctx, host, server):
                    return
            except TimeoutError:
                continue


def check_once(settings: Settings) -> None:
    """:func:`check`, skipped when the same connection settings already passed in this process."""
    key = tuple(getattr(settings, n) for n in (
        "kafka_bootstrap", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
        "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"))
    if key not in _checked:
        check(settings)
        _checked.add(key)


def _check_broker(settings: Settings, sock: socket.socket, ctx: ssl.SSLContext | None, host: str,
                  server: str) -> bool:
    """One broker: True when it accepted everything."""
    protocol = settings.kafka_security_protocol
    if ctx is not None:
        try:
            sock = ctx.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            cafile = settings.kafka_ssl_cafile or "unset: the system's CAs"
            raise KafkaSecurityError(
                f"Kafka at {server}: the broker's TLS certificate does not verify ({exc.verify_message}). "
                f"NEWSFLOW_KAFKA_SSL_CAFILE ({cafile}) must hold the CA that signed it, and "
                f"NEWSFLOW_KAFKA_BOOTSTRAP a host name the certificate is for") from None
        except (ssl.SSLError, ConnectionError) as exc:
            raise _tls_refused(settings, server, exc) from None
    conn = _Conn(sock)
    try:
        conn.request(ApiVersionsRequest(version=0))
    except ssl.SSLError as exc:  # TLS 1.3: the broker's verdict on our certificate arrives here
        raise _tls_refused(settings, server, exc) from None
    except (_Closed, ConnectionError, KafkaError) as exc:  # closed, or an answer that is not Kafka's
        what = ("closed the connection without answering" if isinstance(exc, (_Closed, ConnectionError))
                else "answered with bytes that are no Kafka response")
        raise KafkaSecurityError(
            f"Kafka at {server} {what}: is that listener {protocol} (NEWSFLOW_KAFKA_SECURITY_PROTOCOL)?") from None
    if protocol.startswith("SASL_"):
        _sasl_login(settings, conn, host, server)
    return True


def _tls_refused(settings: Settings, server: str, exc: Exception) -> KafkaSecurityError:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if any(alert in str(reason) for alert in _CLIENT_CERT_ALERTS):
        have = (f"it refused {settings.kafka_ssl_certfile}" if settings.kafka_ssl_certfile
                else "none is set")
        return KafkaSecurityError(
            f"Kafka at {server} refused the TLS handshake ({reason}): it wants a client certificate signed by "
            f"a CA it trusts ({have}): NEWSFLOW_KAFKA_SSL_CERTFILE and NEWSFLOW_KAFKA_SSL_KEYFILE")
    return KafkaSecurityError(
        f"Kafka at {server}: TLS failed ({reason}): is that listener "
        f"{settings.kafka_security_protocol} (NEWSFLOW_KAFKA_SECURITY_PROTOCOL)?")


def _sasl_login(settings: Settings, conn: _Conn, host: str, server: str) -> None:
    mechanism = settings.kafka_sasl_mechanism
    user = settings.kafka_sasl_username
    login = (f"Kafka at {server} rejected the SASL {mechanism} login of user {user!r}: check "
             f"NEWSFLOW_KAFKA_SASL_USERNAME and NEWSFLOW_KAFKA_SASL_PASSWORD")
    try:
        hello = conn.request(SaslHandshakeRequest(mechanism=mechanism, version=1))
        if hello.error_code:
            raise KafkaSecurityError(
                f"Kafka at {server} does not offer SASL {mechanism} (it offers "
                f"{', '.join(hello.mechanisms) or 'none'}): NEWSFLOW_KAFKA_SASL_MECHANISM")
        assert settings.kafka_sasl_password is not None  # the settings model requires it for SASL_*
        mech = get_sasl_mechanism(mechanism)(
            host=host, security_protocol=settings.kafka_security_protocol, sasl_mechanism=mechanism,
            sasl_plain_username=user, sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
        while not mech.is_done():
            answer = conn.request(SaslAuthenticateRequest(auth_bytes=mech.auth_bytes(), version=1))
            if answer.error_code:
                raise KafkaSecurityError(f"{login} (the broker said: {answer.error_message or answer.error_code})")
            mech.receive(answer.auth_bytes)
    except (_Closed, ConnectionError):
        raise KafkaSecurityError(f"{login} (the broker closed the connection)") from None
    except ValueError as exc:  # e.g. SCRAM: the broker's proof does not match
        raise KafkaSecurityError(f"{login} ({type(exc).__name__} in the SASL exchange)") from None
    if not mech.is_authenticated():
        raise KafkaSecurityError(login)


class _Conn:
    """Blocking request/response on one socket, one request at a time (the socket's timeout applies)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.protocol = KafkaProtocol(client_id="newsflow-preflight")

    def request(self, request: Any) -> Any:
        self.protocol.send_request(request)
        self.sock.sendall(self.protocol.send_bytes())
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise _Closed()
            responses = self.protocol.receive_bytes(data)
            if responses:
                return responses[0][1]
