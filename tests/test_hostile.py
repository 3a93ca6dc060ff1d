"""Hostile peers against a real engine (issue 11): each attack is answered or dropped, counted, and the
engine keeps serving; nobody but a lease's holder can report on it; metrics are checked; blob uploads
are bounded; and two liveness bugs (leases expiring before their work left, a finished run that no
longer answers) stay fixed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Peer, ServedRun, hello_fields, nb201_config, tower_config, wait_for

from engine import events as ev
from engine import protocol
from engine import watch as refused
from engine.keys import make_keys, trainer_keys
from engine.limits import Limits
from engine.runs import read_endpoints
from engine.scheduler import Scheduler
from engine.searchers import Proposer
from engine.server import EngineServer
from engine.sessions import Peer as Sender
from replay import verify
from trainers.client import EngineClient, EngineGone

MIB = 1 << 20


def frame_of(fields: dict[str, bytes]) -> bytes:
    """A msgpack map whose values are given already encoded (msgpack's packer refuses deep nesting)."""
    assert len(fields) < 16
    return bytes([0x80 | len(fields)]) + b"".join(msgpack.packb(key) + value for key, value in fields.items())


def message_of(kind: str, **replaced: bytes) -> bytes:
    """A valid trainer message of ``kind`` with some fields replaced by raw encoded values."""
    examples = {
        "hello": hello_fields("x"), "ready": {"slots": 1}, "heartbeat": {"leases": [1]},
        "data": {"input": {"shape": [40], "outputs": 10, "tokens": 0, "task": "classification"}},
        "progress": {"lease": 5, "epochs": [{"epoch": 1, "metrics": {"val_acc": 1.0}}]},
        "result": {"lease": 5, "metrics": {"val_acc": 1.0}, "artifacts": {}, "inherited": [], "slots": 0},
        "fail": {"lease": 5, "reason": "r", "blame": "candidate", "metrics": {}, "slots": 0},
        "blob_put": {"digest": "ab" * 32, "offset": 0, "total": 3, "data": b"abc"},
        "blob_get": {"digest": "ab" * 32, "offset": 0}, "bye": {},
    }
    fields = {"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb(kind)}
    fields.update({name: msgpack.packb(value) for name, value in examples[kind].items()})
    fields.update(replaced)
    return frame_of(fields)


def nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # [[[...[nil]...]]]


def nested_maps(depth: int) -> bytes:
    return b"\x81\xa1k" * depth + b"\xc0"  # {"k": {"k": ... nil}}


def events_of(served: ServedRun, kind: str) -> list[ev.Event]:
    return [e for e in served.log.read() if e.type == kind]


def counted(served: ServedRun, kind: str) -> int:
    return served.server.watch.counts[kind]


def session_names(served: ServedRun) -> list[str]:
    """The names of the engine's live sessions (read from the test thread while the engine runs)."""
    while True:
        with contextlib.suppress(RuntimeError):  # the dict changed size while it was copied
            return [session.name for session in list(served.server.sessions.values())]


def until(peer: Peer, kind: str) -> dict:
    """The next message of ``kind`` a peer receives, after whatever else it was sent first."""
    while True:
        message = peer.recv(timeout=10)
        assert message is not None, f"no {kind} came"
        if message[0] == kind:
            return message[1]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- 1. nesting and huge values --------------------------------------------------------------------

HOSTILE_VALUES = st.one_of(
    st.integers(1, 3000).map(nested_arrays),
    st.integers(1, 3000).map(nested_maps),
    st.sampled_from([
        msgpack.packb(2**64 - 1), msgpack.packb(-(2**63)), msgpack.packb(float("nan")), msgpack.packb(float("inf")),
        msgpack.packb("\x00" * 200_000), msgpack.packb(b"\x00" * 200_000), msgpack.packb(list(range(4096))),
        msgpack.packb({str(i): i for i in range(4096)}), msgpack.packb([[[]] * 64] * 64),
        msgpack.packb({"\x00" * 100_000: 1.0}), b"\xc1", b"\xdd\xff\xff\xff\xff",
    ]),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8) | st.integers(-(2**63), 2**64 - 1),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                 max_leaves=30).map(msgpack.packb),
)
FIELDS = {kind: ["p", "t", *spec] for kind, spec in protocol.TRAINER_MESSAGES.items()}


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory):
    """An engine whose handler is called directly (no loop, no sockets): replies are inspected."""
    from engine.runs import open_run

    log, state = open_run(tmp_path_factory.mktemp("idle") / "run", nb201_config(), sync=False)
    yield EngineServer(log, state)
    log.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(FIELDS)), data=st.data(), value=HOSTILE_VALUES)
