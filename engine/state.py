"""The search's state: trials, leases, the queue, the beam (top-K) and the best ensemble, and how trials rank.

The fold (``engine/fold.py``) builds a :class:`State` from events and nothing else; everything else reads
it. How trials compare is the run's policy, defined here once: the score (the search metric, signed so
larger is better), ties broken by validation loss, and the rule that keeps an ensemble
(:func:`keeps_ensemble`).

Example::

    >>> state = state_at("runs/nb")
    >>> [(t.id, t.score) for t in state.leaderboard()[:3]]
    >>> state.trials[12].status is Status.COMPLETED
    True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from engine.config import Config

_NUMBERS = (int, float)


class Kind(StrEnum):
    """What a candidate is: a tower to train, or an ensemble of trained towers to combine."""

    TOWER = "tower"
    ENSEMBLE = "ensemble"


class Status(StrEnum):
    """Where a trial is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Blame(StrEnum):
    """Whose fault a failure is: the candidate's own (it cannot be built or trained, so the search learns
    from it) or the infrastructure's around it (lost leases, transfers, a trainer that cannot read the data)."""

    CANDIDATE = "candidate"
    INFRASTRUCTURE = "infrastructure"


class Artifact(StrEnum):
    """What a trained trial leaves behind for others, by name in its ``artifacts`` (name -> digest)."""

    WEIGHTS = "weights"  # the trained weights, inherited by later towers
    OUTPUTS = "outputs"  # validation and test outputs, which teachers and ensembles are made of
    CHECKPOINT = "checkpoint"  # a paused tower's weights, optimizer and early-stopping state, to resume from


class Epoch(NamedTuple):
    """One point of a trial's learning curve: its validation metrics after ``epoch`` epochs (from 1)."""

    epoch: int
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """As events record it and trainers report it."""
        return {"epoch": self.epoch, "metrics": self.metrics}


class Stop(NamedTuple):
    """Why a trial was told to stop early, and after which reported epoch."""

    epoch: int
    rule: str
    reason: str
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


class Resume(NamedTuple):
    """Where a promoted trial's next lease starts: after ``epoch`` epochs, from the ``checkpoint`` (a digest)."""

    epoch: int
    checkpoint: str


@dataclass(frozen=True)
class TowerInput:
    """What towers are built on, as a trainer that read the run's data describes it: one example's ``shape`` as a
    tower's first block takes it (audio as its spectrogram's frames x bands), the number of ``outputs`` (classes,
    or regression targets), the vocabulary's size where examples are token ids (``tokens``; 0 otherwise) and the
    ``task``. Under ``space.max_params`` the beam counts a candidate tower's weights from it."""

    shape: tuple[int, ...]
    outputs: int
    tokens: int
    task: str

    def as_dict(self) -> dict[str, Any]:
        """As a DataDescribed event records it and a trainer sends it."""
        return {"shape": list(self.shape), "outputs": self.outputs, "tokens": self.tokens, "task": self.task}

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> TowerInput:
        """From what ``as_dict`` wrote (validated where it came in: the protocol's ``data`` message)."""
        return cls(tuple(recorded["shape"]), recorded["outputs"], recorded["tokens"], recorded["task"])

    def __str__(self) -> str:
        tokens = f", {self.tokens} token ids" if self.tokens else ""
        return f"{'x'.join(map(str, self.shape))} in, {self.outputs} outputs{tokens}, {self.task}"


PAUSE = "pause"  # the Stop rule of a trial paused at a rung (search.stopping = asha-promote)

TOWER, ENSEMBLE = Kind.TOWER, Kind.ENSEMBLE
QUEUED, RUNNING, COMPLETED, FAILED = Status.QUEUED, Status.RUNNING, Status.COMPLETED, Status.FAILED


@dataclass(slots=True)
class Trial:
    """One candidate and what became of it. Its id is the seq of its CandidateProposed event.

    A tower's ``architecture`` is its block names; an ensemble's is ``{"members": [...], "combiner": ...}``.
    """

    id: int
    architecture: Any
    hyperparameters: dict[str, Any]
    key: str
    parent: int | None
    mutation: str | None
    position: int
    seed: int
    kind: Kind = TOWER
    inherit: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None
    inherited: list[str] | None = None
    status: Status = QUEUED
    lease: int | None = None
    losses: int = 0
    metrics: dict[str, float] | None = None
    score: float | None = None
    artifacts: dict[str, str] | None = None
    reason: str | None = None
    blame: Blame | None = None
    curve: list[Epoch] = field(default_factory=list)  # the epochs its trainer reported, of its latest lease
    stop: Stop | None = None  # its latest lease was told to stop early, or paused at a rung
    resume: Resume | None = None  # promoted: its next lease continues from a checkpoint


@dataclass(slots=True)
class Lease:
    """One assignment of a trial to a trainer. Its id is the seq of its TrialAssigned event.

    ``holder`` is the hash of the trainer's secret: only a session proving it may report on the lease
    (None for leases recorded before holders were, where the trainer's name decides).
    """

    id: int
    trial: int
    trainer: str
    deadline: float
    holder: str | None = None

    def held_by(self, name: str, holder: str | None) -> bool:
        return self.holder == holder if self.holder is not None else self.trainer == name


