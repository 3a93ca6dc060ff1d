"""A run's history: what the report's views are drawn from, read from its log through the fold and nothing else.

:func:`history` replays a run (up to event ``at``) once and keeps, beside the final :class:`State`, what the state
forgets: when each trial was proposed, started and ended, on which trainer, and every lease's span and outcome.
The functions below turn it into the data of each view (plain values, no drawing): progress with the best so far,
the lineage tree, the Pareto front, the trainers' timelines and utilisation, and which mutations worked.

Example::

    >>> run = history("runs/m1d")
    >>> [point.best for point in progress(run)][-1] == run.state.best_trial().score
    True
    >>> edges(run)[:2]
    [Edge(child=9, parent=2, mutation='add'), ...]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from engine import events as ev
from engine.ensembles import REPLICA
from engine.fold import fold
from engine.runs import reader_at
from engine.state import ENSEMBLE, PAUSE, TOWER, State, Status, Trial

T = TypeVar("T")
#: Plots draw every point up to this many; past it, one per cell of a grid (what the eye could tell apart).
MOST_POINTS = 5000


class Outcome(StrEnum):
    """How a lease ended."""

    COMPLETED = "completed"
    STOPPED = "stopped"  # completed after a stopping rule or the deadline stopped it
    PAUSED = "paused"  # completed at a rung with a checkpoint (asha-promote)
    FAILED = "failed"
    LOST = "lost"
    RUNNING = "running"  # still in flight at the end of the history


@dataclass(frozen=True)
class Span:
    """One lease: a trial on a trainer from ``start`` to ``end`` (seconds since the run started; None while it
    runs)."""

    lease: int
    trial: int
    trainer: str
    start: float
    end: float | None
    outcome: Outcome


@dataclass
class History:
    """The state after the last event read, the times the state forgets, and every lease. :meth:`record` folds
    one more event in (a live view follows the log with it)."""

    run: Path
    state: State = field(default_factory=State)
    started_at: float = 0.0  # the wall clock of SearchStarted
    last_at: float = 0.0  # the wall clock of the last event read
    proposed: dict[int, float] = field(default_factory=dict)  # trial -> seconds since the start
    ended: dict[int, float] = field(default_factory=dict)  # trial -> seconds, when it last completed or failed
    # (trial, seconds, its score then, the event's seq) in the order trials completed (a resumed one each time)
    completions: list[tuple[int, float, float | None, int]] = field(default_factory=list)
    closed: list[Span] = field(default_factory=list)  # leases that ended, in the order they ended
    open: dict[int, tuple[int, str, float]] = field(default_factory=dict)  # lease in flight -> (trial, trainer, start)

    @property
    def seconds(self) -> float:
        return self.last_at - self.started_at

    @property
    def spans(self) -> list[Span]:
        """Every lease by id: those that ended, and those still in flight (``end`` None)."""
        running = [Span(lease, trial, trainer, start, None, Outcome.RUNNING)
                   for lease, (trial, trainer, start) in self.open.items()]
        return sorted([*self.closed, *running], key=lambda span: span.lease)

    def trainers(self) -> list[str]:
        return sorted({trainer for _, trainer, _ in self.open.values()} | {span.trainer for span in self.closed})

    def record(self, event: ev.Event) -> None:
        """Fold one more event (the next in the log) into the history."""
        state = self.state
        fold(state, event)
        if event.type == ev.SEARCH_STARTED:
            self.started_at = event.at
        seconds = event.at - self.started_at
        self.last_at = event.at
        payload = event.payload
        if event.type == ev.CANDIDATE_PROPOSED:
            self.proposed[event.seq] = seconds
        elif event.type == ev.TRIAL_ASSIGNED:
            self.open[event.seq] = (payload["trial"], payload["trainer"], seconds)
        elif event.type in (ev.TRIAL_COMPLETED, ev.TRIAL_FAILED, ev.TRIAL_LOST):
            trial = state.trials[payload["trial"]]
            if event.type != ev.TRIAL_LOST:
                self.ended[trial.id] = seconds
            if event.type == ev.TRIAL_COMPLETED:
                self.completions.append((trial.id, seconds, trial.score, event.seq))
            if payload["lease"] in self.open:
                trial_id, trainer, start = self.open.pop(payload["lease"])
                self.closed.append(Span(payload["lease"], trial_id, trainer, start, seconds,
                                        _outcome(event.type, trial)))


def history(run: Path | str, at: int | None = None) -> History:
    """Replay ``run`` up to event ``at`` (all of it when None), keeping what the views need."""
    found = History(Path(run))
    with reader_at(run, at) as log:
        for event in log.read(1, at):
            found.record(event)
    return found


def _outcome(kind: str, trial: Trial) -> Outcome:
    if kind == ev.TRIAL_FAILED:
        return Outcome.FAILED
    if kind == ev.TRIAL_LOST:
        return Outcome.LOST
    if trial.stop is None:
        return Outcome.COMPLETED
    return Outcome.PAUSED if trial.stop.rule == PAUSE else Outcome.STOPPED


# -- how a candidate was made ------------------------------------------------------------------------


def mutation_kind(mutation: str) -> str:
    """A recorded mutation's kind: its first word (``"replace 1: maxpool1d -> avgpool1d"`` -> ``replace``)."""
    return mutation.split(maxsplit=1)[0] if mutation.strip() else "?"



