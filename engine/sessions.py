"""A trainer connection as the engine server knows it: the :class:`Peer` a message came from (its ZeroMQ routing
identity, address and CurveZMQ key) and the :class:`Session` of one that said hello.

Example::

    >>> peer = Peer(identity, frame)
    >>> sessions[peer.identity] = Session("t1", protocol.proof_of(secret, peer.key), time.monotonic(), peer.key)
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq


@dataclass
class Session:
    """A trainer connection that said hello, bound to its routing identity (the dict key) and to
    ``holder``, the hash of its secret and CurveZMQ public key (:func:`engine.protocol.proof_of`)."""

    name: str
    holder: str
    heard: float
    account: str  # whose uploads these are: its CurveZMQ key, or without keys its holder
    told_done: bool = False


@dataclass(frozen=True)
class Peer:
    """Who sent a message: its routing identity, and the frame ZeroMQ tells its address and key by."""

    identity: bytes
    frame: zmq.Frame | None = None

    @property
    def address(self) -> str:
        return _property(self.frame, "Peer-Address", "?")

    @property
    def key(self) -> str:
        """Its CurveZMQ public key (Z85), empty without keys."""
        return _property(self.frame, "User-Id", "")


def _property(frame: zmq.Frame | None, name: str, default: str) -> str:
    """A ZeroMQ message property (``Peer-Address``; ``User-Id``, the CurveZMQ key, where keys are on)."""
    try:
        return frame.get(name) if frame is not None else default
    except zmq.ZMQError:  # not set on this connection
        return default
