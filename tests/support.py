"""Helpers shared by the tests: configs, waiting, free ports, and an engine served in a thread."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq
from hypothesis import strategies as st

from engine import events as ev
from engine import protocol
from engine.config import Config, apply_overrides, resolve_config
from engine.log import EventLog
from engine.metrics import METRICS
from engine.runs import open_run
from engine.scheduler import Scheduler
from engine.server import EngineServer
from engine.state import COMPLETED, FAILED, QUEUED, RUNNING, TOWER, State
from engine.work import WorkItem

ROOT = Path(__file__).resolve().parent.parent


def nb201_config(**overrides: Any) -> Config:
    """A resolved nb201 config; keyword overrides use ``__`` for dots (``search__trials=5``)."""
    raw = {"space": {"kind": "nb201", "dataset": "cifar10"}, "search": {"trials": 20}}
    return resolve_config(apply_overrides(raw, {k.replace("__", "."): v for k, v in overrides.items()}))


def tower_config(**overrides: Any) -> Config:
    raw = {"space": {"kind": "tower", "max_depth": 4}, "search": {"trials": 20}}
    return resolve_config(apply_overrides(raw, {k.replace("__", "."): v for k, v in overrides.items()}))


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    A client retrying a connection to an ephemeral port nobody listens on yet can be given that very
    port as its own source port and connect to itself (TCP self-connect), which then steals the port
    from the server about to bind it. Ports outside the ephemeral range are never handed out that way.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(max(1025, low - 20_000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port found below the ephemeral range")


_PORTS = random.Random()  # its own generator: hypothesis reseeds the global one per example


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, every: float = 0.02) -> Any:
    """Poll until ``condition()`` is truthy and return it; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


class ServedRun:
    """An engine serving a run in a thread of the test process (real LMDB, real sockets)."""

    def __init__(self, run_dir: Path, config: dict[str, Any] | None, **server_args: Any) -> None:
        self.log, self.state = open_run(run_dir, config, sync=False)
        server_args.setdefault("bind", "tcp://127.0.0.1:0")
        server_args.setdefault("pub", "tcp://127.0.0.1:0")
        try:
            self.server = EngineServer(self.log, self.state, **server_args)
            self.server.start()
        except BaseException:
            self.log.close()  # a run whose address was taken is not left locked by this writer
            raise
        self.endpoint = self.server.endpoint
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.serve()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=20)
        self.server.close()
        self.log.close()
        if self.error is not None:
            raise self.error