def origin(state: State, trial: Trial) -> str:
    """How the search made a candidate: ``ensemble``, ``replica``, its mutation (``add``, ``replace``, ``remove``,
    ``hparam``, or a cell space's), ``initial`` (the beam's first random towers) or ``random`` (a fresh draw:
    random search, or the beam exploring)."""
    if trial.kind == ENSEMBLE:
        return "ensemble"
    if trial.mutation == REPLICA:
        return REPLICA
    if trial.mutation:
        return mutation_kind(trial.mutation)
    search = state.config.search
    initial = search.beam.initial if search.algorithm == "beam" else 0
    return "initial" if trial.position < initial else "random"


# -- progress ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One completed trial on the progress view: its place in completion order, when, its score, the best score
    so far (monotone) and how it was made."""

    order: int
    trial: int
    seconds: float
    score: float
    best: float
    origin: str


def progress(run: History) -> list[Point]:
    """Every scored tower in the order it completed (a resumed trial each time it completed), with its score
    then and the best score so far. Scores are signed as the leaderboard holds them (larger is better)."""
    state, points, best = run.state, [], None
    for order, (trial_id, seconds, score, _) in enumerate(run.completions, start=1):
        trial = state.trials[trial_id]
        if trial.kind != TOWER or score is None:
            continue
        best = score if best is None else max(best, score)
        points.append(Point(order, trial.id, seconds, score, best, origin(state, trial)))
    return points


# -- the lineage tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """A candidate and the parent it was made from, by ``mutation``."""

    child: int
    parent: int
    mutation: str


def edges(run: History) -> list[Edge]:
    """The lineage tree's links: every proposal that names a parent, in proposal order."""
    return [Edge(trial.id, trial.parent, trial.mutation or "?") for trial in run.state.trials.values()
            if trial.parent is not None]


def generations(run: History) -> dict[int, int]:
    """Each trial's depth in the tree: 0 for a candidate with no parent, its parent's plus one otherwise."""
    depth: dict[int, int] = {}
    for trial in run.state.trials.values():  # parents are proposed before their children
        depth[trial.id] = depth.get(trial.parent, -1) + 1 if trial.parent is not None else 0
    return depth


# -- trainers ----------------------------------------------------------------------------------------


def utilisation(run: History) -> dict[str, float]:
    """Each trainer's share of its time holding a lease, from its first lease's start to its last one's end (the
    history's end while one runs)."""
    shares = {}
    for trainer in run.trainers():
        spans = [s for s in run.spans if s.trainer == trainer]
        ends = [s.end if s.end is not None else run.seconds for s in spans]
        start, end = min(s.start for s in spans), max(ends)
        busy = sum(e - s.start for s, e in zip(spans, ends, strict=True))
        shares[trainer] = busy / (end - start) if end > start else 1.0
    return shares


@dataclass(frozen=True)
class Bar:
    """What the trainers' timeline draws: one lease, or on a large run several of one trainer in a row that ended
    the same way (a bar narrower than a pixel each), from ``start`` to ``end`` seconds."""

    trainer: str
    start: float
    end: float
    outcome: Outcome
    leases: int
    trial: int  # the first lease's trial


def bars(run: History, most: int = MOST_POINTS, width: int = 2000) -> list[Bar]:
    """Each lease as a bar; past ``most`` leases, a trainer's leases in a row that ended the same way and follow
    each other within 1/``width`` of the run's time are one bar."""
    spans = run.spans
    ends = {span.lease: span.end if span.end is not None else run.seconds for span in spans}
    found: list[Bar] = []
    if len(spans) <= most:
        return [Bar(s.trainer, s.start, ends[s.lease], s.outcome, 1, s.trial) for s in spans]
    gap = run.seconds / width
    for trainer in run.trainers():
        current: Bar | None = None
        for span in sorted((s for s in spans if s.trainer == trainer), key=lambda s: s.start):
            if current is not None and span.outcome is current.outcome and span.start - current.end <= gap:
                current = Bar(trainer, current.start, max(current.end, ends[span.lease]), span.outcome,
                              current.leases + 1, current.trial)
                continue
            if current is not None:
                found.append(current)
            current = Bar(trainer, span.start, ends[span.lease], span.outcome, 1, span.trial)
        if current is not None:
            found.append(current)
    return found


