"""The scheduler: turns trainer commands into events. The only place that decides what happens next.

Each decision is drafted as an event, encoded, decoded and folded into the live state at once (so
the next decision in the same batch sees it, and the live state is exactly what replay rebuilds
from the stored bytes). The caller commits the drafts with :meth:`take` in one transaction before
it answers anyone.

Lease deadlines for heartbeats live here, outside the state: they are wall-clock bookkeeping of
this process, renewed by heartbeats and reset when an engine resumes a run. A new lease's deadline
starts when its work is sent (:meth:`sent`), not when it was decided: proposing can take seconds.

Example::

    >>> scheduler = Scheduler(state)
    >>> work = scheduler.assign("trainer-1", slots=1, holder=protocol.proof_of(secret))
    >>> scheduler.sent([item.lease for item in work], now=time.monotonic())
    >>> scheduler.complete(work[0].lease, {"val_acc": 91.2}, {})
    >>> log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine import events as ev
from engine.fold import fold
from engine.metrics import problem_with
from engine.searchers import Proposer, SpaceExhausted
from engine.state import ENSEMBLE, TOWER, Artifact, Blame, Epoch, State, TowerInput, Trial, score
from engine.stopping import Decision, decide, pause_epoch, promotion
from engine.work import Inherit, Member, Source, Teacher, WorkItem, architecture_of


class Scheduler:
    """Commands in, events out, state folded as it goes."""

    def __init__(self, state: State, *, now: float | None = None, clock: Callable[[], float] = time.time,
                 proposer: Proposer | None = None, started_at: float | None = None) -> None:
        self.state = state
        self._clock = clock
        self._started_at = started_at
        self._proposer = proposer or Proposer()
        self._drafts: list[tuple[ev.Event, bytes]] = []
        self._exhausted: tuple[int, str] | None = None  # (completed trials then, why)
        self._stops: list[int] = []  # leases whose trainers are still to be told to stop
        start = time.monotonic() if now is None else now
        # Leases in flight when an engine (re)starts get a whole timeout to report back.
        self.deadlines: dict[int, float] = {lease: start + self.lease_timeout for lease in state.leases}

    @property
    def lease_timeout(self) -> float:
        return self.state.config.engine.lease_timeout

    # -- drafting ---------------------------------------------------------------------------------

    def emit(self, kind: str, payload: dict[str, Any]) -> ev.Event:
        """Draft one event and fold it into the live state."""
        raw = ev.TYPES.encode(kind, payload, at=self._clock())
        event = ev.TYPES.decode(self.state.seq + 1, raw)
        fold(self.state, event)
        self._drafts.append((event, raw))
        return event

    def take(self) -> list[tuple[ev.Event, bytes]]:
        """The drafted events and their bytes, to be committed in order (they end at ``state.seq``)."""
        drafts, self._drafts = self._drafts, []
        return drafts

    # -- commands ---------------------------------------------------------------------------------

    def assign(self, trainer: str, slots: int, holder: str | None = None) -> list[WorkItem]:
        """Lease up to ``slots`` candidates to ``trainer`` (whose secret hashes to ``holder``): queued
        ones first, then new proposals. Their deadlines start once :meth:`sent` says the work left."""
        items = []
        while len(items) < slots:
            trial_id = self._next_trial()
            if trial_id is None:
                break
            deadline = self._clock() + self.lease_timeout
            lease = self.emit(ev.TRIAL_ASSIGNED, {"trial": trial_id, "trainer": trainer, "holder": holder,
                                                   "deadline": deadline}).seq
            self.deadlines[lease] = math.inf
            items.append(self.work_item(lease))
        return items

    def sent(self, leases: Iterable[int], now: float) -> None:
        """Start the deadlines of leases whose work was just sent."""
        for lease in leases:
            if lease in self.deadlines:
                self.deadlines[lease] = now + self.lease_timeout

    def work_item(self, lease: int) -> WorkItem:
        """What a trainer needs to evaluate a lease's candidate; its ``needs`` list the artifacts (by digest)
        it must have before it starts: inherited weights, the teacher's outputs, ensemble members' outputs."""
        trials = self.state.trials
        trial = trials[self.state.leases[lease].trial]
        parent = trials.get(trial.parent) if trial.parent is not None else None
        needs: list[str] = []

        def needed(other: Trial, artifact: Artifact) -> str | None:
            digest = (other.artifacts or {}).get(artifact)
            if digest and digest not in needs:
                needs.append(digest)
            return digest

        inherit = None
        if trial.inherit and trial.inherit["mode"] != "off":
            sources = [trials[t] for t in trial.inherit["sources"]]
            inherit = Inherit(trial.inherit["mode"], tuple(
                Source(s.id, tuple(s.architecture), s.hyperparameters, needed(s, Artifact.WEIGHTS), w)
                for s, w in zip(sources, trial.inherit["weights"], strict=True)))
        teacher = None
        if trial.teacher:
            plan, source = trial.teacher, trials[trial.teacher["id"]]
            teacher = Teacher(kind=plan["kind"], trial=source.id, loss=plan["loss"], temperature=plan["temperature"],
                              weight=plan["weight"], architecture=architecture_of(source.architecture),
                              hyperparameters=source.hyperparameters, outputs=needed(source, Artifact.OUTPUTS))
        if trial.resume is not None and trial.resume.checkpoint not in needs:
            needs.append(trial.resume.checkpoint)
        members = None
        if trial.kind == ENSEMBLE:
            members = tuple(Member(m.id, tuple(m.architecture), m.hyperparameters, needed(m, Artifact.OUTPUTS))
                            for m in (trials[i] for i in trial.architecture["members"]))
        return WorkItem(
            lease=lease, trial=trial.id, key=trial.key, kind=trial.kind,
            architecture=architecture_of(trial.architecture), hyperparameters=trial.hyperparameters,
            seed=trial.seed, parent=trial.parent, parent_artifacts=dict(parent.artifacts or {}) if parent else {},
            inherit=inherit, teacher=teacher, members=members, needs=tuple(needs),
            until=pause_epoch(self.state, trial), resume=trial.resume,
        )

    def time_up(self) -> bool:
        """Whether the run's wall-clock budget (``search.minutes``) is spent."""
        minutes = self.state.config.search.minutes
        return bool(minutes) and self._started_at is not None and self._clock() >= self._started_at + 60 * minutes

    def stops_at_deadline(self) -> bool:
        """Whether the deadline has come and candidates in flight are to stop at it (search.at_deadline)."""
        return self.state.config.search.at_deadline == "stop" and self.time_up()

    def stop_at_deadline(self) -> None:
        """Once the deadline has come, stop each lease in flight not stopped yet after its current epoch (trainers
        that train by epochs do): TrialStopped for each, and its trainer is to be told (:meth:`take_stops`)."""
        state = self.state
        if not self.stops_at_deadline() or state.config.evaluator.kind != "keras":
            return
        reason = f"the time budget of {state.config.search.minutes:g} minutes is spent"
        for lease in list(state.leases.values()):
            trial = state.trials[lease.trial]
            if trial.stop is None and trial.kind == TOWER:
                epoch = trial.curve[-1].epoch if trial.curve else 0
                self._stop(trial, lease.id, Decision(epoch, "deadline", reason, {}))

    def _next_trial(self) -> int | None:
        state = self.state
        if self.stops_at_deadline():
            return None  # what is queued stays queued: the search ends with what it has
        if state.queue:
            return state.queue[0]
        if state.finished is not None or self.time_up():
            return None
        promoted = promotion(state)  # asha-promote: a paused trial that qualifies goes on before anything new
        if promoted is not None:
            self.emit(ev.TRIAL_PROMOTED, promoted._asdict())
            return promoted.trial
        if state.proposals >= state.budget:
            return None
        if self._exhausted and self._exhausted[0] == len(state.completed):
            return None  # nothing new completed since the searcher found nothing left to try
        try:
            payload = self._proposer.propose(state)
        except SpaceExhausted as exc:
            self._exhausted = (len(state.completed), str(exc))
            return None
        self._exhausted = None
        return self.emit(ev.CANDIDATE_PROPOSED, payload).seq

    def complete(self, lease: int, metrics: dict[str, float], artifacts: dict[str, str],
                 inherited: list[str] | tuple[str, ...] = ()) -> tuple[bool, str]:
        """Record a result (``inherited``: the layers the trainer copied from other trials). A repeated or
        late result (lease not in flight) changes nothing."""
        held = self.state.leases.get(lease)
        if held is None:
            return False, "lease is not in flight (a repeated or late result)"
        problem = problem_with(self.state.config.evaluator.kind, metrics)
        if problem is not None:
            # A diverged training is the candidate's failure; a metric the run does not know, or one out
            # of its bounds, is the trainer's.
            blame = Blame.CANDIDATE if "not finite" in problem else Blame.INFRASTRUCTURE
            self.fail(lease, f"result refused: {problem}", blame)
            return True, "recorded as failed"
        if score(self.state.config, metrics) is None:
            self.fail(lease, f"result has no {self.state.config.search.metric!r}")
            return True, "recorded as failed"
        if Artifact.CHECKPOINT in artifacts:
            trial = self.state.trials[held.trial]
            until, reached = pause_epoch(self.state, trial), trial.curve[-1].epoch if trial.curve else None
            if until is None or reached != until:
                self.fail(lease, f"result refused: a checkpoint after epoch {reached}, but the lease was to pause "
                                 f"{'after epoch ' + str(until) if until else 'never'}", Blame.INFRASTRUCTURE)
                return True, "recorded as failed"
        self.deadlines.pop(lease, None)
        self.emit(ev.TRIAL_COMPLETED, {"trial": held.trial, "lease": lease, "metrics": metrics,
                                        "artifacts": artifacts, "inherited": list(inherited)})
        return True, "recorded"

    def describe(self, described: TowerInput) -> str | None:
        """Record what towers are built on, as a trainer that read the run's data described it; the first
        description stands. Returns what is wrong with a later one that differs, if anything is."""
        known = self.state.tower_input
        if known is None:
            self.emit(ev.DATA_DESCRIBED, described.as_dict())
        elif known != described:
            return f"it describes the data as {described.as_dict()}, another trainer as {known.as_dict()}"
        return None

    def progress(self, lease: int, epochs: Iterable[Epoch]) -> str | None:
        """Record the epochs a trainer reported for a lease in flight: those after the last one recorded (a
        report sent again after a reconnect repeats some). Returns what is wrong with the report, if anything
        is: then nothing of it is recorded (the lease's result still decides the trial)."""
        held = self.state.leases.get(lease)
        if held is None:
            return None  # a late report: the lease ended meanwhile
        trial = self.state.trials[held.trial]
        last = trial.curve[-1].epoch if trial.curve else 0
        new = [epoch for epoch in epochs if epoch.epoch > last]
        for before, after in zip(new, new[1:], strict=False):
            if after.epoch <= before.epoch:
                return f"epoch {after.epoch} follows epoch {before.epoch}"
        for epoch in new:
            problem = problem_with(self.state.config.evaluator.kind, epoch.metrics)
            if problem is not None:
                return f"epoch {epoch.epoch}: {problem}"
        if new:
            epochs = [epoch.as_dict() for epoch in new]
            self.emit(ev.EPOCHS_REPORTED, {"trial": trial.id, "lease": lease, "epochs": epochs})
            decision = decide(self.state, trial, since=last)
            if decision is not None:
                self._stop(trial, lease, decision)
        return None

    def _stop(self, trial: Trial, lease: int, decision: Decision) -> None:
        self.emit(ev.TRIAL_STOPPED, {"trial": trial.id, "lease": lease, "epoch": decision.epoch,
                                     "rule": decision.rule, "reason": decision.reason, "figures": decision.figures})
        self._stops.append(lease)

    def take_stops(self) -> list[int]:
        """The leases decided to stop since the last call, whose trainers are to be told once the decisions
        are committed."""
        stops, self._stops = self._stops, []
        return stops

    def fail(self, lease: int, reason: str, blame: Blame = Blame.CANDIDATE,
             metrics: Mapping[str, float] | None = None) -> tuple[bool, str]:
        """Record that a candidate failed; ``blame`` is the candidate's own or the infrastructure's, ``metrics``
        what its trainer measured before the failure (kept only when the run's trainers report them)."""
        held = self.state.leases.get(lease)
        if held is None:
            return False, "lease is not in flight (a repeated or late report)"
        self.deadlines.pop(lease, None)
        metrics = dict(metrics or {})
        problem = problem_with(self.state.config.evaluator.kind, metrics)
        if problem is not None:
            reason, metrics = f"{reason} (its metrics were refused: {problem})", {}
        self.emit(ev.TRIAL_FAILED, {"trial": held.trial, "lease": lease, "reason": reason, "blame": blame,
                                    "metrics": metrics})
        return True, "recorded"

    def lose(self, lease: int, reason: str) -> None:
        """End a lease without a result: the candidate goes back to the queue (or fails when it keeps
        getting lost, so one poisonous candidate cannot stall a search)."""
        held = self.state.leases.get(lease)
        self.deadlines.pop(lease, None)
        if held is None:
            return
        self.emit(ev.TRIAL_LOST, {"trial": held.trial, "lease": lease, "reason": reason})
        trial = self.state.trials[held.trial]
        limit = self.state.config.engine.max_losses
        if trial.losses >= limit:
            self.emit(ev.TRIAL_FAILED, {"trial": trial.id, "lease": None, "blame": Blame.INFRASTRUCTURE,
                                         "reason": f"lost {trial.losses} times; last: {reason}", "metrics": {}})

    def lose_all(self, reason: str) -> None:
        """Lose every lease in flight at once: their trainers cannot come back (nothing waits out their timeout)."""
        for lease in list(self.state.leases):
            self.lose(lease, reason)

    def heartbeat(self, trainer: str, holder: str | None, leases: list[int], now: float) -> list[int]:
        """Renew the deadlines of a trainer's leases; returns those it should give up (not its own)."""
        unknown = []
        for lease in leases:
            held = self.state.leases.get(lease)
            if held is None or not held.held_by(trainer, holder):
                unknown.append(lease)
            else:
                self.deadlines[lease] = now + self.lease_timeout
        return unknown

    def expire(self, now: float) -> None:
        """Lose every lease whose trainer went silent past its deadline."""
        for lease in [lease for lease, deadline in self.deadlines.items() if deadline < now]:
            self.lose(lease, f"no heartbeat for {self.lease_timeout:g}s")

    def forget_trainer(self, trainer: str, holder: str | None, keep: set[int], reason: str) -> None:
        """Lose the trainer's leases it no longer holds (it reconnected without them, or said goodbye);
        leases someone else holds are not its to give up."""
        gone = [held.id for held in self.state.leases.values()
                if held.held_by(trainer, holder) and held.id not in keep]
        for lease in gone:
            self.lose(lease, reason)

    def finish_if_done(self) -> bool:
        """Append SearchFinished once the budget is spent and nothing is queued or in flight."""
        state = self.state
        if state.finished is not None or state.leases or (state.queue and not self.stops_at_deadline()):
            return state.finished is not None
        if not self.time_up() and promotion(state) is not None:
            return False  # a paused trial is still to go on
        if state.queue:
            self.emit(ev.SEARCH_FINISHED, {"reason": f"time budget of {state.config.search.minutes:g} minutes spent "
                                                     f"({len(state.queue)} queued candidates not evaluated)"})
        elif state.proposals >= state.budget:
            self.emit(ev.SEARCH_FINISHED, {"reason": f"budget of {state.budget} trials spent"})
        elif self.time_up():
            minutes = state.config.search.minutes
            self.emit(ev.SEARCH_FINISHED, {"reason": f"time budget of {minutes:g} minutes spent"})
        elif self._exhausted:
            self.emit(ev.SEARCH_FINISHED, {"reason": f"space exhausted: {self._exhausted[1]}"})
        return state.finished is not None
