"""The trainer daemon's held leases: each one record with a phase, moved only by its transitions.

The first tests walk every transition of :class:`HeldLease` from every phase, with no sockets; the last
drives a real daemon against a fake engine (a ROUTER socket the test answers by hand) through a lease the
engine forgets while it runs, a report resent after a reconnect, and the acknowledgement that ends it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from support import FakeEngine, nb201_config, tower_item

from engine import protocol
from trainers.leases import HeldLease, Phase, PhaseError

WAITING, RUNNING, ABANDONED, FINISHED, REPORTED, RELEASED = Phase

ITEM = tower_item(7, ["dense_32"], trial=3)
FINISHED_MESSAGE = ("result", {"lease": 7, "metrics": {"val_acc": 0.5}, "inherited": []})
SENT_MESSAGE = ("result", {**FINISHED_MESSAGE[1], "artifacts": {}, "slots": 0})

TRANSITIONS: dict[str, Callable[[HeldLease], None]] = {
    "start": lambda held: held.start(Future()),
    "finish": lambda held: held.finish(FINISHED_MESSAGE, {"weights": b"w"}),
    "abandon": HeldLease.abandon,
    "discard": HeldLease.discard,
    "report": lambda held: held.report(SENT_MESSAGE),
    "acknowledged": HeldLease.acknowledged,
    "drop": HeldLease.drop,
}

#: (transition, phase it starts from) -> the phase it ends in; every other pair is impossible.
ALLOWED: dict[tuple[str, Phase], Phase] = {
    ("start", WAITING): RUNNING,
    ("finish", WAITING): FINISHED,  # a blob it needs was refused: it fails without being evaluated
    ("finish", RUNNING): FINISHED,
    ("abandon", RUNNING): ABANDONED,
    ("discard", ABANDONED): RELEASED,
    ("report", FINISHED): REPORTED,
    ("acknowledged", REPORTED): RELEASED,
    ("drop", WAITING): RELEASED,
    ("drop", FINISHED): RELEASED,
    ("drop", REPORTED): RELEASED,
}

#: How a fresh record reaches each phase, by allowed transitions only.
ROUTE: dict[Phase, list[str]] = {
    WAITING: [],
    RUNNING: ["start"],
    ABANDONED: ["start", "abandon"],
    FINISHED: ["start", "finish"],
    REPORTED: ["start", "finish", "report"],
    RELEASED: ["start", "finish", "report", "acknowledged"],
}


def held_in(phase: Phase) -> HeldLease:
    held = HeldLease(ITEM)
    for transition in ROUTE[phase]:
        TRANSITIONS[transition](held)
    assert held.phase is phase
    return held


def test_every_phase_can_be_reached_and_every_allowed_transition_is_known() -> None:
    assert set(ROUTE) == set(Phase)
    assert {transition for transition, _ in ALLOWED} == set(TRANSITIONS)


@pytest.mark.parametrize(("transition", "phase"), [
    pytest.param(transition, phase, id=f"{transition}-from-{phase.name}")
    for transition, phase in itertools.product(TRANSITIONS, Phase)
])
def test_a_transition_moves_a_lease_only_from_the_phases_it_allows(transition: str, phase: Phase) -> None:
    held = held_in(phase)
    if (transition, phase) in ALLOWED:
        TRANSITIONS[transition](held)
        assert held.phase is ALLOWED[transition, phase]
    else:
        with pytest.raises(PhaseError, match=f"lease 7 is {phase.name}: it can become"):
            TRANSITIONS[transition](held)
        assert held.phase is phase, "an impossible transition changes nothing"


def test_a_lease_carries_what_its_phase_needs_and_lets_go_of_the_rest() -> None:
    held = HeldLease(ITEM)
    assert (held.lease, held.phase, held.future, held.message) == (7, WAITING, None, None)
    future: Future = Future()
    held.start(future)
    assert held.future is future
    held.finish(FINISHED_MESSAGE, {"weights": b"w"})
    assert held.future is None, "the finished future holds the outcome, artifacts and all"
    assert (held.message, held.artifacts) == (FINISHED_MESSAGE, {"weights": b"w"})
    held.report(SENT_MESSAGE)
    assert (held.message, held.artifacts) == (SENT_MESSAGE, {}), "uploaded artifacts are not kept until the ack"
    held.acknowledged()
    assert held.phase is RELEASED


def test_a_lease_that_never_ran_fails_with_no_artifacts() -> None:
    held = HeldLease(ITEM)
    held.finish(("fail", {"lease": 7, "reason": "an artifact it needs is unavailable", "blame": "infrastructure",
                         "metrics": {}}))
    assert held.phase is FINISHED and held.artifacts == {}


def test_an_impossible_transition_names_the_lease_its_phase_and_the_phases_allowed() -> None:
    with pytest.raises(PhaseError, match="^lease 7 is RELEASED: it can become RELEASED only from "
                                         "WAITING or FINISHED or REPORTED$"):
        held_in(RELEASED).drop()


# -- through a real daemon ------------------------------------------------------------------------

DELAY = 1.0  # seconds each evaluation takes: long enough for the engine to forget a lease while it runs
CELL = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "skip_connect"]


class HeartbeatingEngine(FakeEngine):
    """A fake engine whose test answers each message by hand, except heartbeats: those are recorded and
    answered with the leases it has forgotten."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: set[int] = set()
        self.heartbeats: list[list[int]] = []
        self.refuse_next_heartbeat = False

    def expect(self, kind: str) -> dict[str, Any]:
        """The trainer's next message other than a heartbeat, which must be a ``kind``."""
        while True:
            got, fields = self.receive(kind)
            if got != "heartbeat":
                assert got == kind, f"expected {kind} from the trainer, got {got} {fields}"
                return fields
            self.heartbeats.append(fields["leases"])
            if self.refuse_next_heartbeat:  # as an engine that restarted: the trainer must say hello again
                self.refuse_next_heartbeat = False
                self.send(protocol.error("hello", "say hello first"))
            else:
                self.send(protocol.encode("beat", unknown=sorted(self.forgotten & set(fields["leases"]))))

    def work(self, *leases: int, done: bool = False) -> None:
        items = [tower_item(lease, CELL).to_message() for lease in leases]
        self.send(protocol.encode("work", items=items, retry=1.0, done=done))

    def ack(self, lease: int) -> None:
        self.send(protocol.encode("ack", lease=lease, accepted=True, reason=""))