def test_nested_and_huge_values_in_any_field_get_a_short_answer(idle_server: EngineServer, kind: str, data,
                                                               value: bytes) -> None:
    field = data.draw(st.sampled_from(FIELDS[kind]))
    frame = message_of(kind, **{field: value})
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode(frame, protocol.TRAINER_MESSAGES)
    replies: list[tuple[bytes, bytes]] = []
    idle_server._handle(Sender(b"\x00hostile"), [frame], replies)
    for _, reply in replies:
        reply_kind, fields = protocol.decode(reply, protocol.ENGINE_MESSAGES)
        if reply_kind != "welcome":
            assert len(reply) <= 512, f"a {len(reply)}-byte {reply_kind} answers a hostile {kind}.{field}"


def test_a_deeply_nested_frame_leaves_the_engine_serving(serve) -> None:
    served = serve(nb201_config())
    attacker, honest = Peer(served.endpoint), Peer(served.endpoint)
    for frame in (message_of("hello", pid=nested_arrays(1010)), message_of("ready", t=nested_arrays(1010)),
                  message_of("hello", name=nested_maps(1010)), message_of("ready", p=nested_arrays(1010))):
        attacker.socket.send(frame)
        assert attacker.expect("error")["code"] in ("invalid", "version")
    honest.hello("honest")
    honest.send("ready", slots=1)
    assert len(honest.expect("work")["items"]) == 1
    assert served.thread.is_alive() and counted(served, refused.FRAMES) == 4


# -- 2. amplification ------------------------------------------------------------------------------


def test_error_replies_are_short_and_never_repeat_the_input(serve) -> None:
    served = serve(nb201_config())
    peer = Peer(served.endpoint)
    hostile = [
        b"\x00" * MIB,
        message_of("ready", t=msgpack.packb("\x00" * MIB)),
        message_of("ready", slots=msgpack.packb("\x00" * MIB)),
        message_of("result", metrics=msgpack.packb({"\x00" * 60_000: 1.0})),
        message_of("fail", blame=msgpack.packb("\x00" * MIB)),
        message_of("ready", p=msgpack.packb("\x00" * MIB)),
    ]
    for frame in hostile:
        peer.socket.send(frame)
        assert peer.socket.poll(5000), "no reply"
        reply = peer.socket.recv()
        assert len(reply) <= 512 and b"\x00\x00" not in reply
        assert protocol.decode(reply, protocol.ENGINE_MESSAGES)[0] == "error"


def test_a_peer_that_does_not_read_gets_a_bounded_queue(serve) -> None:
    served = serve(nb201_config())
    digest = served.server.store.put(os.urandom(MIB))
    reader = Peer(served.endpoint)
    reader.hello("reader")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(served.endpoint)
    sock.send(protocol.encode("hello", **hello_fields("greedy", secret="1" * 32)))
    time.sleep(0.3)
    before = rss_bytes()
    for _ in range(300):  # 300 MiB of chunks asked for, none read
        sock.send(protocol.encode("blob_get", digest=digest, offset=0))
    wait_for(lambda: counted(served, refused.REPLIES) >= 100, timeout=30)
    grown = rss_bytes() - before
    assert grown < 160 * MIB, f"the engine grew by {grown / MIB:.0f} MiB for a peer that does not read"
    reader.send("ready", slots=1)
    assert len(reader.expect("work")["items"]) == 1, "a reading peer is still served"
    sock.close(0)


# -- 3. impersonation ------------------------------------------------------------------------------


