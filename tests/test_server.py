"""The engine server on real ZeroMQ sockets: bad input, leases, idempotent results, PUB, CurveZMQ."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from support import Peer, hello_fields, nb201_config, tower_config, wait_for

from engine import events as ev
from engine import protocol
from engine.binding import ServerError, check_bind
from engine.keys import is_loopback, make_keys, trainer_keys
from trainers.client import EngineClient, EngineGone, EngineRefused


def events_of(served, kind: str) -> list[ev.Event]:
    return [e for e in served.log.read() if e.type == kind]


def test_garbage_leaves_the_engine_serving_and_the_log_unchanged(serve) -> None:
    served = serve(nb201_config())
    before = list(served.log.read_raw())
    peer = Peer(served.endpoint)
    peer.socket.send(os.urandom(64))
    assert peer.expect("error")["code"] == "invalid"
    peer.socket.send_multipart([b"two", b"frames"])
    assert peer.expect("error")["code"] == "invalid"
    peer.socket.send(msgpack.packb({"p": 99, "t": "ready", "slots": 1}))
    assert peer.expect("error")["code"] == "version"
    peer.send("ready", slots=1)
    assert peer.expect("error")["code"] == "hello"
    peer.hello()
    peer.send("result", lease=12345, metrics={"val_acc": 99.0}, artifacts={}, inherited=[], slots=0)
    assert peer.expect("ack") == {"lease": 12345, "accepted": False,
                                  "reason": "lease is not in flight (a repeated or late result)"}
    peer.send("fail", lease=777, reason="nope", blame="candidate", metrics={}, slots=0)
    assert peer.expect("ack")["accepted"] is False
    peer.send("heartbeat", leases=[4242])
    assert peer.expect("beat") == {"unknown": [4242]}

    huge = Peer(served.endpoint)
    huge.socket.send(b"\x00" * (protocol.MAX_FRAME + 10))  # over MAXMSGSIZE: the engine hangs up on it
    assert huge.recv(timeout=0.5) is None
    assert list(served.log.read_raw()) == before
    assert served.server.dropped >= 3

    fresh = Peer(served.endpoint)
    fresh.hello("honest")
    fresh.send("ready", slots=1)
    work = fresh.expect("work")
    assert len(work["items"]) == 1 and served.thread.is_alive()
    assert [e.type for e in served.log.read(2)] == [ev.CANDIDATE_PROPOSED, ev.TRIAL_ASSIGNED]
    for p in (peer, huge, fresh):
        p.close()


def test_a_silent_trainers_lease_expires_and_a_late_result_changes_nothing(serve) -> None:
    served = serve(nb201_config(engine__lease_timeout=0.5, engine__heartbeat=0.1))
    peer = Peer(served.endpoint)
    peer.hello("sleepy")
    peer.send("ready", slots=1)
    item = peer.expect("work")["items"][0]
    lost = wait_for(lambda: events_of(served, ev.TRIAL_LOST), timeout=10)
    assert lost[0].payload["lease"] == item.lease and "no heartbeat" in lost[0].payload["reason"]
    assert served.state.queue[0] == item.trial, "lost is not failed: the candidate is queued again"
    assert not events_of(served, ev.TRIAL_FAILED)

    peer.send("result", lease=item.lease, metrics={"val_acc": 90.0}, artifacts={}, inherited=[], slots=0)
    assert peer.expect("ack")["accepted"] is False
    assert not events_of(served, ev.TRIAL_COMPLETED)

    other = Peer(served.endpoint)
    other.hello("awake")
    other.send("ready", slots=1)
    again = other.expect("work")["items"][0]
    assert again.trial == item.trial and again.lease != item.lease
    peer.close()
    other.close()


def test_heartbeats_keep_a_lease_alive(serve) -> None:
    served = serve(nb201_config(engine__lease_timeout=0.5, engine__heartbeat=0.1))
    peer = Peer(served.endpoint)
    peer.hello("steady")
    peer.send("ready", slots=1)
    lease = peer.expect("work")["items"][0].lease
    for _ in range(15):
        peer.send("heartbeat", leases=[lease])
        assert peer.expect("beat")["unknown"] == []
        time.sleep(0.1)
    assert not events_of(served, ev.TRIAL_LOST)
    peer.close()


def test_results_are_idempotent_and_only_the_lease_holder_may_report(serve) -> None:
    served = serve(nb201_config())
    owner, intruder = Peer(served.endpoint), Peer(served.endpoint)
    owner.hello("owner")
    intruder.hello("intruder")
    owner.send("ready", slots=1)
    lease = owner.expect("work")["items"][0].lease
    intruder.send("result", lease=lease, metrics={"val_acc": 1.0}, artifacts={}, inherited=[], slots=0)
    assert intruder.expect("ack") == {"lease": lease, "accepted": False, "reason": f"lease {lease} belongs to "
                                      "trainer owner"}
    for accepted in (True, False):
        owner.send("result", lease=lease, metrics={"val_acc": 88.0}, artifacts={}, inherited=[], slots=0)
        assert owner.expect("ack")["accepted"] is accepted
    completed = events_of(served, ev.TRIAL_COMPLETED)
    assert len(completed) == 1 and completed[0].payload["metrics"] == {"val_acc": 88.0}
    owner.close()
    intruder.close()


def test_a_result_without_the_search_metric_fails_the_trial(serve) -> None:
    served = serve(nb201_config())
    peer = Peer(served.endpoint)
    peer.hello()
    peer.send("ready", slots=1)
    lease = peer.expect("work")["items"][0].lease
    peer.send("result", lease=lease, metrics={"loss": float("nan")}, artifacts={}, inherited=[], slots=0)
    assert peer.expect("ack")["accepted"] is True
    [failed] = events_of(served, ev.TRIAL_FAILED)
    assert failed.payload["reason"] == "result refused: loss is not finite (nan)"
    peer.close()


def test_a_failure_keeps_the_size_its_trainer_measured_and_only_metrics_the_run_knows(serve) -> None:
    served = serve(tower_config(space__max_params=10_000))
    peer = Peer(served.endpoint)
    peer.hello()
    peer.send("ready", slots=2)
    first, second = (item.lease for item in peer.expect("work")["items"])
    peer.send("fail", lease=first, reason="12,000 parameters exceed space.max_params = 10,000", blame="candidate",
              metrics={"params": 12_000.0}, slots=0)
    peer.send("fail", lease=second, reason="too big", blame="candidate", metrics={"val_acc": 5.0}, slots=0)
    assert peer.expect("ack")["accepted"] and peer.expect("ack")["accepted"]
    sized, refused = (e.payload for e in events_of(served, ev.TRIAL_FAILED))
    assert sized["metrics"] == {"params": 12_000.0} and served.state.trials[sized["trial"]].metrics == sized["metrics"]
    assert refused["metrics"] == {} and "metrics were refused: val_acc is not a metric" in refused["reason"]
    peer.close()


def test_a_reconnecting_trainer_loses_the_leases_it_no_longer_holds(serve) -> None:
    served = serve(nb201_config())
    first = Peer(served.endpoint)
    first.hello("worker")
    first.send("ready", slots=2)
    kept, dropped = (item.lease for item in first.expect("work")["items"])
    first.close()
    second = Peer(served.endpoint)
    second.secret = first.secret  # the same trainer on a new connection
    assert second.hello("worker", leases=[kept])["name"] == "worker"
    [lost] = events_of(served, ev.TRIAL_LOST)
    assert lost.payload["lease"] == dropped and "reconnected" in lost.payload["reason"]
    assert kept in served.state.leases
    second.close()


def test_every_committed_event_is_published_in_seq_order(serve, trainer_thread) -> None:
    served = serve(nb201_config(search__trials=15))
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(served.server.pub_endpoint)
    time.sleep(0.3)  # let the subscription reach the publisher before anything happens
    _, thread = trainer_thread(served.endpoint, name="t")
    thread.join(timeout=30)
    wait_for(lambda: served.state.finished)
    published = []
    while subscriber.poll(500):
        published.append(subscriber.recv_multipart())
    subscriber.close(0)
    stored = list(served.log.read_raw(2))
    assert [int.from_bytes(seq, "big") for _, seq, _ in published] == [seq for seq, _ in stored]
    assert [raw for _, _, raw in published] == [raw for _, raw in stored]
    assert {topic.decode() for topic, _, _ in published} >= {ev.CANDIDATE_PROPOSED, ev.SEARCH_FINISHED}


def test_blobs_travel_in_chunks_and_are_checked(serve) -> None:
    served = serve(tower_config())
    client = EngineClient(served.endpoint)
    client.connect()
    client.request("hello", hello_fields("blobs"), expect={"welcome"}, timeout=5,
                   dispatch=lambda m: None)
    data = os.urandom(2 * protocol.CHUNK + 12345)
    digest = client.upload(data, timeout=5, dispatch=lambda m: None)
    assert served.server.store.read(digest) == data
    assert client.download(digest, timeout=5, dispatch=lambda m: None) == data
    with pytest.raises(EngineRefused, match="no artifact"):
        client.download("0" * 64, timeout=5, dispatch=lambda m: None)
    with pytest.raises(EngineRefused, match="does not match its digest"):
        client.request("blob_put", {"digest": "1" * 64, "offset": 0, "total": 3, "data": b"abc"},
                       expect={"blob_ok"}, timeout=5, dispatch=lambda m: None)
    client.close()


def test_curve_keys_admit_authorised_trainers_and_refuse_the_rest(serve, tmp_path: Path) -> None:
    paths = make_keys(tmp_path / "keys")
    served = serve(nb201_config(), keys=tmp_path / "keys")
    before = list(served.log.read_raw())

    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    for curve in (None, trainer_keys(paths["server_public"], stranger_secret)):
        refused = EngineClient(served.endpoint, curve=curve)
        refused.connect()
        with pytest.raises(EngineGone):
            refused.request("hello", hello_fields("x"), expect={"welcome"},
                            timeout=1.5, dispatch=lambda m: None)
        refused.close()
    assert list(served.log.read_raw()) == before
    # Both are counted: the stranger's key by the gatekeeper, the keyless handshake by the socket monitor.
    wait_for(lambda: served.server.watch.counts["handshakes"] >= 2)

    trusted = EngineClient(served.endpoint, curve=trainer_keys(paths["server_public"], paths["trainer_secret"]))
    trusted.connect()
    _, welcome = trusted.request("hello", hello_fields("ok"), expect={"welcome"},
                                 timeout=5, dispatch=lambda m: None)
    assert welcome["run"] == served.state.run_id
    trusted.close()


def test_binding_beyond_loopback_needs_keys(tmp_path: Path, engine_cli) -> None:
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://localhost:1") and is_loopback("ipc:///tmp/x")
    assert is_loopback("tcp://[::1]:5555")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://10.1.2.3:5555")
    assert not is_loopback("tcp://eth0:5555") and not is_loopback("tcp://*:5555")
    with pytest.raises(ServerError, match="without CurveZMQ keys"):
        check_bind(["tcp://127.0.0.1:1", "tcp://*:5556"], None)
    make_keys(tmp_path / "keys")
    check_bind(["tcp://0.0.0.0:5555"], tmp_path / "keys", probe=False)

    config = tmp_path / "nb.toml"
    config.write_text("[space]\nkind = 'nb201'\n")
    result = engine_cli("serve", "--run", str(tmp_path / "run"), "--config", str(config),
                        "--bind", "tcp://0.0.0.0:0", check=False)
    assert result.returncode == 1 and "without CurveZMQ keys" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_taken_port_is_refused_before_the_run_is_written(tmp_path: Path, engine_cli) -> None:
    config = tmp_path / "nb.toml"
    config.write_text("[space]\nkind = 'nb201'\n")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = f"tcp://127.0.0.1:{other.getsockname()[1]}"
        result = engine_cli("serve", "--run", str(tmp_path / "run"), "--config", str(config), "--bind", taken,
                            check=False)
    assert result.returncode == 1 and f"cannot listen on {taken}" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
