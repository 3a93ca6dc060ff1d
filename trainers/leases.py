"""A lease as a trainer daemon holds it: one record from WORK until the engine acknowledges its report, with an
explicit :class:`Phase` and the transitions between phases as methods that refuse impossible moves.

Example::

    >>> held = HeldLease(item)                 # WAITING: in the backlog
    >>> held.start(future)                     # RUNNING in the worker thread
    >>> held.finish(("result", fields), artifacts)
    >>> held.report(("result", fields))        # REPORTED until the engine's ACK
    >>> held.acknowledged()                    # RELEASED
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum

from engine.state import Blame, Epoch
from engine.work import WorkItem
from trainers.client import Message


class Phase(Enum):
    """Where a held lease stands."""

    WAITING = "waiting"      # in the backlog: its blobs are fetched, then it is evaluated
    RUNNING = "running"      # being evaluated in the worker thread
    ABANDONED = "abandoned"  # still running, but the engine no longer wants it: its outcome is discarded
    FINISHED = "finished"    # outcome ready: its artifacts upload, then it is reported
    REPORTED = "reported"    # result or fail sent, and sent again after every hello until the engine acks it
    RELEASED = "released"    # no longer held: acknowledged, dropped or discarded


class PhaseError(RuntimeError):
    """A lease was asked for a transition its phase does not allow (a bug in the daemon)."""


def failure(lease: int, reason: str, blame: Blame, metrics: dict[str, float] | None = None) -> Message:
    """The FAIL report of ``lease`` (``metrics``: what was measured before it failed, such as the parameter count
    of a tower over ``space.max_params``)."""
    return "fail", {"lease": lease, "reason": reason, "blame": blame, "metrics": dict(metrics or {})}


@dataclass
class HeldLease:
    """One lease a trainer answers for, from WORK until the engine acknowledges its report.

    Its transitions, each a method that refuses to start from any other phase::

        WAITING --start--> RUNNING --finish--> FINISHED --report--> REPORTED --acknowledged--> RELEASED
        WAITING --finish--> FINISHED                  (a blob it needs was refused: it fails unevaluated)
        RUNNING --abandon--> ABANDONED --discard--> RELEASED      (unwanted while its thread runs on)
        WAITING, FINISHED or REPORTED --drop--> RELEASED          (the engine no longer wants it)

    A RELEASED record has left the daemon's table; its phase tells code that kept it across a blob
    transfer (which dispatches the engine's messages) that it was dropped meanwhile.
    """

    item: WorkItem
    phase: Phase = Phase.WAITING
    future: Future | None = None  # RUNNING, ABANDONED: the evaluation in the worker thread
    message: Message | None = None  # FINISHED: the result or fail to send; REPORTED: what was sent
    artifacts: dict[str, bytes] = field(default_factory=dict)  # FINISHED: to upload before reporting
    curve: list[Epoch] = field(default_factory=list)  # the epochs its evaluation reported (the worker appends)
    sent: int = 0  # how many of them this connection has sent
    sent_at: float = -math.inf
    stopping: bool = False  # the engine said to stop after the current epoch (read by the worker thread)
    urgent: bool = False  # an epoch the engine judges (a rung) waits to be sent: no waiting for the next second

    @property
    def lease(self) -> int:
        return self.item.lease

    def start(self, future: Future) -> None:
        self._move(Phase.RUNNING, Phase.WAITING)
        self.future = future

    def finish(self, message: Message, artifacts: dict[str, bytes] | None = None) -> None:
        """Its outcome is ready: ``message`` is reported once ``artifacts`` have uploaded."""
        self._move(Phase.FINISHED, Phase.WAITING, Phase.RUNNING)
        self.future = None  # it holds the evaluation's outcome, artifacts and all
        self.message, self.artifacts = message, artifacts or {}

    def abandon(self) -> None:
        self._move(Phase.ABANDONED, Phase.RUNNING)

    def discard(self) -> None:
        """Its abandoned evaluation ended; the outcome goes nowhere."""
        self._move(Phase.RELEASED, Phase.ABANDONED)

    def report(self, message: Message) -> None:
        """It is reported now; ``message`` is what each new connection sends again until the ack."""
        self._move(Phase.REPORTED, Phase.FINISHED)
        self.message, self.artifacts = message, {}

    def acknowledged(self) -> None:
        self._move(Phase.RELEASED, Phase.REPORTED)

    def drop(self) -> None:
        self._move(Phase.RELEASED, Phase.WAITING, Phase.FINISHED, Phase.REPORTED)

    def _move(self, to: Phase, *allowed: Phase) -> None:
        if self.phase not in allowed:
            raise PhaseError(f"lease {self.lease} is {self.phase.name}: it can become {to.name} only from "
                             f"{' or '.join(phase.name for phase in allowed)}")
        self.phase = to
