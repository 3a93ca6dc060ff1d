"""The gatekeeper: CurveZMQ handshakes checked against ``authorized/``, refusals remembered.

pyzmq's authenticator refuses an unknown key silently; an operator needs to see who is knocking.
The gatekeeper answers ZeroMQ's authentication requests (ZAP) in its own thread like pyzmq's, and
keeps each refusal (the peer's address, its public key, why) for the engine's loop to log and count.
An accepted trainer's ZeroMQ ``User-Id`` is its public key (Z85), which binds its session to it.

Example::

    >>> gate = Gatekeeper(context, authorized=Path("keys/authorized"))
    >>> gate.start()
    >>> gate.refusals()      # what was refused since the last call, and how many more were not kept
    ([Refusal(address='127.0.0.1', key='rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7', reason='Unknown key')], 0)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85


@dataclass(frozen=True)
class Refusal:
    """One refused handshake."""

    address: str
    key: str
    reason: str


class Gatekeeper(ThreadAuthenticator):
    """Admits the CURVE keys in ``authorized`` and remembers whom it refused."""

    MAX_KEPT = 1024  # refusals kept between two calls of refusals(); beyond it they are only counted

    def __init__(self, context: zmq.Context, authorized: Path | str) -> None:
        super().__init__(context)
        self._authorized = str(authorized)
        self._lock = threading.Lock()
        self._refused: list[Refusal] = []
        self._uncounted = 0
        self._asking: tuple[str, str] = ("?", "?")

    def start(self) -> None:
        super().start()
        self.configure_curve(domain="*", location=self._authorized)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # Requests are answered one at a time in the authenticator's thread, so the current request's
        # peer can wait here for the reply below.
        address = msg[3].decode("utf-8", "replace")[:64] if len(msg) > 3 else "?"
        key = z85.encode(msg[6]).decode() if len(msg) > 6 and len(msg[6]) == 32 else "?"
        self._asking = (address, key)
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        if status_code != b"200":
            refusal = Refusal(*self._asking, status_text.decode("utf-8", "replace")[:64])
            with self._lock:
                if len(self._refused) < self.MAX_KEPT:
                    self._refused.append(refusal)
                else:
                    self._uncounted += 1
        super()._send_zap_reply(request_id, status_code, status_text, user_id)

    def refusals(self) -> tuple[list[Refusal], int]:
        """The refusals since the last call, and how many more there were than could be kept."""
        with self._lock:
            refused, self._refused = self._refused, []
            more, self._uncounted = self._uncounted, 0
        return refused, more
