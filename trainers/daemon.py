"""The trainer daemon: connect, hello, ready, work, heartbeats while evaluating, result. Repeat.

A trainer is a stateless worker: everything it knows comes from the engine (the run's config in
WELCOME, candidates in WORK, parent artifacts by digest). It evaluates one candidate at a time in
a worker thread while its main thread keeps talking to the engine: heartbeats on a timer, results
resent until acknowledged, and a reconnect with exponential backoff whenever the engine goes away.

A lease stays held, and heartbeated, from WORK until the engine acknowledges its result: while it
waits in the backlog, while it is evaluated, while its artifacts upload, and while its report waits
for an ACK, across reconnects too. Nothing finished is thrown away because the engine blinked. Each
held lease is one :class:`HeldLease` record (``trainers/leases.py``) whose :class:`Phase` says which of
those it is in.
Each daemon makes one random secret and sends it with every hello: the engine accepts reports on its
leases only from a connection that knows it. The daemon goes by the name the engine's welcome gives
it (the engine renames a trainer whose name another live trainer holds).
A trainer that cannot evaluate the run it joins (it cannot read the data, a package or block is missing)
asks for one candidate, fails it with that reason as the infrastructure's fault, so the run's log says why,
and leaves with exit code 2.

When the run it serves is finished, a daemon waits at the same address for the engine's next run (an engine
started again there, on a new or resumed run); ``once`` makes it leave instead (local trainers of
``engine run`` do). ``idle_exit`` makes it leave when no engine has answered for that many seconds. Each change
of state (connected, run finished and waiting, engine gone, leaving) is one log line.

Example::

    >>> TrainerDaemon("tcp://127.0.0.1:5555", once=True).run()     # returns when the search is finished
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from engine.artifacts import ArtifactStore
from engine.protocol import MAX_EPOCHS
from engine.state import Blame, Epoch
from engine.work import WorkItem
from trainers.client import EngineClient, EngineGone, EngineRefused, Message
from trainers.evaluator import EvaluationError
from trainers.leases import HeldLease, Phase, failure
from trainers.run_setup import RunSetup, set_up

log = logging.getLogger("lineage.trainer")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
HELLO_TIMEOUT = 5.0
PROGRESS_EVERY = 1.0  # seconds between a lease's epoch reports, at most
NEXT_RUN_POLL = 5.0  # seconds between hellos while the run served is finished and the next has not begun


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lineage" / "blobs"


def default_name() -> str:
    """host-pid plus a random suffix: containers often share a hostname and a pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class TrainerDaemon:
    """One trainer process's loop. ``prefetch`` is how many leases it holds at once (queued ones
    wait their turn); ``max_trials`` stops it after that many evaluations; ``once`` after the run it joined is
    finished (else it waits for the next); ``idle_exit`` when no engine has answered for that many seconds."""

    def __init__(
        self, endpoint: str, *, name: str | None = None, prefetch: int = 1,
        curve: tuple[bytes, bytes, bytes] | None = None, cache_dir: Path | str | None = None,
        max_trials: int | None = None, parent_pid: int | None = None, once: bool = False,
        idle_exit: float | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if idle_exit is not None and idle_exit <= 0:
            raise ValueError("idle_exit must be above 0 seconds")
        self.once = once
        self.idle_exit = idle_exit
        self.name = name or default_name()
        self._secret = os.urandom(16).hex()  # proves to the engine that a reconnecting trainer is this one
        self.prefetch = prefetch
        self.max_trials = max_trials
        self.parent_pid = parent_pid
        self.client = EngineClient(endpoint, curve=curve)
        self.cache = ArtifactStore(cache_dir or default_cache())
        self.evaluated = 0
        self._stop = threading.Event()
        self._setup = RunSetup()  # the run served: its evaluator, or why this trainer cannot evaluate its candidates
        self._run_id: str | None = None
        self._leases: dict[int, HeldLease] = {}  # in the order the engine handed them out
        self._asked = False
        self._asked_at = 0.0
        self._reask = 6.0
        self._retry_at = 0.0
        self._done = False
        self._heartbeat = 2.0
        self._patience = 10.0
        self._last_beat = 0.0
        self._backoff = FIRST_BACKOFF
        self._answered = time.monotonic()  # when an engine last said anything to this trainer
        self._state = ""  # what the last state-change line said

    @property
    def busy(self) -> bool:
        """Whether an evaluation is still running in the worker thread. Tests ask from their own thread
        while the daemon's changes the table: so this reads a copy of it, and each future once."""
        futures = [held.future for held in list(self._leases.values())]
        return any(future is not None and not future.done() for future in futures)

    def stop(self) -> None:
        """Leave soon: the engine is told, and puts this trainer's candidates back in its queue."""
        self._stop.set()

    # -- outer loop: reconnect with backoff --------------------------------------------------------

    def run(self) -> int:
        """Serve until :meth:`stop`, ``max_trials``, ``idle_exit`` or, with ``once``, the end of the run it joined
        (0), or until the engine refuses this trainer for good or it cannot evaluate the run (2)."""
        context = zmq.Context.instance()
        # The evaluation thread rings this inproc doorbell when an evaluation has finished, waking
        # the main loop's poll at once instead of it polling the future on a timer.
        self._doorbell_address = f"inproc://lineage-doorbell-{id(self)}"
        self._doorbell = context.socket(zmq.PULL)
        self._doorbell.bind(self._doorbell_address)
        self._ringers = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluate")
        try:
            while not self._stop.is_set() and not self._orphaned():
                try:
                    self._session()
                except EngineGone as exc:
                    if self._idle_too_long():
                        return 0
                    self._become(f"gone: {exc}", logging.WARNING,
                                 f"{exc}; reconnecting (every {MAX_BACKOFF:g}s at most)")
                    self._stop.wait(self._backoff)
                    self._backoff = min(self._backoff * 2, MAX_BACKOFF)
                    continue
                except EngineRefused as exc:
                    log.error("%s: %s", self.name, exc)
                    return 2
                if self._setup.unusable is not None:
                    log.error("%s: %s", self.name, self._setup.unusable)
                    return 2
                if self.once or not self._done or self._limit_reached() or self._idle_too_long():
                    return 0
                self._done = False
                self._become(f"finished {self._run_id}", logging.INFO,
                             f"run {self._run_id} is finished; waiting at {self.client.endpoint} for the engine's "
                             "next run (--once leaves instead)")
                self._stop.wait(NEXT_RUN_POLL)
            return 0
        finally:
            self.client.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._doorbell.close(0)

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def _limit_reached(self) -> bool:
        return self.max_trials is not None and self.evaluated >= self.max_trials

    def _idle_too_long(self) -> bool:
        silent = time.monotonic() - self._answered
        if self.idle_exit is None or silent < self.idle_exit:
            return False
        log.info("%s: leaving: no engine has answered for %.0fs (--idle-exit %g)", self.name, silent, self.idle_exit)
        return True

    def _become(self, state: str, level: int, line: str) -> None:
        """Log a change of state once: a trainer that retries every few seconds does not repeat itself."""
        if state != self._state:
            self._state = state
            log.log(level, "%s: %s", self.name, line)

    def _held(self) -> list[int]:
        """Every lease this trainer answers for until the engine acknowledges it."""
        return list(self._leases)

    def _in(self, *phases: Phase) -> list[HeldLease]:
        """The held leases in ``phases``, in the order they came: a copy, as transfers add and drop some."""
        return [held for held in self._leases.values() if held.phase in phases]

    def _evaluating(self) -> HeldLease | None:
        """The lease the worker thread is busy with, wanted or not (one at a time)."""
        evaluating = self._in(Phase.RUNNING, Phase.ABANDONED)
        return evaluating[0] if evaluating else None

    def _forget(self, held: HeldLease) -> None:
        """The engine no longer wants this lease. A running evaluation cannot be stopped: it runs on,
        abandoned, and still occupies the worker thread until it ends."""
        if held.phase is Phase.RUNNING:
            held.abandon()
        elif held.phase is not Phase.ABANDONED:
            held.drop()
            del self._leases[held.lease]

    # -- one connection ----------------------------------------------------------------------------

    def _session(self) -> None:
        """Talk to the engine until the search is done, the trainer reached ``max_trials`` or was
        stopped. Raises :class:`EngineGone` when the connection must be made again."""
        self.client.connect()
        while True:
            _, welcome = self.client.request(
                "hello", {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                          "leases": self._held(), "secret": self._secret},
                expect={"welcome"}, timeout=HELLO_TIMEOUT, dispatch=self._dispatch,
            )
            welcomed = time.monotonic()
            self._welcome(welcome)
            # Reading a new run's data says nothing to the engine, and can take longer than it keeps a silent
            # session (2,400 clips of 3 s: over a minute): hello again, or the next message is refused.
            if time.monotonic() - welcomed < welcome["lease_timeout"] / 2:
                break
        self._backoff = FIRST_BACKOFF
        if (described := self._setup.described()) is not None:  # what the engine counts towers' weights from
            self.client.send("data", {"input": described.as_dict()})
        for held in self._leases.values():
            held.sent = 0  # the engine may have missed some: it keeps only epochs after the last it recorded
            self._send_progress(held)
        for held in self._in(Phase.REPORTED):
            self.client.send(*held.message)
        self._asked = False
        self._deliver()
        poller = zmq.Poller()
        poller.register(self.client.socket, zmq.POLLIN)
        poller.register(self._doorbell, zmq.POLLIN)
        while True:
            if self._stop.is_set() or self._orphaned():
                self._leave()
                return
            self._ask()
            self._start()
            ready = dict(poller.poll(self._wait_time() * 1000))
            if self._doorbell in ready:
                while self._doorbell.poll(0):
                    self._doorbell.recv()
            if self.client.socket in ready:
                message = self.client.receive(0)
                if message is not None:
                    self._answered = time.monotonic()
                    self._dispatch(message)
            self._finish()
            self._progress()
            self._beat()
            if self._drained():
                self._leave()
                return
            if self.client.waiting > self._patience:
                raise EngineGone(f"no reply from {self.client.endpoint} for {self._patience:g}s")

    def _welcome(self, welcome: dict[str, Any]) -> None:
        self._answered = time.monotonic()
        self._heartbeat = welcome["heartbeat"]
        self._patience = max(10.0, 3 * welcome["heartbeat"])
        self._reask = 3 * welcome["heartbeat"]
        if welcome["run"] != self._run_id:
            if self._leases:
                log.warning("%s: the engine now serves run %s; dropping work of run %s",
                            self.name, welcome["run"], self._run_id)
                for held in list(self._leases.values()):
                    self._forget(held)
            self._setup = set_up(self.name, welcome["config"], welcome["bundle"], self.cache.root / "bundles",
                                 lambda digest: self.client.download(digest, **self._transfer_options()))
            self._run_id = welcome["run"]
        if welcome["name"] != self.name:
            log.warning("%s: another trainer holds this name; the engine knows this trainer as %s",
                        self.name, welcome["name"])
            self.name = welcome["name"]
        if self._state != f"finished {self._run_id}":  # a finished run's engine, asked again, is not news
            self._become(f"serving {self._run_id}", logging.INFO,
                         f"connected to {self.client.endpoint} (run {self._run_id})")

    def _wanted(self) -> int:
        if self._done or self._stop.is_set():
            return 0
        if self._setup.unusable is not None:  # one candidate, to fail with the reason, so the run hears of it
            return 0 if self.evaluated or self._leases else 1
        held = len(self._in(Phase.WAITING, Phase.RUNNING, Phase.ABANDONED))  # those not evaluated yet
        slots = self.prefetch - held
        if self.max_trials is not None:
            slots = min(slots, self.max_trials - self.evaluated - held)
        return max(slots, 0)

    def _ask_at(self) -> float:
        """When to send ``ready`` next (inf: not until something changes).

        Once asked, a trainer that holds nothing asks again after ``_reask`` seconds without work: a
        ``ready`` the engine never saw (it restarted) gets no reply, and an ack or beat arriving
        meanwhile hides that from the patience check, which would leave this trainer idle for good.
        """
        if not self._wanted():
            return math.inf
        if not self._asked:
            return self._retry_at
        if self._leases:
            return math.inf  # its heartbeats and reports keep the engine talking
        return max(self._retry_at, self._asked_at + self._reask)

    def _ask(self) -> None:
        if time.monotonic() >= self._ask_at():
            self.client.send("ready", {"slots": self._wanted()})
            self._asked, self._asked_at = True, time.monotonic()

    def _wait_time(self) -> float:
        held = self._evaluating()
        if held is not None and held.future.done():
            return 0.0
        return min(self._heartbeat, max(self._ask_at() - time.monotonic(), 0.0))

    def _dispatch(self, message: Message) -> None:
        kind, fields = message
        if kind == "work":
            self._asked = False
            for item in fields["items"]:
                # A lease handed out twice is still one evaluation; a second record would lose the first.
                self._leases.setdefault(item.lease, HeldLease(item))
            self._done = self._done or fields["done"]
            if not fields["items"] and not fields["done"]:
                self._retry_at = time.monotonic() + fields["retry"]
        elif kind == "ack":
            held = self._leases.get(fields["lease"])
            if held is not None and held.phase is Phase.REPORTED:  # an ack of a resent report comes twice
                held.acknowledged()
                del self._leases[held.lease]
            if not fields["accepted"]:
                log.info("%s: lease %s not recorded: %s", self.name, fields["lease"], fields["reason"])
        elif kind == "stop":  # the engine decided: train no further than the current epoch, then report
            held = self._leases.get(fields["lease"])
            if held is not None:
                held.stopping = True
        elif kind == "beat":
            for lease in fields["unknown"]:  # the engine no longer wants these: stop answering for them
                if lease in self._leases:
                    self._forget(self._leases[lease])
        elif kind == "error":
            if fields["code"] == "hello":
                raise EngineGone("the engine does not know this trainer (it restarted?)")
            if fields["code"] == "version":
                raise EngineRefused(fields["message"])
            log.warning("%s: engine error %s: %s", self.name, fields["code"], fields["message"])

    # -- evaluating --------------------------------------------------------------------------------

    def _transfer_options(self) -> dict[str, Any]:
        return {"timeout": self._patience, "dispatch": self._dispatch, "tick": self._beat}

    def _start(self) -> None:
        """Evaluate the first waiting lease once the worker thread is free; the blobs it needs first."""
        waiting = self._in(Phase.WAITING)
        if self._evaluating() is not None or not waiting:
            return
        held = waiting[0]
        if self._setup.unusable is not None:
            # Not the candidate's fault: it goes on the record as the infrastructure's, and this trainer leaves.
            self.evaluated += 1
            held.finish(failure(held.lease, self._setup.unusable, Blame.INFRASTRUCTURE))
            for other in waiting[1:]:
                self._forget(other)
            self._deliver()
            return
        refused = self._fetch(held.item)
        if held.phase is not Phase.WAITING:
            return  # the engine dropped it while its blobs downloaded
        if refused is not None:
            self.evaluated += 1
            held.finish(failure(held.lease, f"an artifact it needs is unavailable: {refused}", Blame.INFRASTRUCTURE))
            self._deliver()
            return
        future = self._executor.submit(self._setup.evaluator.evaluate, held.item, self.cache.read,
                                       functools.partial(self._epoch_done, held))
        held.start(future)
        future.add_done_callback(self._ring)

    def _fetch(self, item: WorkItem) -> EngineRefused | None:
        """Download into the cache what ``item`` needs; the engine's refusal if it refused one."""
        needs = list(item.needs)
        if self._setup.evaluator.wants_parent_artifacts:
            needs += list(item.parent_artifacts.values())
        try:
            for digest in needs:
                if not self.cache.has(digest):
                    self.cache.put(self.client.download(digest, **self._transfer_options()))
        except EngineRefused as exc:
            return exc
        return None

    def _ring(self, future: Future | None) -> None:
        """Wake the main loop, from another thread: an evaluation ended (its future is done) or reported."""
        ringer = getattr(self._ringers, "socket", None)
        if ringer is None:
            ringer = self._ringers.socket = zmq.Context.instance().socket(zmq.PUSH)
            ringer.linger = 0
            ringer.connect(self._doorbell_address)
        ringer.send(b"", zmq.NOBLOCK)

    def _finish(self) -> None:
        held = self._evaluating()
        if held is None or not held.future.done():
            return
        self.evaluated += 1
        if held.phase is Phase.ABANDONED:
            held.discard()
            del self._leases[held.lease]
            return
        lease = held.lease
        self._send_progress(held)  # the last epochs before the result
        try:
            outcome = held.future.result()
        except EvaluationError as exc:
            held.finish(failure(lease, str(exc), Blame.CANDIDATE, exc.metrics))
        except Exception as exc:  # any crash of a candidate fails that trial, not the trainer
            log.exception("%s: evaluating trial %s crashed", self.name, held.item.trial)
            held.finish(failure(lease, f"{type(exc).__name__}: {exc}", Blame.CANDIDATE))
        else:
            held.finish(("result", {"lease": lease, "metrics": outcome.metrics, "inherited": outcome.inherited}),
                        outcome.artifacts)
        self._deliver()

    def _epoch_done(self, held: HeldLease, epoch: Epoch) -> bool:
        """An epoch the worker thread trained for ``held``; whether to train on. Wakes the main loop when a
        report is due, so the engine hears of the epoch (and can stop the trial) at once."""
        held.curve.append(epoch)
        held.urgent = held.urgent or epoch.epoch in self._setup.rungs
        if held.urgent or time.monotonic() - held.sent_at >= PROGRESS_EVERY:
            self._ring(None)
        return not held.stopping

    def _progress(self) -> None:
        """Send the epochs trained since the last report, at most every PROGRESS_EVERY seconds per lease."""
        now = time.monotonic()
        for held in self._in(Phase.RUNNING):
            if held.urgent or now - held.sent_at >= PROGRESS_EVERY:
                self._send_progress(held, now)

    def _send_progress(self, held: HeldLease, now: float | None = None) -> None:
        epochs = held.curve[held.sent:]
        if not epochs or held.phase is Phase.ABANDONED:
            return
        for start in range(0, len(epochs), MAX_EPOCHS):
            self.client.send("progress", {"lease": held.lease,
                                          "epochs": [epoch.as_dict() for epoch in epochs[start:start + MAX_EPOCHS]]})
        held.sent += len(epochs)
        held.sent_at = time.monotonic() if now is None else now
        held.urgent = False

    def _deliver(self) -> None:
        """Upload finished outcomes' artifacts and report them. An outcome stays until its report is
        sent, so a connection lost mid-upload only delays it."""
        while finished := self._in(Phase.FINISHED):  # each turn reports one, or finds it dropped meanwhile
            held = finished[0]
            kind, fields = held.message
            if kind == "result":
                try:
                    digests = {name: self.client.upload(data, **self._transfer_options())
                               for name, data in held.artifacts.items()}
                    fields = {**fields, "artifacts": digests}
                except EngineRefused as exc:
                    kind, fields = failure(held.lease, f"artifact upload refused: {exc}", Blame.INFRASTRUCTURE)
            if held.phase is Phase.FINISHED:  # a heartbeat reply may have dropped it meanwhile
                self._report(held, kind, fields)

    def _report(self, held: HeldLease, kind: str, fields: dict[str, Any]) -> None:
        slots = 0 if self._asked else self._wanted()
        held.report((kind, {**fields, "slots": 0}))  # sent again after a reconnect, asking for nothing
        self.client.send(kind, {**fields, "slots": slots})
        if slots:
            self._asked, self._asked_at = True, time.monotonic()

    def _beat(self) -> None:
        held = self._held()
        now = time.monotonic()
        if held and now - self._last_beat >= self._heartbeat:
            self.client.send("heartbeat", {"leases": held})
            self._last_beat = now

    def _drained(self) -> bool:
        unusable = self._setup.unusable is not None and self.evaluated > 0
        return not self._leases and (self._done or self._limit_reached() or unusable)

    def _leave(self) -> None:
        """Say goodbye, so the engine requeues what this trainer held at once instead of waiting out
        its leases; best effort, as the lease timeout covers a goodbye that never arrives."""
        try:
            self.client.send("bye", {})
            self.client.close(linger=1.0)
        except zmq.ZMQError:
            log.debug("could not say bye", exc_info=True)
