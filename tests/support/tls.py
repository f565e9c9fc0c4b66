"""A throw-away PKI for tests: a CA and certificates made with ``openssl``, stores with ``keytool``.

    ca.pem / ca.key            the test CA (self-signed, CA:TRUE)
    server.pem / server.key    signed by the CA, for 127.0.0.1 and localhost (Kafka, a fake ES)
    client.pem / client.key    signed by the CA, clientAuth (mutual TLS)
    server.p12                 the server key + chain as PKCS12 (the broker's keystore)
    truststore.p12             the CA as PKCS12 (the broker trusts client certificates it signed)

Nothing here is meant to be secure: keys are unencrypted PEM, valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    dir: Path
    store_password: str

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def keystore(self) -> Path:
        return self.dir / "server.p12"

    @property
    def truststore(self) -> Path:
        return self.dir / "truststore.p12"


def _run(*cmd: str, cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({done.returncode}): {done.stderr[-1500:]}")


def tools_missing() -> list[str]:
    return [t for t in ("openssl", "keytool") if shutil.which(t) is None]


def _sign(d: Path, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-sha256", "-extfile", f"{name}.ext", cwd=d)


def make_ca(d: Path, name: str = "ca", cn: str = "Newsflow test CA") -> Path:
    """A self-signed CA in ``d/<name>.pem`` (key in ``<name>.key``)."""
    d.mkdir(parents=True, exist_ok=True)
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
         "-days", "2", "-sha256", "-subj", f"/CN={cn}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return d / f"{name}.pem"


def make_pki(d: Path, store_password: str) -> Pki:
    """The CA, a server certificate for 127.0.0.1/localhost, a client certificate, and the PKCS12
    stores a Kafka broker needs (made with ``keytool``, the tool a broker operator uses)."""
    make_ca(d)
    _sign(d, "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth,clientAuth\n")
    _sign(d, "client", "newsflow-client", "extendedKeyUsage=clientAuth\n")
    _run("openssl", "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem",
         "-name", "broker", "-out", "server.p12", "-passout", f"pass:{store_password}", cwd=d)
    _run("keytool", "-importcert", "-noprompt", "-alias", "newsflow-test-ca", "-file", "ca.pem",
         "-keystore", "truststore.p12", "-storetype", "PKCS12", "-storepass", store_password, cwd=d)
    return Pki(d, store_password)
