"""``engine replay --verify``: re-run the searcher at every recorded proposal, and the stopping rule at every
epoch report, and compare.

Replay itself never calls the searcher (proposals are read from the log). Verification does, at
each CandidateProposed, on the state folded from everything before it; an identical proposal at
every position proves the search is a deterministic function of its log. Likewise it asks the stopping
rule (``engine/stopping.py``) after each EpochsReported whether to stop that trial: the answer must be
the TrialStopped that follows it, or no stop. Stops at the deadline are the clock's, not re-derived. With
``asha-promote`` it asks the rule at each TrialPromoted which paused trial goes on (the same one, from the same
rung, for the same figures), and at each proposal that none was due. The first difference stops verification
loudly. Before any of that it walks the log's hash chain (``engine/chain.py``): an event changed, inserted or
removed after it was written stops it at that event.

Example::

    >>> verify("runs/nb").proposals
    300
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import chain
from engine import events as ev
from engine.fold import fold
from engine.runs import reader_at
from engine.searchers import Proposer, SpaceExhausted
from engine.state import State
from engine.stopping import RULES, Decision, decide, promotion

COMPARED = ("kind", "architecture", "hyperparameters", "key", "parent", "mutation", "seed", "position", "inherit",
            "teacher")


class Mismatch(AssertionError):
    """A recorded decision (a proposal, a stop) that the searcher or the stopping rule does not reproduce."""

    def __init__(self, seq: int, field: str, recorded: Any, proposed: Any, what: str = "proposal") -> None:
        by = "the searcher now proposes" if what == "proposal" else "the stopping rule now decides"
        super().__init__(f"{what} at event {seq} does not reproduce: {field} was {recorded!r} in the log, "
                         f"{by} {proposed!r}")
        self.seq, self.field, self.recorded, self.proposed = seq, field, recorded, proposed


@dataclass
class Verification:
    events: int
    proposals: int
    seconds: float
    stops: int = 0
    promotions: int = 0
    chain: chain.Chain | None = None


def verify(run_dir: Path | str, on_proposal: Callable[[int], None] | None = None,
           at: int | None = None) -> Verification:
    """Check the hash chain and every recorded proposal and stop decision of a run (up to event ``at``); raises
    :class:`engine.chain.ChainBroken` or :class:`Mismatch` at the first difference."""
    started = time.perf_counter()
    proposer = Proposer()
    state = State()
    proposals = stops = promotions = 0
    pending: tuple[int, int, Decision | None] | None = None  # after an epoch report: (seq, trial, the rule's answer)
    with reader_at(run_dir, at) as log:
        linked = chain.check(log.read_raw(1, at))
        for event in log.read(1, at):
            ruled = event.type == ev.TRIAL_STOPPED and event.payload["rule"] in RULES
            if pending is not None:
                stops += _check_stop(pending, event if ruled else None)
                pending = None
            elif ruled:
                raise Mismatch(event.seq, "stop", event.payload["rule"], "no decision: it follows no epoch report",
                               what="stop")
            if event.type == ev.TRIAL_PROMOTED:
                _check_promotion(state, event)
                promotions += 1
            if event.type == ev.CANDIDATE_PROPOSED:
                due = promotion(state)
                if due is not None:
                    raise Mismatch(event.seq, "promotion", f"a new candidate ({event.payload['key']})",
                                   f"promote trial {due.trial} from rung {due.rung}", what="promotion")
                try:
                    expected = proposer.propose(state)
                except SpaceExhausted as exc:
                    raise Mismatch(event.seq, "proposal", event.payload["key"], f"nothing ({exc})") from None
                for name in COMPARED:
                    if expected[name] != event.payload[name]:
                        raise Mismatch(event.seq, name, event.payload[name], expected[name])
                proposals += 1
                if on_proposal is not None:
                    on_proposal(proposals)
            reported = state.trials[event.payload["trial"]] if event.type == ev.EPOCHS_REPORTED else None
            since = reported.curve[-1].epoch if reported is not None and reported.curve else 0
            fold(state, event)
            if reported is not None:
                pending = (event.seq, reported.id, decide(state, reported, since))
        if pending is not None and at is None:
            stops += _check_stop(pending, None)
    return Verification(state.seq, proposals, time.perf_counter() - started, stops, promotions, linked)


def _check_promotion(state: State, event: ev.Event) -> None:
    """Compare a recorded TrialPromoted with the paused trial the rule promotes at that state."""
    expected, recorded = promotion(state), event.payload
    if expected is None:
        raise Mismatch(event.seq, "promotion", f"trial {recorded['trial']}", "no promotion", what="promotion")
    for name, value in expected._asdict().items():
        if recorded[name] != value:
            raise Mismatch(event.seq, name, recorded[name], value, what="promotion")


def _check_stop(pending: tuple[int, int, Decision | None], event: ev.Event | None) -> int:
    """Compare the rule's answer after an epoch report with what the log holds next (a TrialStopped or not)."""
    seq, trial, expected = pending
    if event is None:
        if expected is not None:
            raise Mismatch(seq, "stop", "none", f"stop trial {trial} after epoch {expected.epoch}", what="stop")
        return 0
    recorded = event.payload
    if expected is None:
        raise Mismatch(event.seq, "stop", f"{recorded['rule']} stop of trial {recorded['trial']}", "none",
                       what="stop")
    for name, value in (("trial", trial), ("epoch", expected.epoch), ("rule", expected.rule),
                        ("figures", expected.figures), ("reason", expected.reason)):
        if recorded[name] != value:
            raise Mismatch(event.seq, name, recorded[name], value, what="stop")
    return 1
