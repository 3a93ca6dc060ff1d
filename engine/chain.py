"""The log's hash chain: every stored event carries the SHA-256 of the stored event before it.

The log links each event as it appends it (``link``): one more entry, ``prev``, in the event's record. The first
event of a run links to :data:`GENESIS`; a fork copies its parent's events byte for byte, so its chain goes on
from the parent's at the fork point. ``engine replay --verify`` walks the chain (:func:`check`) and names the
first event that does not follow the one before it. Changing, inserting or removing an event in the middle of a
log breaks the chain at that point; rewriting a log from some event to its end is only seen against a head
recorded earlier, which is why :func:`check` returns it.

Logs written before events were linked read and verify as before: their events carry no ``prev``, and the chain
begins at the first linked event (the first one a newer engine appended to such a log). From there on, every
event must be linked.

Example::

    >>> stored = link(TYPES.encode("SearchFinished", {"reason": "done"}, at=0.0), GENESIS)
    >>> check(log.read_raw())
    Chain(events=120, first=1, head='5f0c...')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import msgpack

from engine.events import unpack_record

LINK = "prev"
GENESIS = bytes(32)  # what the first event of a run links to
_FOUR_ENTRIES, _FIVE_ENTRIES = b"\x84", b"\x85"
_LINK_ENTRY = msgpack.packb(LINK)


class ChainBroken(ValueError):
    """A stored event that does not follow the one before it: the log was changed after it was written."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"the log's hash chain breaks at event {seq}: {reason}")
        self.seq = seq


@dataclass(frozen=True)
class Chain:
    """What :func:`check` found: ``first`` is the first linked event (None when no event is linked: a log
    written before events were linked), ``head`` the SHA-256 (hex) of the last event's stored bytes."""

    events: int
    first: int | None
    head: str


def digest(stored: bytes) -> bytes:
    """What the next event's link must be: the SHA-256 of an event's stored bytes."""
    return hashlib.sha256(stored).digest()


def link(raw: bytes, prev: bytes) -> bytes:
    """An encoded event with its link to the event before it (replacing any link it had)."""
    if raw[:1] == _FOUR_ENTRIES:
        # EventTypes.encode writes a map of four entries: a fifth at its end, with the header counting it, is
        # what msgpack would write for the whole record, without decoding every event the engine appends.
        return _FIVE_ENTRIES + raw[1:] + _LINK_ENTRY + msgpack.packb(prev)
    record = unpack_record(raw)
    record[LINK] = prev
    return msgpack.packb(record)


def check(records: Iterable[tuple[int, bytes]]) -> Chain:
    """Walk stored events ``(seq, bytes)`` from event 1 in order; raises :class:`ChainBroken` at the first event
    that is missing, unreadable, or does not link to the event before it."""
    expected_seq, before, first = 1, GENESIS, None
    for seq, raw in records:
        if seq != expected_seq:
            raise ChainBroken(expected_seq, f"event {expected_seq} is missing (the next one stored is {seq})")
        try:
            linked = unpack_record(raw).get(LINK)
        except Exception:  # any undecodable bytes: the reason is the same for all of them
            raise ChainBroken(seq, "its stored bytes are not a record") from None
        if linked is None:
            if first is not None:
                raise ChainBroken(seq, f"it carries no link, though every event from {first} on is linked")
        elif linked != before:
            what = "the start of a run" if seq == 1 else f"event {seq - 1}"
            raise ChainBroken(seq, f"its link is not {what}'s hash: one of them was changed after both were "
                                   "written")
        elif first is None:
            first = seq
        before = digest(raw)
        expected_seq = seq + 1
    return Chain(events=expected_seq - 1, first=first, head=before.hex())