class Peer:
    """A raw DEALER socket speaking (or mangling) the protocol."""

    def __init__(self, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        if curve is not None:
            self.socket.curve_serverkey, self.socket.curve_publickey, self.socket.curve_secretkey = curve
        self.socket.connect(endpoint)
        self.secret = os.urandom(16).hex()

    def send(self, kind: str, **fields) -> None:
        self.socket.send(protocol.encode(kind, **fields))

    def recv(self, timeout: float = 5.0) -> tuple[str, dict] | None:
        if not self.socket.poll(timeout * 1000):
            return None
        return protocol.decode(self.socket.recv(), protocol.ENGINE_MESSAGES)

    def expect(self, kind: str, timeout: float = 5.0) -> dict:
        message = self.recv(timeout)
        assert message is not None, f"no reply (expected {kind})"
        assert message[0] == kind, message
        return message[1]

    def hello(self, name: str = "peer", leases: list[int] | None = None) -> dict:
        self.send("hello", name=name, host="test", pid=os.getpid(), leases=leases or [], secret=self.secret)
        return self.expect("welcome")

    def close(self) -> None:
        self.socket.close(0)


class FakeEngine:
    """A ROUTER socket on a free loopback port standing in for an engine: the test reads each message of a
    real trainer daemon and answers it by hand (replies go to whoever spoke last)."""

    WAIT = 5.0  # seconds to wait for the trainer's next message

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:0")
        self.endpoint = self.router.last_endpoint.decode()
        self.identity = b""

    def receive(self, expected: str) -> tuple[str, dict[str, Any]]:
        """The trainer's next message, whatever it is (``expected`` only names it in the failure)."""
        assert self.router.poll(self.WAIT * 1000), f"the trainer sent nothing within {self.WAIT:g}s (expected " \
                                                   f"{expected})"
        self.identity, frame = self.router.recv_multipart()
        return protocol.decode(frame, protocol.TRAINER_MESSAGES)

    def expect(self, kind: str) -> dict[str, Any]:
        """The trainer's next message, which must be a ``kind``."""
        got, fields = self.receive(kind)
        assert got == kind, f"expected {kind} from the trainer, got {got} {fields}"
        return fields

    def send(self, frame: bytes) -> None:
        self.router.send_multipart([self.identity, frame])

    def welcome(self, name: str, config: Config | None = None, run: str = "r1", lease_timeout: float = 3.0) -> None:
        config = config or nb201_config()
        self.send(protocol.encode("welcome", run=run, name=name, config=config.to_dict(), bundle=None,
                                  heartbeat=0.3, lease_timeout=lease_timeout))

    def close(self) -> None:
        self.router.close(0)
        self.context.term()


def hello_fields(name: str = "peer", leases: list[int] | None = None, secret: str = "0" * 32) -> dict[str, Any]:
    """The fields of a hello."""
    return {"name": name, "host": "test", "pid": os.getpid(), "leases": leases or [], "secret": secret}


def tower_item(lease: int, architecture: list[str], *, trial: int | None = None, seed: int = 11,
               hyperparameters: dict[str, Any] | None = None, **fields: Any) -> WorkItem:
    """A work item for a tower trained from scratch (its trial is the lease unless given), as a test's fake
    engine hands it out; ``fields`` set the rest (parent, parent_artifacts, inherit, teacher, needs)."""
    return WorkItem(lease=lease, trial=lease if trial is None else trial, key="|".join(architecture), kind=TOWER,
                    architecture=tuple(architecture), hyperparameters=hyperparameters or {}, seed=seed, **fields)


def rewritten_run(run: Path, into: Path, change: Callable[[list[bytes]], list[bytes]]) -> Path:
    """A copy of a run's log at ``into`` with its stored events (raw bytes, in order) passed through ``change``:
    a tampered log, for ``replay --verify`` to catch."""
    with EventLog.open_reader(run) as log:
        raws = [raw for _, raw in log.read_raw()]
    with EventLog.create(into, sync=False) as log:
        log.append(change(raws), expected_head=0)
    return into


def cutoff_changed(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    """A change for :func:`rewritten_run`: event ``seq`` (a decision with figures) with its cutoff set to 0."""
    def change(raws: list[bytes]) -> list[bytes]:
        record = msgpack.unpackb(raws[seq - 1])
        record["payload"]["figures"]["cutoff"] = 0.0
        return [*raws[: seq - 1], msgpack.packb(record), *raws[seq:]]

    return change


def stopping_search(path: Path, stopping: str, trials: int, epochs: int, samples: int) -> Path:
    """A small Keras search on MNIST-1D whose trials a stopping rule judges at every epoch (rungs at 1, 2, 4...),
    written as a TOML config at ``path``: ``trials`` random towers of 1-2 small blocks, ``epochs`` each at most."""
    return write_toml(path, f"""
[search]
trials = {trials}
stopping = "{stopping}"
[search.asha]
min_epochs = 1
eta = 2
[search.beam]
initial = {trials}
[space]
kind = "tower"
blocks = ["conv1d_16_k3", "dense_32", "dense_64"]
max_depth = 2
[space.hparams]
learning_rate = [0.0003, 0.003]
batch_size = [32]
optimizer = ["adam", "sgd"]
[data]
dataset = "mnist1d"
samples = {samples}
[training]
epochs = {epochs}
patience = 0
""")


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def three_trial_search(blocks: list[str], data: str, epochs: int, head: str = "flatten") -> str:
    """The TOML of a 3-trial Keras search of 2- and 3-block towers of ``blocks`` (adam at 0.01, batches of 16,
    ``space.head``), with ``data`` (its ``[data]`` tables) appended."""
    return f"""
[search]
trials = 3
seed = 0
[search.beam]
initial = 3
[space]
kind = "tower"
blocks = {json.dumps(blocks)}
min_depth = 2
max_depth = 3
head = "{head}"
[space.hparams]
learning_rate = [0.01]
batch_size = [16]
dropout = [0.0]
optimizer = ["adam"]
[training]
epochs = {epochs}
{data}"""


def status_json(engine_cli: Callable[..., Any], run: Path) -> dict[str, Any]:
    return json.loads(engine_cli("status", "--run", str(run), "--json").stdout)


# -- command scripts: random sequences of what trainers do, applied to the real scheduler -----------

TRAINERS = ["t0", "t1", "t2"]

# Weighted towards asking for work and reporting results, so most scripts run searches to their end.
KINDS = ["ready"] * 4 + ["complete"] * 5 + ["fail", "expire", "hello", "bye", "finish"]
commands = st.lists(
    st.tuples(
        st.sampled_from(KINDS), st.integers(0, 50), st.integers(1, 3),
        st.sampled_from([1.0] * 6 + [math.nan, None]), st.booleans(),
    ),
    min_size=5, max_size=120,
)
class Recording(Scheduler):
    """The real scheduler, keeping a copy of the live state after every event it drafts."""

    def __init__(self, state: State, clock: Callable[[], float] = lambda: 1000.0) -> None:
        super().__init__(state, now=0.0, clock=clock)
        self.snapshots = {state.seq: copy.deepcopy(state)}

    def emit(self, kind: str, payload: dict[str, Any]) -> ev.Event:
        event = super().emit(kind, payload)
        self.snapshots[event.seq] = copy.deepcopy(self.state)
        return event


def pick(state: State, index: int) -> int | None:
    leases = sorted(state.leases)
    return leases[index % len(leases)] if leases else None


def drive(log: EventLog, state: State, script: list[tuple],
          clock: Callable[[], float] = lambda: 1000.0) -> Recording:
    """Apply a command script, committing after each command like the server does after a batch (events
    stamped by ``clock``)."""
    scheduler = Recording(state, clock)
    metric = state.config.search.metric
    other = next(name for name in METRICS[state.config.evaluator.kind] if name != metric)
    for name, index, slots, value, keep in script:
        trainer = TRAINERS[index % len(TRAINERS)]
        lease = pick(state, index)
        if name == "ready":
            scheduler.assign(trainer, slots)
        elif name == "complete" and lease is not None:
            # A NaN or missing metric makes the result a failure; otherwise scores in [0, 1) vary with the index.
            score = None if value is None else value * ((index + lease % 7) % 50) / 50
            scheduler.complete(lease, {} if score is None else {metric: score, other: 1.0}, {})
        elif name == "fail" and lease is not None:
            scheduler.fail(lease, "it broke")
        elif name == "expire" and lease is not None:
            scheduler.deadlines[lease] = -1.0
            scheduler.expire(now=0.0)
        elif name == "hello":
            held = {lease.id for lease in state.leases.values() if lease.trainer == trainer}
            scheduler.forget_trainer(trainer, None, keep=held if keep else set(), reason="reconnected")
        elif name == "bye":
            scheduler.forget_trainer(trainer, None, keep=set(), reason="left")
        elif name == "finish":
            scheduler.finish_if_done()
        drafts = scheduler.take()
        if drafts:
            log.append([raw for _, raw in drafts], expected_head=drafts[0][0].seq - 1)
        assert_nothing_is_lost(state)
    return scheduler


def assert_nothing_is_lost(state: State) -> None:
    """Every candidate is completed, failed, queued or in flight: exactly one of them."""
    running = {lease.trial for lease in state.leases.values()}
    for trial in state.trials.values():
        places = [trial.id in state.completed, trial.id in state.failed, trial.id in state.queue,
                  trial.id in running]
        assert sum(places) == 1, f"trial {trial.id} is in {places}"
        expected = {0: COMPLETED, 1: FAILED, 2: QUEUED, 3: RUNNING}[places.index(True)]
        assert trial.status == expected
    assert len(state.trials) == state.proposals <= state.budget