def test_a_hello_under_another_trainers_name_takes_nothing_from_it(serve, tmp_path: Path) -> None:
    served = serve(nb201_config())
    victim, impostor = Peer(served.endpoint), Peer(served.endpoint)
    victim.hello("victim")
    victim.send("ready", slots=2)
    lease, other = (item.lease for item in victim.expect("work")["items"])

    assert impostor.hello("victim", leases=[lease, other])["name"] == "victim-2"
    assert not events_of(served, ev.TRIAL_LOST), "the victim's session and leases stay"
    impostor.send("result", lease=lease, metrics={"val_acc": 99.0}, artifacts={}, inherited=[], slots=0)
    assert impostor.expect("ack") == {"lease": lease, "accepted": False,
                                      "reason": f"lease {lease} belongs to trainer victim"}
    impostor.send("heartbeat", leases=[lease])
    assert impostor.expect("beat")["unknown"] == [lease]
    impostor.send("bye")
    victim.send("result", lease=lease, metrics={"val_acc": 71.5}, artifacts={}, inherited=[], slots=0)
    assert victim.expect("ack")["accepted"] is True
    assert counted(served, refused.RENAMED) == 1 and counted(served, refused.SESSIONS) == 1

    # After an engine restart no session is live: a first hello under the victim's name gets its name but
    # not its lease, and the victim, back with its secret, keeps the lease under whatever name it gets.
    served.stop()
    again = serve(None, run_dir=tmp_path / "run")
    impostor, returning = Peer(again.endpoint), Peer(again.endpoint)
    returning.secret = victim.secret
    assert impostor.hello("victim", leases=[other])["name"] == "victim"
    impostor.send("result", lease=other, metrics={"val_acc": 99.0}, artifacts={}, inherited=[], slots=0)
    assert impostor.expect("ack")["accepted"] is False
    assert returning.hello("victim", leases=[other])["name"] == "victim-2"
    returning.send("result", lease=other, metrics={"val_acc": 64.0}, artifacts={}, inherited=[], slots=0)
    assert returning.expect("ack")["accepted"] is True
    completed = [e.payload["metrics"]["val_acc"] for e in events_of(again, ev.TRIAL_COMPLETED)]
    assert completed == [71.5, 64.0] and not events_of(again, ev.TRIAL_LOST)


def test_under_curve_a_secret_proves_nothing_from_another_key(serve, tmp_path: Path) -> None:
    paths = make_keys(tmp_path / "keys")
    _, second_secret = zmq.auth.create_certificates(tmp_path / "keys" / "authorized", "second")
    served = serve(nb201_config(), keys=tmp_path / "keys")
    first = Peer(served.endpoint, curve=trainer_keys(paths["server_public"], paths["trainer_secret"]))
    second = Peer(served.endpoint, curve=trainer_keys(paths["server_public"], second_secret))
    first.hello("first")
    first.send("ready", slots=1)
    lease = first.expect("work")["items"][0].lease
    second.secret = first.secret  # a leaked secret, used from another authorised key
    assert second.hello("first", leases=[lease])["name"] == "first-2"
    second.send("result", lease=lease, metrics={"val_acc": 99.0}, artifacts={}, inherited=[], slots=0)
    assert second.expect("ack")["accepted"] is False
    first.send("result", lease=lease, metrics={"val_acc": 60.0}, artifacts={}, inherited=[], slots=0)
    assert first.expect("ack")["accepted"] is True


# -- 4. metrics ------------------------------------------------------------------------------------


def test_metrics_are_checked_against_the_run(serve) -> None:
    served = serve(nb201_config())
    peer = Peer(served.endpoint)
    peer.hello()
    peer.send("ready", slots=5)
    leases = [item.lease for item in peer.expect("work")["items"]]
    reports = [
        ({"val_acc": 80.0, "train_time": float("nan")}, "result refused: train_time is not finite (nan)", "candidate"),
        ({"val_acc": float("inf")}, "result refused: val_acc is not finite (inf)", "candidate"),
        ({"val_acc": 50.0, "hostile_marker": 1.0}, "result refused: hostile_marker is not a metric this run's "
         "'table' trainers report (they report latency, model_size, train_time, val_acc)", "infrastructure"),
        ({"val_acc": 7777.1}, "result refused: val_acc is outside [0, 100]", "infrastructure"),
        ({"val_acc": 91.0, "latency": 0.01}, None, None),
    ]
    for lease, (metrics, _, _) in zip(leases, reports, strict=True):
        peer.send("result", lease=lease, metrics=metrics, artifacts={}, inherited=[], slots=0)
        assert peer.expect("ack")["accepted"] is True
    failed = [(e.payload["reason"], e.payload["blame"]) for e in events_of(served, ev.TRIAL_FAILED)]
    assert failed == [(reason, blame) for _, reason, blame in reports[:4]]
    [completed] = events_of(served, ev.TRIAL_COMPLETED)
    assert completed.payload["metrics"] == {"val_acc": 91.0, "latency": 0.01}
    assert served.state.best_trial().score == 91.0


# -- 5. refusals are logged and counted ------------------------------------------------------------


