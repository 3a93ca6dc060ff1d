"""Work items: what the engine hands a trainer to evaluate, one typed record per lease.

A :class:`WorkItem` says which candidate a lease is for (its architecture, hyperparameters and seed),
what it starts from and learns from (weights it inherits, a teacher's outputs), and, for an ensemble,
the trained members it combines. ``needs`` lists the artifacts (by digest) a trainer fetches before it
starts. The engine builds them (``Scheduler.work_item``) and sends ``item.to_message()`` in a ``work``
message; ``engine/protocol.py`` declares their fields, and a trainer's decoded ``work`` message holds
:class:`WorkItem` objects again, every field checked. Nobody reads a work item by string key.

On the wire each record is a msgpack map keyed by its field names (a teacher's ``id`` repeats its
``trial``, as CandidateProposed records it); tuples travel as lists.

- :class:`WorkItem`: one lease's candidate, a tower to train or an ensemble to combine;
- :class:`Ensemble`: an ensemble's architecture, the trials it combines and how;
- :class:`Inherit`: how a tower starts from other trials' weights, and its :class:`Source` trials;
- :class:`Teacher`: the trial (a tower or an ensemble) whose outputs a tower learns from;
- :class:`Member`: one trained tower an ensemble combines.

Example::

    >>> from engine import protocol
    >>> from engine.state import Kind, Resume
    >>> item = WorkItem(lease=7, trial=5, key="dense_32", kind=Kind.TOWER, architecture=("dense_32",),
    ...                 hyperparameters={"dropout": 0.1}, seed=3)
    >>> frame = protocol.encode("work", items=[item.to_message()], retry=1.0, done=False)
    >>> protocol.decode(frame, protocol.ENGINE_MESSAGES)[1]["items"] == [item]
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.config import DistillationOptions, EnsembleOptions, SharingOptions
from engine.options import choices_of
from engine.state import Kind, Resume

Tower = tuple[str, ...]  # a tower's (or an nb201 cell's) block or operation names, input first
Hyperparameters = dict[str, Any]  # name -> a number, text, true/false or nil


@dataclass(frozen=True)
class Ensemble:
    """An ensemble's architecture: the trained towers it combines, and how (``average`` or ``weighted``)."""

    COMBINERS: ClassVar[tuple[str, ...]] = choices_of(EnsembleOptions, "combiner")

    members: tuple[int, ...]
    combiner: str

    def to_message(self) -> dict[str, Any]:
        return {"members": list(self.members), "combiner": self.combiner}


Architecture = Tower | Ensemble


def architecture_of(recorded: list[str] | dict[str, Any]) -> Architecture:
    """A trial's architecture as its events record it (a list of names, or an ensemble's map) in a work item."""
    if isinstance(recorded, dict):
        return Ensemble(tuple(recorded["members"]), recorded["combiner"])
    return tuple(recorded)


def _architecture_message(architecture: Architecture) -> list[str] | dict[str, Any]:
    return architecture.to_message() if isinstance(architecture, Ensemble) else list(architecture)


@dataclass(frozen=True)
class Source:
    """A trial whose trained ``weights`` (a digest) a tower inherits, counting ``weight`` (in [0, 1])
    where several sources have a layer."""

    trial: int
    architecture: Tower
    hyperparameters: Hyperparameters
    weights: str | None
    weight: float

    def to_message(self) -> dict[str, Any]:
        return {"trial": self.trial, "architecture": list(self.architecture),
                "hyperparameters": dict(self.hyperparameters), "weights": self.weights, "weight": self.weight}


@dataclass(frozen=True)
class Inherit:
    """How a tower starts: from its mutated parent's weights (``parent``) or from the average of the best
    trials' (``average``), where its layers match theirs."""

    # sharing.mode's, but for off: a tower that inherits nothing has no Inherit at all
    MODES: ClassVar[tuple[str, ...]] = tuple(mode for mode in choices_of(SharingOptions, "mode") if mode != "off")

    mode: str
    sources: tuple[Source, ...]

    def to_message(self) -> dict[str, Any]:
        return {"mode": self.mode, "sources": [source.to_message() for source in self.sources]}


@dataclass(frozen=True)
class Teacher:
    """The trial a tower learns from: the best tower (``kind`` ``trial``) or the best ensemble
    (``ensemble``), its recorded ``outputs`` (a digest) and the distillation loss (``soft`` or ``logits``)
    with its temperature and the teacher's share ``weight`` of the loss."""

    KINDS: ClassVar[tuple[str, ...]] = ("trial", "ensemble")
    LOSSES: ClassVar[tuple[str, ...]] = choices_of(DistillationOptions, "loss")

    kind: str
    trial: int
    loss: str
    temperature: float
    weight: float
    architecture: Architecture
    hyperparameters: Hyperparameters
    outputs: str | None

    def to_message(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.trial, "loss": self.loss, "temperature": self.temperature,
                "weight": self.weight, "trial": self.trial, "architecture": _architecture_message(self.architecture),
                "hyperparameters": dict(self.hyperparameters), "outputs": self.outputs}


@dataclass(frozen=True)
class Member:
    """One trained tower an ensemble combines, by its recorded ``outputs`` (a digest)."""

    trial: int
    architecture: Tower
    hyperparameters: Hyperparameters
    outputs: str | None

    def to_message(self) -> dict[str, Any]:
        return {"trial": self.trial, "architecture": list(self.architecture),
                "hyperparameters": dict(self.hyperparameters), "outputs": self.outputs}


@dataclass(frozen=True)
class WorkItem:
    """One lease's candidate: a tower to train (``kind`` tower, its ``architecture`` a :data:`Tower`) or
    an ensemble to combine (``kind`` ensemble, an :class:`Ensemble` architecture and its ``members``).

    ``parent_artifacts`` are the mutated parent's artifacts (name -> digest); ``inherit`` and ``teacher``
    are None for a tower trained from scratch without one; ``needs`` are the digests of every artifact
    the trainer must have before it starts (inherited weights, the teacher's and the members' outputs,
    a checkpoint). With ``search.stopping = "asha-promote"`` a tower trains up to epoch ``until`` and
    returns a checkpoint there (None: to the end), and a promoted one continues from its ``resume``.
    """

    lease: int
    trial: int
    key: str
    kind: Kind
    architecture: Architecture
    hyperparameters: Hyperparameters
    seed: int
    parent: int | None = None
    parent_artifacts: dict[str, str] = field(default_factory=dict)
    inherit: Inherit | None = None
    teacher: Teacher | None = None
    members: tuple[Member, ...] | None = None
    needs: tuple[str, ...] = ()
    until: int | None = None
    resume: Resume | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "lease": self.lease, "trial": self.trial, "key": self.key, "kind": str(self.kind),
            "architecture": _architecture_message(self.architecture), "hyperparameters": dict(self.hyperparameters),
            "parent": self.parent, "parent_artifacts": dict(self.parent_artifacts), "seed": self.seed,
            "inherit": self.inherit.to_message() if self.inherit else None,
            "teacher": self.teacher.to_message() if self.teacher else None,
            "members": None if self.members is None else [member.to_message() for member in self.members],
            "needs": list(self.needs), "until": self.until,
            "resume": self.resume._asdict() if self.resume else None,
        }
