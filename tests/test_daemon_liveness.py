"""A real trainer daemon against a fake engine: a ROUTER socket the test answers message by message.

The fake engine lets a test say exactly what the engine says, and leave out what a restarted engine
never answers, which a real engine cannot be made to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from support import nb201_config

from engine import protocol

WAIT = 5.0  # seconds a test waits for the trainer's next message


class FakeEngine:
    """A ROUTER socket on a free loopback port; the test receives and replies by hand."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:0")
        self.endpoint = self.router.last_endpoint.decode()
        self.config = nb201_config()

    def expect(self, kind: str, timeout: float = WAIT) -> tuple[bytes, dict[str, Any]]:
        """The trainer's next message, which must be a ``kind``: its connection and fields."""
        assert self.router.poll(timeout * 1000), f"the trainer sent nothing within {timeout:g}s (expected {kind})"
        identity, frame = self.router.recv_multipart()
        got, fields = protocol.decode(frame, protocol.TRAINER_MESSAGES)
        assert got == kind, f"expected {kind} from the trainer, got {got}"
        return identity, fields

    def send(self, identity: bytes, frame: bytes) -> None:
        self.router.send_multipart([identity, frame])

    def welcome(self, identity: bytes, name: str) -> None:
        self.send(identity, protocol.encode("welcome", run="r1", name=name, config=self.config, heartbeat=0.3,
                                            lease_timeout=3.0))

    def close(self) -> None:
        self.router.close(0)
        self.context.term()


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()


def test_an_idle_trainer_asks_again_when_its_ready_got_no_work_whatever_else_it_heard(
        engine: FakeEngine, trainer_thread) -> None:
    trainer_thread(engine.endpoint, name="idle")
    identity, hello = engine.expect("hello")
    engine.welcome(identity, hello["name"])
    engine.expect("ready")
    asked = time.monotonic()
    # The engine never saw that ready (it restarted, say) but answers something else: the trainer
    # holds nothing it would heartbeat, so only asking again keeps it from waiting forever.
    engine.send(identity, protocol.encode("beat", unknown=[]))
    _, ready = engine.expect("ready")
    assert ready["slots"] == 1
    assert time.monotonic() - asked >= 0.5, "it waits a few heartbeats (0.9s here) before asking again"


def test_a_trainer_takes_the_name_the_engine_gives_it_and_keeps_its_secret(engine: FakeEngine,
                                                                           trainer_thread) -> None:
    daemon, _ = trainer_thread(engine.endpoint, name="taken")
    identity, first = engine.expect("hello")
    assert first["name"] == "taken" and re.fullmatch("[0-9a-f]{32}", first["secret"])
    engine.welcome(identity, "other-name")
    engine.expect("ready")
    engine.send(identity, protocol.error("hello", "say hello first"))  # the trainer reconnects
    identity, second = engine.expect("hello")
    assert second["name"] == "other-name" == daemon.name
    assert second["secret"] == first["secret"], "one trainer process keeps one secret across connections"
    engine.welcome(identity, "other-name")  # a stopping trainer still waits out an unanswered hello
    engine.expect("ready")
