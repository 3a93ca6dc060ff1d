"""Where the engine may listen: on loopback, or anywhere with CurveZMQ keys, and only on a free port.

:func:`check_bind` runs before a run directory is written, so a refused bind leaves nothing behind.

Example::

    >>> check_bind(["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"], keys=None)
    >>> check_bind(["tcp://0.0.0.0:5555"], keys=None)
    Traceback (most recent call last):
    ServerError: refusing to bind tcp://0.0.0.0:5555 without CurveZMQ keys: ...
"""

from __future__ import annotations

import socket
from pathlib import Path

from engine.keys import is_loopback, server_keys


class ServerError(RuntimeError):
    """The engine cannot serve as asked (an unsafe bind, bad keys, a port in use)."""


def check_bind(endpoints: list[str], keys: Path | str | None, *, probe: bool = True) -> None:
    """Refuse to listen beyond this machine without CurveZMQ keys, or (with ``probe``) on a TCP port
    that is taken. Call it before writing anything."""
    if keys is not None:
        server_keys(keys)
    else:
        for endpoint in endpoints:
            if not is_loopback(endpoint):
                raise ServerError(
                    f"refusing to bind {endpoint} without CurveZMQ keys: anyone who can reach it could send "
                    "results. Make keys with `engine keys --dir keys` and pass --keys keys, or bind to 127.0.0.1"
                )
    if probe:
        for endpoint in endpoints:
            _probe_tcp(endpoint)


def _probe_tcp(endpoint: str) -> None:
    """Bind and release a plain socket where ZeroMQ will listen. A ZeroMQ probe would not do: its
    unbind completes later, in the I/O thread, and would make the real bind fail."""
    if not endpoint.startswith("tcp://"):
        return
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if port in ("0", "*") or not port.isdigit():
        return
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
        try:
            probe.bind(("" if host in ("*", "0.0.0.0") else host, int(port)))
        except OSError as exc:
            raise ServerError(f"cannot listen on {endpoint}: {exc.strerror} (is another engine using it?)") from None
