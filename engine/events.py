"""Event types: the only facts Lineage records.

An event is an immutable record ``{seq, type, v, at, payload}``. ``seq`` is dense and starts at 1,
``v`` is the schema version of the event type, ``at`` is wall time (shown to people, never read by
the fold) and ``payload`` a msgpack-native dict. Every type is declared once, here, with its current
version, its required payload fields and the upcasters that lift older versions on read.

Example::

    >>> from engine.events import TYPES
    >>> TYPES.upcast("CandidateProposed", TYPES.version("CandidateProposed"), {...})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
unpack_record = msgpack.unpackb
_new_event = tuple.__new__  # builds an Event without NamedTuple's Python-level __new__


class Event(NamedTuple):
    """One committed (or about to be committed) record of the log."""

    seq: int
    type: str
    v: int
    at: float
    payload: dict[str, Any]


class EventError(ValueError):
    """An event that cannot be read or written: unknown type, future version, missing field."""


@dataclass(frozen=True)
class EventType:
    """The schema of one event type.

    ``upcasters[n]`` turns a version-``n`` payload into a version-``n+1`` payload; reading a stored
    version-1 event of a version-3 type applies ``upcasters[1]`` then ``upcasters[2]``.
    """

    name: str
    version: int
    fields: tuple[str, ...]
    doc: str
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [n for n in range(1, self.version) if n not in self.upcasters]
        if missing:
            raise EventError(f"{self.name} v{self.version} has no upcaster from version(s) {missing}")


class EventTypes:
    """A registry of event types: validates drafts and upcasts stored payloads."""

    def __init__(self, types: Iterable[EventType]) -> None:
        self._types = {t.name: t for t in types}
        self.current_versions = {t.name: t.version for t in self._types.values()}

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __getitem__(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise EventError(f"unknown event type {name!r}") from None

    def names(self) -> list[str]:
        return list(self._types)

    def version(self, name: str) -> int:
        return self[name].version

    def check(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse a draft whose payload lacks a field its type requires."""
        missing = [f for f in self[name].fields if f not in payload]
        if missing:
            raise EventError(f"{name} payload is missing field(s) {missing}")

    def upcast(self, name: str, v: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Lift a stored payload to the current version of its type (stored bytes stay as they are)."""
        kind = self[name]
        if v > kind.version:
            raise EventError(
                f"{name} v{v} is newer than this Lineage knows (v{kind.version}); upgrade Lineage to read it"
            )
        while v < kind.version:
            payload = kind.upcasters[v](dict(payload))
            v += 1
        return payload

    def encode(self, name: str, payload: dict[str, Any], at: float) -> bytes:
        """The stored bytes of a new event at the current version of its type."""
        self.check(name, payload)
        return msgpack.packb({"type": name, "v": self[name].version, "at": at, "payload": payload})

    def decode(self, seq: int, raw: bytes) -> Event:
        """An event read from storage, upcast to the current version of its type."""
        try:
            record = unpack_record(raw)
            name, v, at, payload = record["type"], record["v"], record["at"], record["payload"]
        except (ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
            raise EventError(f"event {seq} is not a valid record: {exc}") from None
        if self.current_versions.get(name) == v:  # the common case, kept cheap: replay decodes every event
            return _new_event(Event, (seq, name, v, at, payload))
        kind = self._types.get(name)
        if kind is None:
            raise EventError(f"event {seq} has unknown type {name!r}")
        if v != kind.version:
            payload = self.upcast(name, v, payload)
            v = kind.version
        return Event(seq, name, v, at, payload)


def _proposed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """CandidateProposed v1 could only propose towers trained from scratch, without a teacher."""
    return {**payload, "kind": "tower", "inherit": NO_INHERITANCE, "teacher": None}


NO_INHERITANCE: dict[str, Any] = {"mode": "off", "sources": [], "weights": []}


def _failed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """TrialFailed v1 had no blame: the engine's own "lost N times" failures were infrastructure's."""
    return {**payload, "blame": "infrastructure" if payload["reason"].startswith("lost ") else "candidate"}


def _config_version(version: int) -> Upcaster:
    """Until v8 these events stored the config without its own version: it was the event's. The first
    upcaster a stored event meets (its own version's) says so; the config module migrates the config."""

    def stamp(payload: dict[str, Any]) -> dict[str, Any]:
        config = payload["config"]
        return payload if "version" in config else {**payload, "config": {**config, "version": version}}

    return stamp


# The three events that carry the whole configuration share its history. From v8 on a config carries its
# own version (engine/config.py migrates it), so a new option bumps that version, not these events'.
CONFIG_UPCASTERS = {version: _config_version(version) for version in range(1, 8)}

SEARCH_STARTED = "SearchStarted"
SEARCH_FORKED = "SearchForked"
SEARCH_RESUMED = "SearchResumed"
CANDIDATE_PROPOSED = "CandidateProposed"
TRIAL_ASSIGNED = "TrialAssigned"
TRIAL_COMPLETED = "TrialCompleted"
EPOCHS_REPORTED = "EpochsReported"
TRIAL_STOPPED = "TrialStopped"
TRIAL_PROMOTED = "TrialPromoted"
TRIAL_FAILED = "TrialFailed"
TRIAL_LOST = "TrialLost"
SEARCH_FINISHED = "SearchFinished"
DATA_DESCRIBED = "DataDescribed"

TYPES = EventTypes(
    [
        EventType(
            SEARCH_STARTED, 9, ("run_id", "config", "lineage", "bundle"),
            "The first event of a run: the whole frozen configuration (with its own version), and the digest of "
            "the bundle of files its trainers read (engine/bundle.py; None: they read them from their own disks).",
            upcasters={**CONFIG_UPCASTERS, 8: lambda payload: {**payload, "bundle": None}},
        ),
        EventType(
            SEARCH_FORKED, 8, ("run_id", "parent_run", "parent_path", "parent_seq", "overrides", "config"),
            "This run continues another one's log[:parent_seq] with configuration overrides.",
            upcasters=CONFIG_UPCASTERS,
        ),
        EventType(
            SEARCH_RESUMED, 8, ("overrides", "config"),
            "An engine restarted on this run; overrides may only raise or lower the trial budget.",
            upcasters=CONFIG_UPCASTERS,
        ),
        EventType(
            CANDIDATE_PROPOSED, 2,
            ("kind", "architecture", "hyperparameters", "key", "parent", "mutation", "seed", "position", "inherit",
             "teacher"),
            "A candidate to evaluate, its trial id this event's seq: a tower to train (with the weights it "
            "inherits and the teacher it learns from) or an ensemble of trained towers to combine.",
            upcasters={1: _proposed_v1_to_v2},
        ),
        EventType(
            TRIAL_ASSIGNED, 2, ("trial", "trainer", "holder", "deadline"),
            "A lease (id = this event's seq) hands a queued candidate to one trainer; holder is the hash of "
            "that trainer's secret (protocol.proof_of), and only a session proving it may report on the lease.",
            upcasters={1: lambda payload: {**payload, "holder": None}},  # before holders, the name alone
        ),
        EventType(
            EPOCHS_REPORTED, 1, ("trial", "lease", "epochs"),
            "A trainer reported the validation metrics of the epochs its lease's candidate trained since its last "
            "report (each {epoch, metrics}, epochs counted from 1): the trial's learning curve.",
        ),
        EventType(
            TRIAL_STOPPED, 1, ("trial", "lease", "epoch", "rule", "reason", "figures"),
            "The engine told a lease's trainer to stop training after its current epoch; the trial completes with "
            "fewer epochs. ``rule`` is what decided it: deadline (search.minutes ran out; ``epoch`` is the last one "
            "reported then) or a stopping rule (asha, median: engine/stopping.py; ``epoch`` is the one it was "
            "judged at, ``figures`` what it was compared with).",
        ),
        EventType(
            TRIAL_PROMOTED, 1, ("trial", "rung", "reason", "figures"),
            "search.stopping = asha-promote: a trial paused at a rung (its result holds a checkpoint) is among the "
            "best there and goes back to the front of the queue, to resume from its checkpoint on any trainer "
            "(engine/stopping.py; ``figures`` what it was compared with).",
        ),
        EventType(
            TRIAL_COMPLETED, 2, ("trial", "lease", "metrics", "artifacts", "inherited"),
            "A trainer reported a result for a lease in flight (and which layers it copied from others).",
            upcasters={1: lambda payload: {**payload, "inherited": []}},
        ),
        EventType(
            TRIAL_FAILED, 3, ("trial", "lease", "reason", "blame", "metrics"),
            "The candidate failed and is never retried; blame says whether the candidate itself "
            "(it cannot be built or trained) or the infrastructure around it (lost leases, transfers) failed, and "
            "metrics what its trainer measured before it failed (a tower over space.max_params: its params).",
            upcasters={1: _failed_v1_to_v2, 2: lambda payload: {**payload, "metrics": {}}},
        ),
        EventType(
            TRIAL_LOST, 1, ("trial", "lease", "reason"),
            "A lease ended without a result (silent trainer); the candidate goes back to the queue.",
        ),
        EventType(
            DATA_DESCRIBED, 1, ("shape", "outputs", "tokens", "task"),
            "The first trainer that read the run's data described what towers are built on (engine/state.py "
            "TowerInput): one example's shape as the first block takes it, the outputs, the vocabulary's size (0: "
            "no token ids) and the task. Recorded once; under space.max_params the beam counts towers' weights "
            "from it.",
        ),
        EventType(
            SEARCH_FINISHED, 1, ("reason",),
            "The budget is spent (or the space exhausted) and nothing is queued or in flight.",
        ),
    ]
)