# -- what worked -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """How often children of one kind beat their parent: ``children`` scored with a scored parent, ``better``
    of them above it, and the median gain of score."""

    label: str
    children: int
    better: int
    median_gain: float | None

    @property
    def rate(self) -> float | None:
        return self.better / self.children if self.children else None


def _children(state: State) -> Iterator[tuple[Trial, Trial]]:
    for trial in state.trials.values():
        parent = state.trials.get(trial.parent) if trial.parent is not None else None
        if (trial.kind == TOWER and trial.status is Status.COMPLETED and trial.score is not None
                and parent is not None and parent.score is not None):
            yield trial, parent


def _tally(label: str, pairs: list[tuple[Trial, Trial]]) -> Tally:
    gains = [child.score - parent.score for child, parent in pairs]
    return Tally(label, len(pairs), sum(g > 0 for g in gains), statistics.median(gains) if gains else None)


def what_worked(run: History) -> dict[str, list[Tally]]:
    """Children against their parents: by mutation kind, by the block a child gained, and with or without
    inherited weights or a teacher."""
    pairs = list(_children(run.state))
    kinds = {child.id: mutation_kind(child.mutation or "?") for child, _ in pairs}
    gained: dict[str, list[tuple[Trial, Trial]]] = {}
    for child, parent in pairs:
        if isinstance(child.architecture, list) and isinstance(parent.architecture, list):
            for block in set(child.architecture) - set(parent.architecture):
                gained.setdefault(block, []).append((child, parent))

    def inherited(trial: Trial) -> bool:
        return bool(trial.inherit) and trial.inherit.get("mode", "off") != "off"

    return {
        "mutation": [_tally(m, [(c, p) for c, p in pairs if kinds[c.id] == m]) for m in sorted(set(kinds.values()))],
        "block gained": [_tally(block, found) for block, found in sorted(gained.items())],
        "knowledge": [_tally("inherited weights", [(c, p) for c, p in pairs if inherited(c)]),
                      _tally("from scratch", [(c, p) for c, p in pairs if not inherited(c)]),
                      _tally("with a teacher", [(c, p) for c, p in pairs if c.teacher]),
                      _tally("without a teacher", [(c, p) for c, p in pairs if not c.teacher])],
    }


# -- large runs --------------------------------------------------------------------------------------


def thin(points: Sequence[T], x: Callable[[T], float], y: Callable[[T], float], keep: Callable[[T], bool],
         most: int = MOST_POINTS, cells: tuple[int, int] = (600, 150)) -> list[T]:
    """The points a plot draws: all of them up to ``most``; past that, every point ``keep`` says (the best so
    far, the Pareto front, the beam...) and the first point in each cell of a ``cells`` grid over the points'
    extent, in their order. Points that share a cell would be drawn on top of each other anyway."""
    if len(points) <= most:
        return list(points)
    xs, ys = [x(p) for p in points], [y(p) for p in points]
    x0, y0 = min(xs), min(ys)
    width, height = (max(xs) - x0) or 1.0, (max(ys) - y0) or 1.0
    seen: set[tuple[int, int]] = set()
    kept = []
    for point, px, py in zip(points, xs, ys, strict=True):
        cell = (int((px - x0) / width * (cells[0] - 1)), int((py - y0) / height * (cells[1] - 1)))
        if keep(point) or cell not in seen:
            seen.add(cell)
            kept.append(point)
    return kept


# -- runs side by side -------------------------------------------------------------------------------


class CompareError(ValueError):
    """Runs that cannot be drawn on the same axes."""


def fork_point(run: History, others: Sequence[History]) -> tuple[History, int] | None:
    """Where ``run`` parted from one of ``others``: (that parent, the trials both had completed by then), when
    ``run`` is a fork of it."""
    origin = run.state.forked_from
    if not origin:
        return None
    for other in others:
        if other.run.resolve() == Path(origin["path"]).resolve():
            return other, sum(seq <= origin["seq"] for *_, seq in run.completions)
    return None


def comparable(runs: Sequence[History]) -> None:
    """Refuse runs that search different spaces or by different metrics: their scores do not compare."""
    first = runs[0]
    for other in runs[1:]:
        mine, theirs = first.state.config, other.state.config
        if mine.space != theirs.space:
            raise CompareError(f"{other.run} searches another space ({theirs.space.kind}) than {first.run} "
                               f"({mine.space.kind}, other blocks or choices): their scores do not compare")
        if (mine.search.metric, mine.search.mode) != (theirs.search.metric, theirs.search.mode):
            raise CompareError(f"{other.run} ranks by {theirs.search.metric} ({theirs.search.mode}), {first.run} "
                               f"by {mine.search.metric} ({mine.search.mode})")
