"""The engine's watch on its peers: what it refused or dropped, counted by kind and logged.

Every refusal is counted; a warning names the peer and the reason, at most once a second per kind
(with how many went unlogged), so a flood of garbage cannot flood the log too. The counts are shown
by ``engine status`` while an engine serves the run.

Example::

    >>> watch = Watch(logging.getLogger("lineage.engine"))
    >>> watch.note(FRAMES, "127.0.0.1", "not a msgpack message")
    >>> watch.counts
    Counter({'frames': 1})
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable

FRAMES = "frames"          # messages that are not valid protocol messages
HANDSHAKES = "handshakes"  # CurveZMQ handshakes refused (unknown key)
SESSIONS = "sessions"      # messages from a connection that has not said hello
RENAMED = "renamed"        # hellos under a name another live session holds (given a new name)
REPLIES = "replies"        # replies dropped: the peer does not read them, or is gone
UPLOADS = "uploads"        # blob chunks refused (bad total, over quota, wrong digest)
FORGOTTEN = "forgotten"    # sessions silent past the lease timeout
REPORTS = "reports"        # epoch reports refused (metrics the run does not know, out of bounds, out of order), data
#                            descriptions that differ from the first
RATE = "rate"              # messages dropped unread: their peer sent more a second than its limit

_DESCRIPTIONS = {
    FRAMES: "rejected a frame", HANDSHAKES: "refused a CurveZMQ handshake", SESSIONS: "refused a message",
    RENAMED: "renamed a trainer", REPLIES: "dropped a reply", UPLOADS: "refused a blob chunk",
    FORGOTTEN: "forgot a silent session", REPORTS: "refused a report", RATE: "dropped a message",
}
_NOUNS = {  # singular, plural
    FRAMES: ("invalid frame", "invalid frames"), HANDSHAKES: ("CurveZMQ handshake", "CurveZMQ handshakes"),
    SESSIONS: ("message from a peer without the right session", "messages from peers without the right session"),
    RENAMED: ("trainer renamed", "trainers renamed"), REPLIES: ("reply dropped", "replies dropped"),
    UPLOADS: ("blob chunk", "blob chunks"), FORGOTTEN: ("silent session forgotten", "silent sessions forgotten"),
    REPORTS: ("epoch report refused", "epoch reports refused"),
    RATE: ("message over its sender's rate", "messages over their senders' rate"),
}


def describe(counts: dict[str, int]) -> str:
    """The counts in words, e.g. ``"1 CurveZMQ handshake, 3 invalid frames"``."""
    parts = []
    for kind, count in sorted(counts.items()):
        singular, plural = _NOUNS.get(kind, (kind, kind))
        if count:
            parts.append(f"{count} {singular if count == 1 else plural}")
    return ", ".join(parts) or "nothing"


class Watch:
    """Counts refusals by kind and warns about them, at most once per ``every`` seconds per kind."""

    def __init__(self, logger: logging.Logger, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def note(self, kind: str, peer: str, reason: str, count: int = 1, level: int = logging.WARNING) -> None:
        """Count ``count`` refusals of ``kind`` from ``peer`` and log this one unless a line of its kind was
        logged less than ``every`` seconds ago."""
        self.counts[kind] += count
        now = self.clock()
        if now - self._last.get(kind, -math.inf) < self.every:
            self._unlogged[kind] += count
            return
        self._last[kind] = now
        unlogged = self._unlogged.pop(kind, 0)
        also = f"; {unlogged} more since the last line" if unlogged else ""
        self.logger.log(level, "%s from %s: %s (%d so far%s)", _DESCRIPTIONS.get(kind, kind), peer, reason,
                        self.counts[kind], also)
