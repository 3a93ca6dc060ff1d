"""The trainer daemon: connect, hello, ready, work, heartbeats while evaluating, result. Repeat.

A trainer is a stateless worker: everything it knows comes from the engine (the run's config in
WELCOME, candidates in WORK, parent artifacts by digest). It evaluates one candidate at a time in
a worker thread while its main thread keeps talking to the engine: heartbeats on a timer, results
resent until acknowledged, and a reconnect with exponential backoff whenever the engine goes away.

A lease stays held, and heartbeated, from WORK until the engine acknowledges its result: while it
waits in the backlog, while it is evaluated, while its artifacts upload, and while its report waits
for an ACK, across reconnects too. Nothing finished is thrown away because the engine blinked.
Each daemon makes one random secret and sends it with every hello: the engine accepts reports on its
leases only from a connection that knows it. The daemon goes by the name the engine's welcome gives
it (the engine renames a trainer whose name another live trainer holds).

Example::

    >>> TrainerDaemon("tcp://127.0.0.1:5555").run()     # returns when the search is finished
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from engine.artifacts import ArtifactStore
from trainers.client import EngineClient, EngineGone, EngineRefused, Message
from trainers.evaluator import EvaluationError, Evaluator, make_evaluator

log = logging.getLogger("lineage.trainer")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
HELLO_TIMEOUT = 5.0
CANDIDATE = "candidate"            # the candidate itself could not be evaluated
INFRASTRUCTURE = "infrastructure"  # something around it failed (artifacts, transfers)


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lineage" / "blobs"


def default_name() -> str:
    """host-pid plus a random suffix: containers often share a hostname and a pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class TrainerDaemon:
    """One trainer process's loop. ``prefetch`` is how many leases it holds at once (queued ones
    wait their turn); ``max_trials`` stops it after that many evaluations."""

    def __init__(
        self, endpoint: str, *, name: str | None = None, prefetch: int = 1,
        curve: tuple[bytes, bytes, bytes] | None = None, cache_dir: Path | str | None = None,
        max_trials: int | None = None, parent_pid: int | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.name = name or default_name()
        self._secret = os.urandom(16).hex()  # proves to the engine that a reconnecting trainer is this one
        self.prefetch = prefetch
        self.max_trials = max_trials
        self.parent_pid = parent_pid
        self.client = EngineClient(endpoint, curve=curve)
        self.cache = ArtifactStore(cache_dir or default_cache())
        self.evaluated = 0
        self._stop = threading.Event()
        self._evaluator: Evaluator | None = None
        self._run_id: str | None = None
        self._backlog: deque[dict[str, Any]] = deque()
        self._running: tuple[dict[str, Any], Future] | None = None
        self._abandoned: set[int] = set()
        self._outcomes: dict[int, tuple[str, dict[str, Any], dict[str, bytes]]] = {}
        self._unacked: dict[int, tuple[str, dict[str, Any]]] = {}
        self._asked = False
        self._asked_at = 0.0
        self._reask = 6.0
        self._retry_at = 0.0
        self._done = False
        self._heartbeat = 2.0
        self._patience = 10.0
        self._last_beat = 0.0
        self._backoff = FIRST_BACKOFF

    @property
    def busy(self) -> bool:
        """Whether an evaluation is still running in the worker thread."""
        return self._running is not None and not self._running[1].done()

    def stop(self) -> None:
        """Leave soon: the engine is told, and puts this trainer's candidates back in its queue."""
        self._stop.set()

    # -- outer loop: reconnect with backoff --------------------------------------------------------

    def run(self) -> int:
        """Serve until the search is finished, ``max_trials`` or :meth:`stop` (0), or until the engine
        refuses this trainer for good (2)."""
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
                    return 0
                except EngineGone as exc:
                    log.warning("%s: %s; reconnecting in %.1fs", self.name, exc, self._backoff)
                    self._stop.wait(self._backoff)
                    self._backoff = min(self._backoff * 2, MAX_BACKOFF)
                except EngineRefused as exc:
                    log.error("%s: %s", self.name, exc)
                    return 2
            return 0
        finally:
            self.client.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._doorbell.close(0)

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def _held(self) -> list[int]:
        """Every lease this trainer answers for until the engine acknowledges it."""
        leases = [item["lease"] for item in self._backlog]
        if self._running is not None:
            leases.append(self._running[0]["lease"])
        return leases + list(self._outcomes) + list(self._unacked)

    # -- one connection ----------------------------------------------------------------------------

    def _session(self) -> None:
        """Talk to the engine until the search is done, the trainer reached ``max_trials`` or was
        stopped. Raises :class:`EngineGone` when the connection must be made again."""
        self.client.connect()
        _, welcome = self.client.request(
            "hello", {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(), "leases": self._held(),
                      "secret": self._secret},
            expect={"welcome"}, timeout=HELLO_TIMEOUT, dispatch=self._dispatch,
        )
        self._welcome(welcome)
        self._backoff = FIRST_BACKOFF
        for kind, fields in self._unacked.values():
            self.client.send(kind, fields)
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
                    self._dispatch(message)
            self._finish()
            self._beat()
            if self._drained():
                self._leave()
                return
            if self.client.waiting > self._patience:
                raise EngineGone(f"no reply from {self.client.endpoint} for {self._patience:g}s")

    def _welcome(self, welcome: dict[str, Any]) -> None:
        if welcome["run"] != self._run_id:
            if self._run_id is not None:
                log.warning("%s: the engine now serves run %s; dropping work of run %s",
                            self.name, welcome["run"], self._run_id)
                if self._running is not None:
                    self._abandoned.add(self._running[0]["lease"])
                self._backlog.clear()
                self._outcomes.clear()
                self._unacked.clear()
            try:
                self._evaluator = make_evaluator(welcome["config"])
            except Exception as exc:  # bad data, a missing package: this trainer cannot serve the run
                raise EngineRefused(f"cannot evaluate candidates of run {welcome['run']}: "
                                    f"{type(exc).__name__}: {exc}") from None
            self._run_id = welcome["run"]
        if welcome["name"] != self.name:
            log.warning("%s: another trainer holds this name; the engine knows this trainer as %s",
                        self.name, welcome["name"])
            self.name = welcome["name"]
        self._heartbeat = welcome["heartbeat"]
        self._patience = max(10.0, 3 * welcome["heartbeat"])
        self._reask = 3 * welcome["heartbeat"]
        log.info("%s: connected to %s (run %s)", self.name, self.client.endpoint, self._run_id)

    def _wanted(self) -> int:
        if self._done or self._stop.is_set():
            return 0
        held = len(self._backlog) + (self._running is not None)
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
        if self._held():
            return math.inf  # its heartbeats and reports keep the engine talking
        return max(self._retry_at, self._asked_at + self._reask)

    def _ask(self) -> None:
        if time.monotonic() >= self._ask_at():
            self.client.send("ready", {"slots": self._wanted()})
            self._asked, self._asked_at = True, time.monotonic()

    def _wait_time(self) -> float:
        if self._running is not None and self._running[1].done():
            return 0.0
        return min(self._heartbeat, max(self._ask_at() - time.monotonic(), 0.0))

    def _dispatch(self, message: Message) -> None:
        kind, fields = message
        if kind == "work":
            self._asked = False
            self._backlog.extend(fields["items"])
            self._done = self._done or fields["done"]
            if not fields["items"] and not fields["done"]:
                self._retry_at = time.monotonic() + fields["retry"]
        elif kind == "ack":
            self._unacked.pop(fields["lease"], None)
            if not fields["accepted"]:
                log.info("%s: lease %s not recorded: %s", self.name, fields["lease"], fields["reason"])
        elif kind == "beat":
            for lease in fields["unknown"]:  # the engine no longer wants these: stop answering for them
                self._backlog = deque(item for item in self._backlog if item["lease"] != lease)
                self._outcomes.pop(lease, None)
                self._unacked.pop(lease, None)
                if self._running is not None and self._running[0]["lease"] == lease:
                    self._abandoned.add(lease)
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
        if self._running is not None or not self._backlog:
            return
        item = self._backlog[0]
        needs = list(item.get("needs") or [])
        if self._evaluator.wants_parent_artifacts:
            needs += list(item["parent_artifacts"].values())
        if needs:
            try:
                for digest in needs:
                    if not self.cache.has(digest):
                        self.cache.put(self.client.download(digest, **self._transfer_options()))
            except EngineRefused as exc:
                self._backlog.popleft()
                self.evaluated += 1
                self._outcomes[item["lease"]] = (
                    "fail", {"lease": item["lease"], "reason": f"an artifact it needs is unavailable: {exc}",
                             "blame": INFRASTRUCTURE}, {})
                self._deliver()
                return
        self._backlog.popleft()
        future = self._executor.submit(self._evaluator.evaluate, item, self.cache.read)
        future.add_done_callback(self._ring)
        self._running = (item, future)

    def _ring(self, future: Future) -> None:
        """Wake the main loop; called once the future is done, from whichever thread finished it."""
        ringer = getattr(self._ringers, "socket", None)
        if ringer is None:
            ringer = self._ringers.socket = zmq.Context.instance().socket(zmq.PUSH)
            ringer.linger = 0
            ringer.connect(self._doorbell_address)
        ringer.send(b"", zmq.NOBLOCK)

    def _finish(self) -> None:
        if self._running is None or not self._running[1].done():
            return
        item, future = self._running
        lease = item["lease"]
        self._running = None
        self.evaluated += 1
        if lease in self._abandoned:
            self._abandoned.discard(lease)
            return
        try:
            outcome = future.result()
        except EvaluationError as exc:
            self._outcomes[lease] = ("fail", {"lease": lease, "reason": str(exc), "blame": CANDIDATE}, {})
        except Exception as exc:  # any crash of a candidate fails that trial, not the trainer
            log.exception("%s: evaluating trial %s crashed", self.name, item["trial"])
            reason = f"{type(exc).__name__}: {exc}"
            self._outcomes[lease] = ("fail", {"lease": lease, "reason": reason, "blame": CANDIDATE}, {})
        else:
            self._outcomes[lease] = ("result", {"lease": lease, "metrics": outcome.metrics,
                                                "inherited": outcome.inherited}, outcome.artifacts)
        self._deliver()

    def _deliver(self) -> None:
        """Upload finished outcomes' artifacts and report them. An outcome stays until its report is
        sent, so a connection lost mid-upload only delays it."""
        for lease in list(self._outcomes):
            kind, fields, artifacts = self._outcomes[lease]
            if kind == "result":
                try:
                    digests = {name: self.client.upload(data, **self._transfer_options())
                               for name, data in artifacts.items()}
                    fields = {**fields, "artifacts": digests}
                except EngineRefused as exc:
                    kind = "fail"
                    fields = {"lease": lease, "reason": f"artifact upload refused: {exc}", "blame": INFRASTRUCTURE}
            if self._outcomes.pop(lease, None) is not None:  # a heartbeat reply may have dropped it meanwhile
                self._report(kind, fields)

    def _report(self, kind: str, fields: dict[str, Any]) -> None:
        slots = 0 if self._asked else self._wanted()
        fields = {**fields, "slots": slots}
        self._unacked[fields["lease"]] = (kind, {**fields, "slots": 0})
        self.client.send(kind, fields)
        if slots:
            self._asked, self._asked_at = True, time.monotonic()

    def _beat(self) -> None:
        held = self._held()
        now = time.monotonic()
        if held and now - self._last_beat >= self._heartbeat:
            self.client.send("heartbeat", {"leases": held})
            self._last_beat = now

    def _drained(self) -> bool:
        limit_reached = self.max_trials is not None and self.evaluated >= self.max_trials
        idle = self._running is None and not self._backlog and not self._outcomes and not self._unacked
        return idle and (self._done or limit_reached)

    def _leave(self) -> None:
        """Say goodbye, so the engine requeues what this trainer held at once instead of waiting out
        its leases; best effort, as the lease timeout covers a goodbye that never arrives."""
        try:
            self.client.send("bye", {})
            self.client.close(linger=1.0)
        except zmq.ZMQError:
            log.debug("could not say bye", exc_info=True)