def test_refused_handshakes_and_sessions_are_logged_and_counted(serve, tmp_path: Path, engine_here, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="lineage.engine")
    paths = make_keys(tmp_path / "keys")
    served = serve(nb201_config(), keys=tmp_path / "keys")
    stranger_public, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    stranger = EngineClient(served.endpoint, curve=trainer_keys(paths["server_public"], stranger_secret))
    stranger.connect()
    with pytest.raises(EngineGone):
        stranger.request("hello", hello_fields("stranger"), expect={"welcome"}, timeout=1.0, dispatch=lambda m: None)
    stranger.close()
    wait_for(lambda: counted(served, refused.HANDSHAKES) >= 1)
    public_z85 = zmq.auth.load_certificate(stranger_public)[0].decode()
    assert any(r.levelno == logging.WARNING and public_z85 in r.getMessage() and "127.0.0.1" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]

    rude = Peer(served.endpoint, curve=trainer_keys(paths["server_public"], paths["trainer_secret"]))
    rude.send("ready", slots=1)
    assert rude.expect("error")["code"] == "hello"
    wait_for(lambda: (read_endpoints(served.log.run_dir) or {}).get("refused", {}).get(refused.SESSIONS))
    status = engine_here("status", "--run", str(served.log.run_dir)).stdout
    assert "refused" in status and "1 CurveZMQ handshake" in status, status


# -- 6. blob uploads -------------------------------------------------------------------------------


def test_blob_uploads_are_bounded(serve, tmp_path: Path) -> None:
    served = serve(nb201_config(engine__lease_timeout=1.0, engine__heartbeat=0.2))
    partial = served.log.run_dir / "artifacts" / ".partial"
    peer = Peer(served.endpoint)
    peer.hello()
    peer.socket.send(message_of("blob_put", digest=msgpack.packb("ab" * 32 + "\n")))
    assert peer.expect("error")["code"] == "invalid"
    assert not partial.exists() or not list(partial.iterdir())

    digest = "cd" * 32
    peer.send("blob_put", digest=digest, offset=0, total=1000, data=b"x" * 10)
    assert peer.expect("blob_ok")["have"] == 10
    peer.send("blob_put", digest=digest, offset=10, total=12, data=b"yy")
    assert "first chunk fixes" in peer.expect("error")["message"]
    peer.send("blob_put", digest="ef" * 32, offset=0, total=Limits().upload_in_flight, data=b"z")
    assert "quota" in peer.expect("error")["message"]
    assert counted(served, refused.UPLOADS) == 2

    frames = [b"\x00" * MIB] * 64  # one multi-part message of 64 MiB
    peer.socket.send_multipart(frames)
    assert peer.expect("error", timeout=20)["message"] == "a message is one frame"

    [upload] = list(partial.iterdir())
    os.utime(upload, (time.time() - 3600, time.time() - 3600))  # abandoned an hour ago
    wait_for(lambda: not upload.exists(), timeout=5)

    storm = [Peer(served.endpoint) for _ in range(100)]
    for number, other in enumerate(storm):
        other.hello(f"storm-{number}")
    assert sum(name.startswith("storm-") for name in session_names(served)) == 100
    wait_for(lambda: not any(name.startswith("storm-") for name in session_names(served)), timeout=10)
    assert counted(served, refused.FORGOTTEN) >= 100
    storm[0].send("ready", slots=1)
    assert storm[0].expect("error")["code"] == "hello", "a forgotten session must say hello again"
    for other in storm:
        other.close()
    assert served.thread.is_alive()


# -- 8. lease deadlines and finished runs ----------------------------------------------------------


def test_a_lease_deadline_runs_from_when_its_work_is_sent(tmp_path: Path) -> None:
    from engine.runs import open_run

    log, state = open_run(tmp_path / "run", nb201_config(engine__lease_timeout=2.0, engine__heartbeat=0.5),
                          sync=False)
    with log:
        scheduler = Scheduler(state, now=0.0)
        [item] = scheduler.assign("t", 1)
        scheduler.expire(now=1000.0)  # the engine spent long proposing: the work has not left yet
        assert item.lease in state.leases
        scheduler.sent([item.lease], now=1000.0)
        scheduler.expire(now=1001.5)
        assert item.lease in state.leases
        scheduler.expire(now=1002.5)
        assert item.lease not in state.leases


class SlowProposer(Proposer):
    def propose(self, state):
        time.sleep(0.5)
        return super().propose(state)


