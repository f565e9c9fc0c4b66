"""Network guard for stage subprocesses started by the chaos and hostile suites.

Python imports ``sitecustomize`` at start-up when this directory is on ``PYTHONPATH``
(``tests.chaos.procs.guarded_env`` puts it there). It gives a ``newsflow`` child process the same
safety net as the in-process suite, plus a stub resolver:

* ``socket.connect``/``connect_ex`` to anything outside 127.0.0.0/8 and ::1 is refused *before*
  connecting (``tests.support.netguard``) and the attempt is appended to ``NEWSFLOW_TEST_GUARD_LOG``;
* ``socket.getaddrinfo`` answers host names listed in ``NEWSFLOW_TEST_HOSTS``
  (``name=ip,name=ip``) from that table, passes IP literals and ``localhost`` through, and refuses
  every other name (so no DNS query ever leaves the machine), logging it as ``dns``.

The test reads the log afterwards: a ``connect`` line is a failure; ``dns`` lines are expected
when a corpus feed links to the outside world.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[3])
if _REPO not in sys.path:
    sys.path.append(_REPO)

from tests.support.netguard import LoopbackGuard  # noqa: E402

_LOG = os.environ.get("NEWSFLOW_TEST_GUARD_LOG")
_HOSTS = dict(
    pair.split("=", 1) for pair in os.environ.get("NEWSFLOW_TEST_HOSTS", "").split(",") if "=" in pair
)
_real_getaddrinfo = socket.getaddrinfo


def _record(kind: str, what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{kind}\t{os.getpid()}\t{what}\n")


class _LoggingGuard(LoopbackGuard):
    def _check(self, sock, address) -> None:
        try:
            super()._check(sock, address)
        except ConnectionRefusedError:
            _record("connect", repr(address))
            raise


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or _is_ip(str(name)) or str(name).lower() in ("localhost", "localhost.localdomain"):
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    stub = _HOSTS.get(str(name).lower().rstrip("."))
    if stub is None:
        _record("dns", str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"stub resolver: {name} is not a test host")
    return _real_getaddrinfo(stub, port, family, type, proto, flags | socket.AI_NUMERICHOST)


_LoggingGuard().install()
socket.getaddrinfo = _getaddrinfo
