"""A real trainer daemon against a fake engine: a ROUTER socket the test answers message by message.

The fake engine lets a test say exactly what the engine says, and leave out what a restarted engine
never answers, which a real engine cannot be made to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from support import FakeEngine, tower_item

from engine import protocol


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()


def test_an_idle_trainer_asks_again_when_its_ready_got_no_work_whatever_else_it_heard(
        engine: FakeEngine, trainer_thread) -> None:
    trainer_thread(engine.endpoint, name="idle")
    hello = engine.expect("hello")
    engine.welcome(hello["name"])
    engine.expect("ready")
    asked = time.monotonic()
    # The engine never saw that ready (it restarted, say) but answers something else: the trainer
    # holds nothing it would heartbeat, so only asking again keeps it from waiting forever.
    engine.send(protocol.encode("beat", unknown=[]))
    ready = engine.expect("ready")
    assert ready["slots"] == 1
    assert time.monotonic() - asked >= 0.5, "it waits a few heartbeats (0.9s here) before asking again"


def test_a_trainer_takes_the_name_the_engine_gives_it_and_keeps_its_secret(engine: FakeEngine,
                                                                           trainer_thread) -> None:
    daemon, _ = trainer_thread(engine.endpoint, name="taken")
    first = engine.expect("hello")
    assert first["name"] == "taken" and re.fullmatch("[0-9a-f]{32}", first["secret"])
    engine.welcome("other-name")
    engine.expect("ready")
    engine.send(protocol.error("hello", "say hello first"))  # the trainer reconnects
    second = engine.expect("hello")
    assert second["name"] == "other-name" == daemon.name
    assert second["secret"] == first["secret"], "one trainer process keeps one secret across connections"
    engine.welcome("other-name")  # a stopping trainer still waits out an unanswered hello
    engine.expect("ready")


def test_a_trainer_says_hello_again_when_reading_the_runs_data_outlasted_the_engines_patience(
        engine: FakeEngine, trainer_thread) -> None:
    """The engine forgets a session silent for a lease timeout; a trainer reading a large dataset after its
    welcome is silent that long, and its first ready would be refused (\"ready before hello\")."""
    trainer_thread(engine.endpoint, name="slow-reader")
    engine.welcome(engine.expect("hello")["name"], run="big", lease_timeout=1e-6)  # any reading outlasts this
    engine.welcome(engine.expect("hello")["name"], run="big")  # the data is read: this welcome is quick
    assert engine.expect("ready")["slots"] == 1


def test_a_trainer_whose_engine_stops_answering_reconnects_though_it_keeps_sending_heartbeats(
        engine: FakeEngine, trainer_thread) -> None:
    """Its heartbeats for a reported lease go unanswered (a connection stalled in TCP back-off, an engine
    gone): the patience runs from the first unanswered message, so the trainer says hello again."""
    cell = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3"]
    trainer_thread(engine.endpoint, name="patient")
    engine.welcome(engine.expect("hello")["name"])
    engine.expect("ready")
    engine.send(protocol.encode("work", items=[tower_item(5, cell).to_message()], retry=1.0, done=False))
    while (message := engine.receive("result"))[0] != "result":
        engine.send(protocol.encode("beat", unknown=[]))  # answered while it evaluates
    silent, heartbeats = time.monotonic(), 0
    while (message := engine.receive("hello"))[0] == "heartbeat" and time.monotonic() - silent < 20:
        heartbeats += 1  # never answered, nor the result
    assert message[0] == "hello", "it gave up on the silent engine"
    assert heartbeats >= 5 and 9 < time.monotonic() - silent < 14, "it waited out its patience (10s here)"
