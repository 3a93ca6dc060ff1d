"""The trainer's side of the protocol: one DEALER socket to the engine, and blob transfer over it.

Messages are sent as they are made; replies come back asynchronously and are handed to whoever
waits for them, or to a dispatch function for everything else. Blobs (weights, teacher outputs)
travel in chunks over the same connection, so trainers on other hosts need no shared filesystem.

Example::

    >>> client = EngineClient("tcp://127.0.0.1:5555")
    >>> client.connect()
    >>> hello = {"name": "t1", "host": "box", "pid": 1, "leases": [], "secret": os.urandom(16).hex()}
    >>> kind, welcome = client.request("hello", hello, expect={"welcome"}, timeout=5, dispatch=print)
    >>> digest = client.upload(b"weights", timeout=5, dispatch=print)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from engine import protocol
from engine.artifacts import digest_of

log = logging.getLogger("lineage.trainer")

Message = tuple[str, dict[str, Any]]
Dispatch = Callable[[Message], None]
RATE_PAUSE = 0.5  # seconds before asking again once the engine says this trainer is over its rate (then doubled)
MAX_RATE_PAUSE = 8.0
THROTTLED = 10.0  # seconds after a rate error during which an unanswered request is sent again


class EngineGone(RuntimeError):
    """The engine stopped answering (or forgot this trainer); reconnect and say hello again."""


class EngineRefused(RuntimeError):
    """The engine will never accept this trainer as it is (for example another protocol version)."""


class EngineClient:
    """A DEALER connection to one engine, optionally authenticated with CurveZMQ keys."""

    def __init__(self, endpoint: str, *, curve: tuple[bytes, bytes, bytes] | None = None,
                 context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self.last_sent = 0.0
        self.last_heard = 0.0
        self._unanswered_since = 0.0
        self._throttled_at = -THROTTLED  # when the engine last said it drops this trainer's messages

    def connect(self) -> None:
        """A fresh socket (dropping anything queued on an old one)."""
        self.close()
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME)
        if self.curve is not None:
            server_public, public, secret = self.curve
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
        sock.connect(self.endpoint)
        self._socket = sock
        self.last_sent = self.last_heard = self._unanswered_since = time.monotonic()

    def close(self, linger: float = 0.0) -> None:
        """Close the socket, giving queued messages up to ``linger`` seconds to leave."""
        if self._socket is not None:
            self._socket.close(int(linger * 1000))
            self._socket = None

    @property
    def socket(self) -> zmq.Socket:
        return self._socket

    @property
    def waiting(self) -> float:
        """Seconds since the first message the engine has not answered yet was sent (0 when the engine
        spoke last). Counted from the first, not the latest: a trainer sends a heartbeat every second or so,
        and a dead connection must not look fresh each time it does.

        Any reply counts, whatever it answers: this cannot tell that one message (a lost ``ready``)
        got no reply while others did.
        """
        return time.monotonic() - self._unanswered_since if self.last_sent > self.last_heard else 0.0

    def send(self, kind: str, fields: dict[str, Any]) -> None:
        self._socket.send(protocol.encode(kind, **fields))
        now = time.monotonic()
        if self.last_sent <= self.last_heard:
            self._unanswered_since = now
        self.last_sent = now

    def receive(self, timeout: float) -> Message | None:
        """The next valid engine message within ``timeout`` seconds, or None."""
        if not self._socket.poll(max(timeout, 0.0) * 1000):
            return None
        frame = self._socket.recv()
        self.last_heard = time.monotonic()
        try:
            return protocol.decode(frame, protocol.ENGINE_MESSAGES)
        except protocol.ProtocolError as exc:
            log.warning("ignored an invalid message from the engine: %s", exc)
            return None

    def request(self, kind: str, fields: dict[str, Any], *, expect: set[str], timeout: float,
                dispatch: Dispatch, tick: Callable[[], None] | None = None,
                answers: Callable[[dict[str, Any]], bool] = lambda _: True) -> Message:
        """Send one message and wait for a reply of an ``expect`` kind that ``answers`` it; others go to
        ``dispatch``.

        ``tick`` is called at least every second meanwhile (a trainer heartbeats from it). Raises
        :class:`EngineGone` when nothing expected arrives in ``timeout`` seconds, and for a ``blob``
        error raises :class:`EngineRefused` with the engine's reason. When the engine says this trainer
        sends too much (a ``rate`` error: it drops messages unread, and tells so once a second), the
        message is sent again after a pause that doubles until it is answered, and so are the requests of
        the next ``THROTTLED`` seconds.
        """
        self.send(kind, fields)
        deadline = time.monotonic() + timeout
        throttled = time.monotonic() - self._throttled_at < THROTTLED
        pause = RATE_PAUSE if throttled else 0.0
        resend_at = time.monotonic() + pause if throttled else float("inf")
        while (left := deadline - time.monotonic()) > 0:
            if tick is not None:
                tick()
            message = self.receive(min(left, 1.0, max(resend_at - time.monotonic(), 0.0)))
            if message is None:
                if time.monotonic() >= resend_at:
                    self.send(kind, fields)
                    pause = min(2 * pause, MAX_RATE_PAUSE)
                    resend_at = time.monotonic() + pause
                continue
            if message[0] in expect and answers(message[1]):
                return message
            if message[0] == "error" and message[1]["code"] == "blob":
                raise EngineRefused(message[1]["message"])
            if message[0] == "error" and message[1]["code"] == "rate":
                if time.monotonic() - self._throttled_at >= THROTTLED:
                    log.warning("the engine drops messages: %s; sending more slowly", message[1]["message"])
                self._throttled_at = time.monotonic()
                pause = pause or RATE_PAUSE
                resend_at = time.monotonic() + pause
                continue
            dispatch(message)
        raise EngineGone(f"no {'/'.join(sorted(expect))} from {self.endpoint} within {timeout:g}s")

    def upload(self, data: bytes, *, timeout: float, dispatch: Dispatch, tick: Callable[[], None] | None = None) -> str:
        """Send a blob in chunks (resuming where the engine says it stands); returns its digest."""
        digest, total, offset = digest_of(data), len(data), 0
        while True:
            chunk = data[offset: offset + protocol.CHUNK]
            _, reply = self.request("blob_put", {"digest": digest, "offset": offset, "total": total, "data": chunk},
                                    expect={"blob_ok"}, timeout=timeout, dispatch=dispatch, tick=tick,
                                    answers=lambda reply: reply["digest"] == digest)
            if reply["complete"]:
                return digest
            offset = reply["have"]

    def download(self, digest: str, *, timeout: float, dispatch: Dispatch,
                 tick: Callable[[], None] | None = None) -> bytes:
        """Fetch a blob from the engine's artifact store and check its digest."""
        parts, offset = [], 0
        while True:
            _, reply = self.request("blob_get", {"digest": digest, "offset": offset}, expect={"blob"},
                                    timeout=timeout, dispatch=dispatch, tick=tick,
                                    answers=lambda reply, at=offset: (reply["digest"], reply["offset"]) == (digest, at))
            parts.append(reply["data"])
            offset += len(reply["data"])
            if offset >= reply["total"] or not reply["data"]:
                break
        data = b"".join(parts)
        if digest_of(data) != digest:
            raise EngineRefused(f"downloaded blob does not match its digest {digest}")
        return data
