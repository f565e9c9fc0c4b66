"""The suite's network safety net: no socket may connect outside loopback.

Installed by an autouse fixture. A connect to any other address raises ``NonLoopbackConnect``
*instead of* connecting, and the test fails at teardown even if the code under test swallowed it.
"""

from __future__ import annotations

import ipaddress
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NonLoopbackConnect(ConnectionRefusedError):
    pass


def is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name here means an un-resolved connect: refuse it too


class LoopbackGuard:
    def __init__(self) -> None:
        self.violations: list[str] = []

    def _check(self, sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            self.violations.append(repr(address))
            raise NonLoopbackConnect(f"test tried to connect to {address!r}: only loopback is allowed")

    def install(self) -> None:
        guard = self

        def connect(sock, address):
            guard._check(sock, address)
            return _real_connect(sock, address)

        def connect_ex(sock, address):
            guard._check(sock, address)
            return _real_connect_ex(sock, address)

        socket.socket.connect = connect
        socket.socket.connect_ex = connect_ex

    def uninstall(self) -> None:
        socket.socket.connect = _real_connect
        socket.socket.connect_ex = _real_connect_ex
