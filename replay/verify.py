"""``engine replay --verify``: re-run the searcher at every recorded proposal and compare.

Replay itself never calls the searcher (proposals are read from the log). Verification does, at
each CandidateProposed, on the state folded from everything before it; an identical proposal at
every position proves the search is a deterministic function of its log. The first difference
stops verification loudly.

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

from engine import events as ev
from engine.fold import fold
from engine.runs import reader_at
from engine.searchers import Proposer, SpaceExhausted
from engine.state import State

COMPARED = ("kind", "architecture", "hyperparameters", "key", "parent", "mutation", "seed", "position", "inherit",
            "teacher")


class Mismatch(AssertionError):
    """A recorded proposal that the searcher does not reproduce."""

    def __init__(self, seq: int, field: str, recorded: Any, proposed: Any) -> None:
        super().__init__(
            f"proposal at event {seq} does not reproduce: {field} was {recorded!r} in the log, "
            f"the searcher now proposes {proposed!r}"
        )
        self.seq, self.field, self.recorded, self.proposed = seq, field, recorded, proposed


@dataclass
class Verification:
    events: int
    proposals: int
    seconds: float


def verify(run_dir: Path | str, on_proposal: Callable[[int], None] | None = None,
           at: int | None = None) -> Verification:
    """Check every recorded proposal of a run (up to event ``at``); raises :class:`Mismatch` at the
    first difference."""
    started = time.perf_counter()
    proposer = Proposer()
    state = State()
    proposals = 0
    with reader_at(run_dir, at) as log:
        for event in log.read(1, at):
            if event.type == ev.CANDIDATE_PROPOSED:
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
            fold(state, event)
    return Verification(state.seq, proposals, time.perf_counter() - started)