def test_slow_proposals_do_not_expire_the_leases_they_hand_out(serve, monkeypatch) -> None:
    monkeypatch.setattr("engine.scheduler.Proposer", SlowProposer)
    served = serve(nb201_config(engine__lease_timeout=1.0, engine__heartbeat=0.2))
    peer = Peer(served.endpoint)
    peer.hello()
    peer.send("ready", slots=4)  # 2 s of proposing, twice the lease timeout
    leases = [item.lease for item in peer.expect("work", timeout=10)["items"]]
    assert len(leases) == 4
    for _ in range(4):
        peer.send("heartbeat", leases=leases)
        assert peer.expect("beat")["unknown"] == []
        time.sleep(0.2)
    assert not events_of(served, ev.TRIAL_LOST)


def test_a_finished_run_tells_returning_trainers_it_is_done(tmp_path: Path, engine_cli, spawn) -> None:
    config = tmp_path / "nb.toml"
    config.write_text("[space]\nkind = 'nb201'\n[search]\ntrials = 3\n")
    engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1")
    engine = spawn("serve", "--run", str(tmp_path / "run"), "--bind", "tcp://127.0.0.1:0", "--pub",
                   "tcp://127.0.0.1:0", "--grace", "3")
    endpoints = wait_for(lambda: read_endpoints(tmp_path / "run"), timeout=30)
    started = time.monotonic()
    peer = Peer(endpoints["router"])
    peer.hello("latecomer")
    peer.send("ready", slots=1)
    assert peer.expect("work") == {"items": [], "retry": 0.2, "done": True}
    assert engine.wait(timeout=30) == 0 and time.monotonic() - started >= 2.0
    assert "is finished" in engine.log_path.read_text()
    peer.close()


# -- nothing lost ----------------------------------------------------------------------------------


def test_an_honest_trainer_completes_its_search_through_every_attack(serve, trainer_thread) -> None:
    served = serve(tower_config(search__trials=30, evaluator__delay=0.05, engine__lease_timeout=2.0,
                                engine__heartbeat=0.2))
    digest = served.server.store.put(os.urandom(2 * MIB))
    daemon, thread = trainer_thread(served.endpoint, name="honest")
    wait_for(lambda: events_of(served, ev.TRIAL_COMPLETED))
    [honest] = {e.payload["holder"] for e in events_of(served, ev.TRIAL_ASSIGNED)}

    attacker = Peer(served.endpoint)
    for frame in (message_of("hello", pid=nested_arrays(1010)), message_of("ready", t=nested_maps(1010)),
                  b"\x00" * MIB):
        attacker.socket.send(frame)
    attacker.socket.send_multipart([b"x" * MIB] * 8)
    attacker.send("hello", **hello_fields("honest", leases=list(served.state.leases), secret=attacker.secret))
    assert until(attacker, "welcome")["name"] == "honest-2"
    for lease in list(served.state.leases):
        attacker.send("result", lease=lease, metrics={"val_accuracy": 0.9999, "hostile_marker": 1.0},
                      artifacts={}, inherited=[], slots=0)
        attacker.send("fail", lease=lease, reason="forged", blame="candidate", metrics={}, slots=0)
        attacker.send("heartbeat", leases=[lease])
    attacker.send("blob_put", digest="ab" * 32, offset=0, total=Limits().upload_in_flight, data=b"x")
    for _ in range(50):
        attacker.send("blob_get", digest=digest, offset=0)
    attacker.send("ready", slots=1)  # a lease of its own, reported with a NaN
    [own] = [item.lease for item in until(attacker, "work")["items"]]
    attacker.send("result", lease=own, metrics={"val_accuracy": float("nan")}, artifacts={}, inherited=[], slots=0)

    thread.join(timeout=120)
    assert served.state.finished is not None and served.error is None  # the engine may have ended: it finished
    assigned = {e.seq: e.payload["holder"] for e in events_of(served, ev.TRIAL_ASSIGNED)}
    completed = events_of(served, ev.TRIAL_COMPLETED)
    assert len(completed) >= 25 and all(assigned[e.payload["lease"]] == honest for e in completed)
    assert all("hostile_marker" not in e.payload["metrics"] for e in completed)
    assert [e.payload["reason"] for e in events_of(served, ev.TRIAL_FAILED)] == [
        "result refused: val_accuracy is not finite (nan)"]
    served.stop()
    assert verify(served.log.run_dir).proposals == served.state.proposals