@dataclass
class State:
    """Everything derived from a run's log: trials, queue, leases, the beam (top-K) and progress."""

    seq: int = 0
    run_id: str | None = None
    config: Config | None = None
    bundle: str | None = None  # digest of the run's files its trainers download (engine/bundle.py)
    trials: dict[int, Trial] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)
    leases: dict[int, Lease] = field(default_factory=dict)
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    top: list[int] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    proposals: int = 0
    finished: str | None = None
    forked_from: dict[str, Any] | None = None
    resumes: int = 0
    ranking: Ranking | None = None  # how trials compare, from the config
    ensemble: int | None = None  # the best completed ensemble
    stopped: list[int] = field(default_factory=list)  # completed trials that were stopped early (or paused)
    promotions: int = 0  # paused trials resumed (search.stopping = asha-promote)
    tower_input: TowerInput | None = None  # what towers are built on, once a trainer described the data

    @property
    def budget(self) -> int:
        return self.config.search.trials if self.config else 0

    def best_trial(self) -> Trial | None:
        return self.trials[self.top[0]] if self.top else None

    def leaderboard(self, kind: Kind = TOWER) -> list[Trial]:
        """Completed trials of a kind (towers, or ensembles) with a score, best first (ties broken by
        ``search.tie_break``, then the earlier trial first)."""
        scored = [self.trials[t] for t in self.completed
                  if self.trials[t].score is not None and self.trials[t].kind == kind]
        return sorted(scored, key=self.rank, reverse=True)

    def rank(self, trial: Trial) -> tuple[float, float, int]:
        """A completed trial's place on the leaderboard, larger is better: its score, then (with
        ``search.tie_break = "val_loss"``) the lower validation loss, then the earlier trial."""
        return trial.score, neg_loss(trial) if self.ranking.ties_by_loss else 0.0, -trial.id

    def completed_towers(self) -> Iterator[Trial]:
        """The completed towers (not ensembles), in the order they completed, scored or not."""
        trials = self.trials
        return (trials[t] for t in self.completed if trials[t].kind == TOWER)

    def best_ensemble(self) -> Trial | None:
        return self.trials[self.ensemble] if self.ensemble is not None else None

    def best_model(self) -> Trial | None:
        """What the search hands back: its best ensemble once it has one (an ensemble is kept only where it
        beats the strongest tower), else its best tower."""
        return self.best_ensemble() or self.best_trial()

    def strongest_tower(self) -> Trial | None:
        """The tower every ensemble must beat (``ensemble.criterion``): the completed tower with the lowest
        validation loss, or by score the best of the leaderboard. By loss it need not be ``best_trial()``."""
        towers = self.completed_towers() if self.ranking.ensembles_by_loss else (self.trials[t] for t in self.top)
        return max(towers, key=lambda t: (ensemble_merit(self, t), -t.id), default=None)


class Ranking(NamedTuple):
    """How trials compare, from the config."""

    metric: str
    sign: float  # +1 when larger is better, -1 when smaller is
    k: int  # beam width
    ties_by_loss: bool  # search.tie_break = "val_loss"
    ensembles_by_loss: bool  # ensemble.criterion = "val_loss"


def ranking_of(config: Config) -> Ranking:
    search = config.search
    return Ranking(search.metric, 1.0 if search.mode == "max" else -1.0, search.beam.k,
                   search.tie_break == "val_loss", config.ensemble.criterion == "val_loss")


def signed(value: Any, sign: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS) or not math.isfinite(value):
        return None
    return sign * float(value)


def score(config: Config, metrics: dict[str, float] | None) -> float | None:
    """The search metric as a number where larger is better (None when absent or not finite)."""
    ranking = ranking_of(config)
    return signed((metrics or {}).get(ranking.metric), ranking.sign)


def neg_loss(trial: Trial) -> float:
    """Minus the validation loss (larger is better; -inf when there is none)."""
    loss = (trial.metrics or {}).get("val_loss")
    return -loss if isinstance(loss, (int, float)) and math.isfinite(loss) else -math.inf


def ensemble_merit(state: State, trial: Trial) -> tuple[float, ...]:
    """How ensembles and towers compare (``ensemble.criterion``): by validation loss alone, or by the
    search's score with ties broken by the lower validation loss."""
    return (neg_loss(trial),) if state.ranking.ensembles_by_loss else (trial.score, neg_loss(trial))


def best_tower_merit(state: State) -> tuple[float, ...]:
    strongest = state.strongest_tower()
    return ensemble_merit(state, strongest) if strongest is not None else (-math.inf, -math.inf)


def keeps_ensemble(state: State, ensemble: Trial, incumbent: Trial | None) -> bool:
    """The rule for the best ensemble: one is kept when it beats every tower alone and the ensemble kept
    before it (``incumbent``); one that does not is tried and set aside."""
    merit = ensemble_merit(state, ensemble)
    return (incumbent is None or merit > ensemble_merit(state, incumbent)) and merit > best_tower_merit(state)
