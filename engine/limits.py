"""What one trainer may cost the engine: messages a second, and blob bytes in flight and in total.

A trainer that floods the engine with messages must not starve the others of its loop, and one that
uploads without end must not fill the run's disk. Each peer (its CurveZMQ key where keys are on, else
its connection) has a token bucket of ``message_rate`` messages a second that holds two seconds'
worth; a message beyond it is dropped before it is decoded, counted, and answered with a
``rate`` error at most once a second. Uploads are bounded per trainer (its key, or without keys its
secret): ``upload_in_flight`` bytes declared in unfinished uploads and ``upload_total`` bytes written to
the run since the engine started. The message rate's default is above what the busiest honest trainer
sends (about 2,700 a second reporting NAS-Bench-201 look-ups with 16 prefetched, ``benchmarks/throughput.py``)
and far above a trainer that trains (a few a second; a blob moves one MiB a message). What it bounds is the
cost of a flood: a dropped message costs the engine a token count, a handled one its decoding and handling.

Example::

    >>> buckets = MessageBuckets(Limits(message_rate=1.0))   # bursts of 2
    >>> [buckets.take(b"peer", now=0.0) for _ in range(3)]
    [True, True, False]
    >>> buckets.take(b"peer", now=1.0)     # a second refills one message
    True
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from engine.artifacts import ArtifactError
from engine.protocol import MAX_BLOB

GIB = 1 << 30
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Limits:
    """Per-trainer limits of one engine (not part of the run: an engine may restart with others)."""

    message_rate: float = 10_000.0  # messages a second a peer may send, sustained
    upload_in_flight: int = MAX_BLOB  # bytes a trainer may have declared in unfinished uploads
    upload_total: int = 64 * GIB   # bytes a trainer may upload to the run while this engine serves it

    def __post_init__(self) -> None:
        if not 0 < self.message_rate < float("inf"):
            raise ValueError(f"message_rate must be a finite number above 0, not {self.message_rate}")
        if self.upload_in_flight < 1 or self.upload_total < 1:
            raise ValueError("upload limits must be at least one byte")

    @property
    def message_burst(self) -> float:
        """Messages a peer may send at once after a quiet spell: two seconds' worth, at least two."""
        return max(2.0, 2 * self.message_rate)


class MessageBuckets:
    """A token bucket per peer. Buckets that refilled are forgotten (:meth:`forget_full`), so the table
    holds only peers heard from in the last ``message_burst / message_rate`` seconds."""

    def __init__(self, limits: Limits) -> None:
        self.rate = limits.message_rate
        self.burst = limits.message_burst
        self._buckets: dict[bytes | str, tuple[float, float]] = {}  # peer -> (tokens, when counted)
        self._told: dict[bytes | str, float] = {}  # peer -> when it was last told it is over its rate

    def take(self, peer: bytes | str, now: float) -> bool:
        """Spend one of ``peer``'s tokens; False when it has none (the message is to be dropped)."""
        tokens, then = self._buckets.get(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - 1.0, now)
        return True

    def tell(self, peer: bytes | str, now: float) -> bool:
        """Whether to answer ``peer``'s dropped message (at most once a second, so a flood gets no flood back)."""
        if now - self._told.get(peer, -1.0) < 1.0:
            return False
        self._told[peer] = now
        return True

    def forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: a full bucket is what a new peer gets anyway."""
        refill = self.burst / self.rate
        self._buckets = {peer: (tokens, then) for peer, (tokens, then) in self._buckets.items()
                         if now - then < refill}
        self._told = {peer: when for peer, when in self._told.items() if now - when < 1.0}

    def __len__(self) -> int:
        return len(self._buckets)


class UploadLedger:
    """Bytes each trainer (its account: CurveZMQ key, else its secret's hash) wrote to the run since the
    engine started, and the refusal of an upload that would take it past ``upload_total``."""

    def __init__(self, limits: Limits) -> None:
        self.limit = limits.upload_total
        self._written: dict[str, int] = {}

    def check(self, account: str, name: str, more: int) -> None:
        """Raise :class:`ArtifactError` if ``more`` bytes would pass ``account``'s total."""
        used = self._written.get(account, 0)
        if used + more > self.limit:
            raise ArtifactError(
                f"trainer {name} has uploaded {describe_bytes(used)} to this run; {describe_bytes(more)} "
                f"more would pass its limit of {describe_bytes(self.limit)} (engine --upload-total)")

    def add(self, account: str, written: int) -> None:
        self._written[account] = self._written.get(account, 0) + written


def byte_size(text: str) -> int:
    """An argparse type: a number of bytes, with an optional K, M, G or T (powers of 1024), e.g. ``64G``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (a number of bytes, or e.g. 512M, 64G)")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is under one byte")
    return value


def describe_bytes(count: int) -> str:
    """``count`` bytes for a person: ``64 GiB``, ``3.5 MiB``, ``120 bytes``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"
