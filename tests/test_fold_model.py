"""The fold against a model: what the scheduler and fold do, step by step, checked against a small
independent model of the rules.

``Model`` keeps its own plain record of each trial (queued, running with a lease, completed with a
score, failed with a blame), the queue, the leases and their deadlines, and predicts which events each
command appends. It calls no engine code to decide; the rules it encodes are the README's: the queue is
FIFO and a lost candidate goes back to its front; a candidate lost ``engine.max_losses`` times fails,
blamed on the infrastructure; proposals stop at ``search.trials``; a result on a lease not in flight
changes nothing; a result that is not finite, names a metric the run does not know, is out of bounds or
lacks the search metric fails the trial; the beam is the K best scores (ties to the earlier trial: nb201
reports no validation loss); the search finishes once the budget is spent and nothing is queued or
running. After every step the live state must agree with the model, and replaying the stored log must
rebuild the live state exactly.

Example (one step of a run, by hand)::

    >>> machine = FoldModel(); machine.start(trials=3, k=2, max_losses=2, mode="max", tie_break="first")
    >>> machine.ready(trainer=("t0", None), slots=2)   # two proposals, two leases: seq 2..5
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from support import nb201_config

from engine import events as ev
from engine.fold import fold_records
from engine.runs import create_run
from engine.scheduler import Scheduler

# -- the model -------------------------------------------------------------------------------------

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
CANDIDATE, INFRASTRUCTURE = "candidate", "infrastructure"
TIMEOUT = 30.0  # engine.lease_timeout (nb201_config's default)


@dataclass
class ModelTrial:
    id: int
    status: str = QUEUED
    lease: int | None = None
    losses: int = 0
    score: float | None = None
    blame: str | None = None


@dataclass
class ModelLease:
    trial: int
    trainer: str
    holder: str | None
    deadline: float = math.inf  # starts when the work is sent


class Model:
    """The rules, written down again without the engine. Ids are the seqs of the events that made them."""

    def __init__(self, budget: int, k: int, max_losses: int, sign: float) -> None:
        self.budget, self.k, self.max_losses, self.sign = budget, k, max_losses, sign
        self.seq = 1  # SearchStarted
        self.trials: dict[int, ModelTrial] = {}
        self.queue: list[int] = []
        self.leases: dict[int, ModelLease] = {}
        self.completed: list[int] = []
        self.failed: list[int] = []
        self.proposals = 0
        self.finished = False
        self.events: list[str] = []  # what the current step appends

    def _append(self, kind: str) -> int:
        self.seq += 1
        self.events.append(kind)
        return self.seq

    @staticmethod
    def holds(lease: ModelLease, name: str, holder: str | None) -> bool:
        """A lease with a holder belongs to whoever proves it; one without, to the trainer of its name."""
        if lease.holder is None:
            return lease.trainer == name
        return lease.holder == holder

    def top(self) -> list[int]:
        scored = [t for t in self.completed if self.trials[t].score is not None]
        return sorted(scored, key=lambda t: (-self.trials[t].score, t))[: self.k]

    # commands

    def assign(self, name: str, holder: str | None, slots: int) -> list[tuple[int, int]]:
        given = []
        for _ in range(slots):
            if self.queue:
                trial = self.queue.pop(0)
            elif not self.finished and self.proposals < self.budget:
                trial = self._append(ev.CANDIDATE_PROPOSED)
                self.trials[trial] = ModelTrial(trial)
                self.proposals += 1
            else:
                break
            lease = self._append(ev.TRIAL_ASSIGNED)
            self.leases[lease] = ModelLease(trial, name, holder)
            self.trials[trial].status, self.trials[trial].lease = RUNNING, lease
            given.append((lease, trial))
        return given

    def sent(self, leases: list[int], now: float) -> None:
        for lease in leases:
            if lease in self.leases:
                self.leases[lease].deadline = now + TIMEOUT

    def _end(self, lease: int) -> ModelTrial:
        trial = self.trials[self.leases.pop(lease).trial]
        trial.lease = None
        return trial

    def complete(self, lease: int, value: float) -> bool:
        if lease not in self.leases:
            return False
        self._append(ev.TRIAL_COMPLETED)
        trial = self._end(lease)
        trial.status, trial.score = COMPLETED, self.sign * float(value)
        self.completed.append(trial.id)
        return True

    def fail(self, lease: int, blame: str) -> bool:
        if lease not in self.leases:
            return False
        self._append(ev.TRIAL_FAILED)
        trial = self._end(lease)
        trial.status, trial.blame = FAILED, blame
        self.failed.append(trial.id)
        return True

    def lose(self, lease: int) -> None:
        if lease not in self.leases:
            return
        self._append(ev.TRIAL_LOST)
        trial = self._end(lease)
        trial.status = QUEUED
        trial.losses += 1
        self.queue.insert(0, trial.id)
        if trial.losses >= self.max_losses:
            self._append(ev.TRIAL_FAILED)
            self.queue.remove(trial.id)
            trial.status, trial.blame = FAILED, INFRASTRUCTURE
            self.failed.append(trial.id)

    def heartbeat(self, name: str, holder: str | None, leases: list[int], now: float) -> list[int]:
        unknown = []
        for lease in leases:
            if lease in self.leases and self.holds(self.leases[lease], name, holder):
                self.leases[lease].deadline = now + TIMEOUT
            else:
                unknown.append(lease)
        return unknown

    def expire(self, now: float) -> None:
        for lease in [lease for lease in sorted(self.leases) if self.leases[lease].deadline < now]:
            self.lose(lease)

    def forget(self, name: str, holder: str | None, keep: set[int]) -> None:
        for lease in sorted(self.leases):
            if self.holds(self.leases[lease], name, holder) and lease not in keep:
                self.lose(lease)

    def finish_if_done(self) -> bool:
        if not self.finished and not self.queue and not self.leases and self.proposals >= self.budget:
            self._append(ev.SEARCH_FINISHED)
            self.finished = True
        return self.finished


# -- the machine -----------------------------------------------------------------------------------

# (name, holder): t0 is a trainer from before holders were recorded; impostors borrow names or proofs.
TRAINERS = [("t0", None), ("t1", "h1"), ("t2", "h2")]
CALLERS = [*TRAINERS, ("t1", None), ("t1", "h2"), ("t0", "h9"), ("t3", None)]
METRIC = "val_acc"  # nb201's search metric, in [0, 100]

VALID = st.sampled_from([0, 10, 10.0, 42.5, 90, 90.0, 100])  # few values: ties are common
EXTRAS = st.sampled_from([{}, {"train_time": 12.0}, {"latency": 0.0, "model_size": 3}])
# Results the engine must refuse, and whose fault each one is (the rule, not the engine's wording): a
# diverged training is the candidate's, so is a result without the search metric; a metric the run does
# not know or a value out of its bounds is the trainer's.
REFUSED = st.sampled_from([
    ("not finite", {METRIC: math.nan}, CANDIDATE), ("not finite", {METRIC: math.inf}, CANDIDATE),
    ("not finite", {METRIC: -math.inf}, CANDIDATE), ("not finite", {METRIC: 50.0, "train_time": math.nan}, CANDIDATE),
    ("unknown metric", {METRIC: 50.0, "bogus": 1.0}, INFRASTRUCTURE),
    ("unknown metric", {METRIC: 50.0, "val_loss": 0.3}, INFRASTRUCTURE),
    ("unknown metric", {"val_accuracy": 0.5}, INFRASTRUCTURE),
    ("out of bounds", {METRIC: 100.5}, INFRASTRUCTURE), ("out of bounds", {METRIC: -1}, INFRASTRUCTURE),
    ("out of bounds", {METRIC: 1e300}, INFRASTRUCTURE),
    ("out of bounds", {METRIC: 50.0, "latency": -2.0}, INFRASTRUCTURE),
    ("not a number", {METRIC: True}, INFRASTRUCTURE),
    ("no search metric", {}, CANDIDATE), ("no search metric", {"train_time": 2.0}, CANDIDATE),
])


class FoldModel(RuleBasedStateMachine):
    """A real scheduler on a real log, driven by random commands, checked against :class:`Model`."""

    def __init__(self) -> None:
        super().__init__()
        self.directory: Path | None = None
        self.log = None

    @initialize(trials=st.integers(1, 8), k=st.integers(1, 3), max_losses=st.integers(1, 3),
                mode=st.sampled_from(["max", "min"]), tie_break=st.sampled_from(["first", "val_loss"]),
                slots=st.integers(0, 3))
    def start(self, trials: int, k: int, max_losses: int, mode: str, tie_break: str, slots: int = 0) -> None:
        """A new run (its config drawn), and a first trainer asking for ``slots`` candidates at once."""
        config = nb201_config(search__algorithm="random", search__trials=trials, search__beam__k=k,
                              search__mode=mode, search__tie_break=tie_break, engine__max_losses=max_losses)
        assert config.engine.lease_timeout == TIMEOUT and config.search.metric == METRIC
        self.directory = Path(tempfile.mkdtemp(prefix="fold-model-"))
        self.log, self.state = create_run(self.directory / "run", config, sync=False)
        self.scheduler = Scheduler(self.state, now=0.0, clock=lambda: 1000.0)
        self.model = Model(trials, k, max_losses, 1.0 if mode == "max" else -1.0)
        if slots:
            self.ready(TRAINERS[1], slots)

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def commit(self) -> None:
        """Check the step drafted exactly the events the model predicts, and store them."""
        drafts = self.scheduler.take()
        assert [event.type for event, _ in drafts] == self.model.events, "the step appended other events"
        assert [event.seq for event, _ in drafts] == list(range(self.model.seq - len(drafts) + 1, self.model.seq + 1))
        self.model.events = []
        if drafts:
            self.log.append([raw for _, raw in drafts], expected_head=drafts[0][0].seq - 1)

    def lease(self, pick: int) -> int:
        """Mostly a lease in flight; sometimes any number (a late, repeated or invented lease)."""
        in_flight = sorted(self.model.leases)
        return in_flight[pick % len(in_flight)] if in_flight and pick < 90 else pick % 40

    # -- rules

    @rule(trainer=st.sampled_from(TRAINERS), slots=st.integers(1, 3))
    def ready(self, trainer: tuple[str, str | None], slots: int) -> None:
        name, holder = trainer
        work = self.scheduler.assign(name, slots, holder=holder)
        assert [(item.lease, item.trial) for item in work] == self.model.assign(name, holder, slots)
        self.commit()

    @rule(picks=st.lists(st.integers(0, 99), max_size=3), now=st.integers(0, 100))
    def send(self, picks: list[int], now: int) -> None:
        leases = [self.lease(pick) for pick in picks]
        self.scheduler.sent(leases, now=float(now))
        self.model.sent(leases, float(now))
        self.commit()

    @rule(picks=st.lists(st.tuples(st.integers(0, 99), VALID, EXTRAS), min_size=1, max_size=3))
    def complete(self, picks: list[tuple[int, float, dict]]) -> None:
        """Results with a valid score, for up to three leases (a trainer's slots) in one batch."""
        for pick, value, extras in picks:
            lease = self.lease(pick)
            recorded, _ = self.scheduler.complete(lease, {METRIC: value, **extras}, {})
            assert recorded == self.model.complete(lease, value)
        self.commit()

    @rule(pick=st.integers(0, 99), case=REFUSED)
    def complete_refused(self, pick: int, case: tuple[str, dict, str]) -> None:
        """A result the run must refuse fails its trial, blamed as the rule says."""
        _, metrics, blame = case
        lease = self.lease(pick)
        recorded, _ = self.scheduler.complete(lease, metrics, {})
        assert recorded == self.model.fail(lease, blame)
        self.commit()

    @rule(pick=st.integers(0, 99), blame=st.sampled_from([CANDIDATE, INFRASTRUCTURE]))
    def fail(self, pick: int, blame: str) -> None:
        lease = self.lease(pick)
        recorded, _ = self.scheduler.fail(lease, "it broke", blame)
        assert recorded == self.model.fail(lease, blame)
        self.commit()

    @rule(pick=st.integers(0, 99))
    def lose(self, pick: int) -> None:
        lease = self.lease(pick)
        self.scheduler.lose(lease, "connection dropped")
        self.model.lose(lease)
        self.commit()

    @rule(caller=st.sampled_from(CALLERS), picks=st.lists(st.integers(0, 99), max_size=3), now=st.integers(0, 100))
    def heartbeat(self, caller: tuple[str, str | None], picks: list[int], now: int) -> None:
        name, holder = caller
        leases = [self.lease(pick) for pick in picks]
        unknown = self.scheduler.heartbeat(name, holder, leases, float(now))
        assert unknown == self.model.heartbeat(name, holder, leases, float(now))
        self.commit()

    @rule(old=st.lists(st.integers(0, 99), max_size=2), now=st.integers(0, 200))
    def expire(self, old: list[int], now: int) -> None:
        """Some leases' work sent two timeouts before ``now`` (their deadlines are in the past), then expiry:
        every lease whose deadline passed is lost, in lease order (so the last one lost is first in line)."""
        leases = [self.lease(pick) for pick in old]
        self.scheduler.sent(leases, now=now - 2 * TIMEOUT)
        self.model.sent(leases, now - 2 * TIMEOUT)
        self.scheduler.expire(float(now))
        self.model.expire(float(now))
        self.commit()

    @rule(caller=st.sampled_from(CALLERS), keep=st.lists(st.integers(0, 99), max_size=2))
    def forget_trainer(self, caller: tuple[str, str | None], keep: list[int]) -> None:
        name, holder = caller
        kept = {self.lease(pick) for pick in keep}
        self.scheduler.forget_trainer(name, holder, kept, reason="reconnected")
        self.model.forget(name, holder, kept)
        self.commit()

    @rule()
    def finish_if_done(self) -> None:
        assert self.scheduler.finish_if_done() == self.model.finish_if_done()
        self.commit()

    # -- invariants

    @invariant()
    def state_agrees_with_the_model(self) -> None:
        state, model = self.state, self.model
        assert state.seq == model.seq
        assert {t.id: (t.status.value, t.lease, t.losses) for t in state.trials.values()} == {
            t.id: (t.status, t.lease, t.losses) for t in model.trials.values()}, "trials differ"
        assert list(state.queue) == model.queue, "queue order differs"
        assert {lease.id: (lease.trial, lease.trainer, lease.holder) for lease in state.leases.values()} == {
            lease: (held.trial, held.trainer, held.holder) for lease, held in model.leases.items()}, "leases differ"
        assert self.scheduler.deadlines == {lease: held.deadline for lease, held in model.leases.items()}
        assert state.completed == model.completed
        assert state.failed == model.failed
        assert [state.trials[t].score for t in state.completed] == [model.trials[t].score for t in model.completed]
        assert [state.trials[t].blame for t in state.failed] == [model.trials[t].blame for t in model.failed]
        assert state.top == model.top(), "top-K differs"
        assert state.proposals == model.proposals <= model.budget
        assert (state.finished is not None) == model.finished

    @invariant()
    def replaying_the_stored_log_gives_the_live_state(self) -> None:
        assert self.log.head == self.state.seq
        assert fold_records(self.log.records()) == self.state


FoldModel.TestCase.settings = settings(max_examples=250, stateful_step_count=40, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
test_the_fold_follows_the_model = FoldModel.TestCase