@pytest.fixture
def engine() -> Iterator[HeartbeatingEngine]:
    fake = HeartbeatingEngine()
    yield fake
    fake.close()


def test_a_daemon_reports_only_the_leases_still_wanted_resends_until_acked_then_lets_go(
        engine: HeartbeatingEngine, trainer_thread) -> None:
    daemon, thread = trainer_thread(engine.endpoint, name="phases")
    hello = engine.expect("hello")
    assert hello["leases"] == []
    engine.welcome(hello["name"], nb201_config(evaluator__delay=DELAY))
    engine.expect("ready")
    engine.work(1, 2)  # two for one slot: lease 1 runs, lease 2 waits its turn
    engine.forgotten.add(1)  # from its first heartbeat on, the engine says it no longer knows lease 1

    result = engine.expect("result")
    assert result["lease"] == 2, "the forgotten lease is never reported"
    assert daemon.evaluated == 2, "lease 1 was forgotten while it ran: its evaluation ended and was discarded"
    assert [1, 2] in engine.heartbeats, "both were heartbeated while held"

    engine.refuse_next_heartbeat = True  # the unacknowledged report outlives the connection
    hello = engine.expect("hello")
    assert hello["leases"] == [2], "a reported lease is held until the engine acknowledges it"
    engine.welcome(hello["name"], nb201_config(evaluator__delay=DELAY))
    resent = engine.expect("result")
    assert (resent["lease"], resent["metrics"], resent["slots"]) == (2, result["metrics"], 0)
    engine.ack(2)
    engine.expect("ready")
    engine.work(3)  # sent after the ack: every heartbeat naming lease 3 was sent after the ack arrived
    assert engine.expect("result")["lease"] == 3
    after_ack = [leases for leases in engine.heartbeats if 3 in leases]
    assert after_ack and all(leases == [3] for leases in after_ack), "an acknowledged lease is heartbeated no more"

    engine.ack(3)
    engine.work(done=True)
    engine.expect("bye")
    thread.join(timeout=FakeEngine.WAIT)
    assert not thread.is_alive() and daemon.evaluated == 3
