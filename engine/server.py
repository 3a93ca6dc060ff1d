"""The engine server: a thin ZeroMQ loop around the scheduler.

Each turn of the loop drains a batch of trainer messages from the ROUTER socket, lets the scheduler
decide (drafting events into the live state), commits every drafted event in one durable
transaction, publishes them on the PUB socket in seq order, and only then sends the replies, so a
trainer is never told about something that is not on disk.

The engine binds to loopback by default; binding elsewhere needs CurveZMQ keys (``engine keys``),
and with keys an unauthorised trainer is refused during the handshake (and the refusal logged).
Every frame is size-limited and validated; garbage is counted, logged (rate-limited) and answered
with a short error that never repeats it, and the engine keeps serving. A session is bound to the
connection that said hello (its ZeroMQ routing identity and, with keys, its public key); only the
session whose secret a lease records may report on it. A peer that does not read its replies gets at
most ``REPLY_QUEUE`` of them queued; the rest are dropped and counted. A peer that sends more messages a
second than its :class:`~engine.limits.Limits` allow has the rest dropped unread, and a trainer's blob
uploads are bounded in flight and in total (``engine/limits.py``).

Example::

    >>> log, state = open_run("runs/nb", config)
    >>> server = EngineServer(log, state, bind="tcp://127.0.0.1:0", pub="tcp://127.0.0.1:0")
    >>> server.start()
    >>> server.serve()         # returns once the search finished and the trainers were told
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from engine import protocol
from engine import watch as refused
from engine.artifacts import ARTIFACTS_DIR, ArtifactError, ArtifactStore
from engine.binding import ServerError, check_bind
from engine.gatekeeper import Gatekeeper
from engine.keys import server_keys
from engine.limits import Limits, MessageBuckets, UploadLedger
from engine.log import EventLog
from engine.runs import remove_endpoints, started_at, write_endpoints
from engine.scheduler import Scheduler
from engine.sessions import Peer, Session
from engine.state import State
from engine.watch import Watch

log = logging.getLogger("lineage.engine")

MAX_BATCH = 256
POLL_SECONDS = 0.05
RETRY_SECONDS = 0.2
REPLY_QUEUE = 64  # replies queued for one peer before more are dropped (ZeroMQ's send high-water mark)
HOUSEKEEPING_SECONDS = 1.0
RETURN_GRACE = 20.0  # trainers retry at least every 5 s (trainers.daemon.MAX_BACKOFF): 20 s reaches them all


class EngineServer:
    """Serves one run to trainers until its search finishes (or :meth:`stop` is called).

    A run that was already finished when the engine started is served for ``return_grace`` seconds,
    so trainers that lost their engine just as the search ended are told it is done.
    """

    def __init__(
        self, log_: EventLog, state: State, *, bind: str = "tcp://127.0.0.1:5555",
        pub: str = "tcp://127.0.0.1:5556", keys: Path | str | None = None, linger: float | None = None,
        context: zmq.Context | None = None, return_grace: float = RETURN_GRACE, limits: Limits | None = None,
    ) -> None:
        self.log = log_
        self.state = state
        self.scheduler = Scheduler(state, started_at=started_at(log_, state))
        self.limits = limits or Limits()
        self.store = ArtifactStore(log_.run_dir / ARTIFACTS_DIR, upload_quota=self.limits.upload_in_flight)
        self.buckets = MessageBuckets(self.limits)
        self.uploaded = UploadLedger(self.limits)
        self.bind, self.pub_bind, self.keys = bind, pub, keys
        self.linger = linger if linger is not None else min(5.0, 2 * state.config.engine.heartbeat)
        self.returning = state.finished is not None
        if self.returning:
            self.linger = max(self.linger, return_grace)
        self.sessions: dict[bytes, Session] = {}
        self.watch = Watch(log)
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._gate: Gatekeeper | None = None
        self._monitor: zmq.Socket | None = None
        self._sent_leases: list[int] = []
        self._chunked: set[bytes] = set()  # sessions sent a blob chunk this turn
        self._trim = False  # a multi-part message was let go: give its memory back
        self._housekept = 0.0
        self._published: tuple[dict[str, int], int] = ({}, 0)
        self.endpoint = self.pub_endpoint = ""

    @property
    def dropped(self) -> int:
        """Invalid frames so far."""
        return self.watch.counts[refused.FRAMES]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets (after checking the bind is safe) and record the endpoints."""
        check_bind([self.bind, self.pub_bind], self.keys, probe=False)  # the bind below reports a taken port
        curve = server_keys(self.keys) if self.keys is not None else None
        self.router = self._context.socket(zmq.ROUTER)
        self.publisher = self._context.socket(zmq.PUB)
        for sock in (self.router, self.publisher):
            sock.linger = 0
            sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME)
        self.router.sndhwm = REPLY_QUEUE
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply that cannot be queued raises: it is counted
        if curve is not None:
            public, secret, authorized = curve
            self._gate = Gatekeeper(self._context, authorized)
            self._gate.start()
            # Handshakes that fail before a key is shown (a trainer without keys) never reach the gatekeeper.
            self._monitor = self.router.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
            for sock in (self.router, self.publisher):
                sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        try:
            self.router.bind(self.bind)
            self.publisher.bind(self.pub_bind)
        except zmq.ZMQError as exc:
            self.close()
            raise ServerError(f"cannot bind {self.bind} / {self.pub_bind}: {exc}") from None
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pub_endpoint = self.publisher.getsockopt_string(zmq.LAST_ENDPOINT)
        self._endpoints = {"router": self.endpoint, "pub": self.pub_endpoint, "run_id": self.state.run_id,
                           "curve": curve is not None, "host": socket.gethostname()}
        write_endpoints(self.log.run_dir, {**self._endpoints, "refused": {}, "trainers": 0})
        self._housekeeping(time.monotonic())

    def stop(self) -> None:
        """Ask the loop to return after its current turn (safe from signal handlers and threads)."""
        self._stop.set()

    def close(self) -> None:
        if self._gate is not None:
            self._monitor.close(0)
            self._gate.stop()
            self._gate = None
        for name in ("router", "publisher"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(0)
        remove_endpoints(self.log.run_dir)

    # -- the loop -------------------------------------------------------------------------------

    def serve(self, on_turn: Callable[[State], None] | None = None) -> State:
        """Serve until the search finished and every trainer was told (or ``linger`` passed)."""
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        finished_at: float | None = None
        while not self._stop.is_set():
            ready = dict(poller.poll(POLL_SECONDS * 1000))
            replies: list[tuple[bytes, bytes]] = []
            drained_at = time.monotonic()
            backlog = False
            if self.router in ready:
                for _ in range(MAX_BATCH):
                    message = self._receive()
                    if message is None:
                        break
                    if self._within_rate(message[0], drained_at, replies):
                        self._handle(*message, replies)
                else:
                    backlog = True
            # A lease is silent only if no heartbeat for it came in before the socket was drained; with
            # messages still waiting, one of them may be that heartbeat.
            if not backlog:
                self.scheduler.expire(drained_at)
            self.scheduler.stop_at_deadline()
            for lease in self.scheduler.take_stops():  # each decision is committed below before anyone is told
                self._tell_stop(lease, replies)
            self.scheduler.finish_if_done()
            self._commit()
            self._send(replies)
            self.scheduler.sent(self._sent_leases, time.monotonic())
            self._sent_leases.clear()
            self._chunked.clear()
            now = time.monotonic()
            if now - self._housekept >= HOUSEKEEPING_SECONDS:
                self._housekeeping(now)
            if on_turn is not None:
                on_turn(self.state)
            if self.state.finished is not None:
                finished_at = finished_at or now
                everyone_told = all(s.told_done for s in self.sessions.values()) and not self.returning
                if everyone_told or now - finished_at > self.linger:
                    break
            else:
                finished_at = None
        return self.state

    def _commit(self) -> None:
        drafts = self.scheduler.take()
        if not drafts:
            return
        first = drafts[0][0].seq
        self.log.append([raw for _, raw in drafts], expected_head=first - 1)
        # What subscribers get is what the log holds: the events with their links (engine/chain.py).
        for (event, _), (_, stored) in zip(drafts, self.log.read_raw(first, self.log.head), strict=True):
            self.publisher.send_multipart([event.type.encode(), event.seq.to_bytes(8, "big"), stored])

    def _send(self, replies: list[tuple[bytes, bytes]]) -> None:
        now = time.monotonic()
        for identity, frame in replies:
            session = self.sessions.get(identity)
            if session is not None:  # its silence counts from the last exchange, however long the turn took
                session.heard = now
            try:
                self.router.send_multipart([identity, frame], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # its queue is full (it does not read), or it is gone
                self.watch.note(refused.REPLIES, session.name if session else _hex(identity),
                                "its queue is full" if exc.errno == zmq.EAGAIN else "it is gone")

    def _within_rate(self, peer: Peer, now: float, replies: list[tuple[bytes, bytes]]) -> bool:
        """Whether ``peer`` may send this message; a message over its rate is dropped unread (and counted)."""
        sender = (peer.key or peer.identity) if self.keys is not None else peer.identity
        if self.buckets.take(sender, now):
            return True
        self.watch.note(refused.RATE, peer.address, f"over {self.limits.message_rate:g} messages a second")
        if self.buckets.tell(sender, now):
            replies.append((peer.identity, protocol.error(
                "rate", f"over {self.limits.message_rate:g} messages a second: messages are being dropped")))
        return False

    def _housekeeping(self, now: float) -> None:
        """Forget silent sessions, remove stale partial uploads, log refused handshakes, publish counts."""
        self._housekept = now
        timeout = self.state.config.engine.lease_timeout
        for identity, session in list(self.sessions.items()):
            if now - session.heard > timeout:
                del self.sessions[identity]
                self.watch.note(refused.FORGOTTEN, session.name, f"silent for {timeout:g}s", level=logging.INFO)
        for path in self.store.expire_uploads(max(60.0, 4 * timeout)):
            log.info("removed an abandoned partial upload %s", path.name)
        if self._gate is not None:
            refusals, more = self._gate.refusals()
            for refusal in refusals:
                self.watch.note(refused.HANDSHAKES, f"{refusal.address} (key {refusal.key})", refusal.reason)
            if more:
                self.watch.note(refused.HANDSHAKES, "more peers", "refusals beyond what was kept", count=more)
            while self._monitor.poll(0):
                event = recv_monitor_message(self._monitor)
                self.watch.note(refused.HANDSHAKES, "a peer (ZeroMQ does not say which)",
                                f"{zmq.Event(event['event']).name} ({event['value']}): a trainer without the "
                                "engine's keys, or with the wrong server key?")
        self.buckets.forget_full(now)
        if self._trim:
            self._trim = False
            _give_memory_back()
        published = (dict(self.watch.counts), len(self.sessions))
        if published != self._published:
            self._published = published
            write_endpoints(self.log.run_dir, {**self._endpoints, "refused": published[0], "trainers": published[1]})

    # -- messages -------------------------------------------------------------------------------

    def _receive(self) -> tuple[Peer, list[bytes]] | None:
        """The next message's sender and frames, or None when none is waiting. Of a message with more
        frames than the protocol's one, the extra frames are read and let go one at a time (only
        counted), so a long multi-part message is never held in this process twice."""
        try:
            first = self.router.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        frames: list[bytes] = []
        more = first.more
        while more:
            part = self.router.recv(copy=False)
            more = part.more
            frames.append(part.bytes if not frames else b"")
        return Peer(first.bytes, first), frames

    def _handle(self, peer: Peer, frames: list[bytes], replies: list[tuple[bytes, bytes]]) -> None:
        identity = peer.identity
        if len(frames) != 1:
            self._trim = self._trim or len(frames) > 1
            self.watch.note(refused.FRAMES, peer.address, f"{len(frames)} frames instead of 1")
            replies.append((identity, protocol.error("invalid", "a message is one frame")))
            return
        try:
            kind, message = protocol.decode(frames[0], protocol.TRAINER_MESSAGES)
        except protocol.ProtocolError as exc:
            self.watch.note(refused.FRAMES, peer.address, str(exc))
            replies.append((identity, protocol.error(exc.code, str(exc))))
            return
        session = self.sessions.get(identity)
        if kind == "hello":
            self._hello(peer, message, replies)
        elif session is None:
            self.watch.note(refused.SESSIONS, peer.address, f"{kind} before hello")
            replies.append((identity, protocol.error("hello", "say hello first (the engine may have restarted)")))
        else:
            session.heard = time.monotonic()
            getattr(self, f"_on_{kind}")(identity, session, message, replies)

    def _hello(self, peer: Peer, message: dict[str, Any], replies: list[tuple[bytes, bytes]]) -> None:
        holder = protocol.proof_of(message["secret"], peer.key)
        name = message["name"]
        for other, session in list(self.sessions.items()):
            if session.name != name or other == peer.identity:
                continue
            if session.holder == holder:
                # The same trainer on a new connection (its old one broke): the old one is forgotten.
                log.info("trainer %s connected again; its older connection is forgotten", name)
                del self.sessions[other]
            else:
                name = self._free_name(name)
                self.watch.note(refused.RENAMED, peer.address,
                                f"name {message['name']} is held by a live session: calling this trainer {name}")
            break
        self.sessions[peer.identity] = Session(name, holder, time.monotonic(), account=peer.key or holder)
        held = set(message["leases"])
        self.scheduler.forget_trainer(name, holder, keep=held, reason="its trainer reconnected without it")
        self.scheduler.heartbeat(name, holder, sorted(held), time.monotonic())
        log.info("trainer %s connected from %s (pid %s on %s)", name, peer.address, message["pid"], message["host"])
        config = self.state.config
        replies.append((peer.identity, protocol.encode(
            "welcome", run=self.state.run_id, name=name, config=config.to_dict(), bundle=self.state.bundle,
            heartbeat=config.engine.heartbeat,
            lease_timeout=config.engine.lease_timeout,
        )))
        for lease in sorted(held):  # a stop it may have missed while it was away
            if lease in self.state.leases and self.state.trials[self.state.leases[lease].trial].stop is not None:
                replies.append((peer.identity, protocol.encode("stop", lease=lease)))

    def _tell_stop(self, lease: int, replies: list[tuple[bytes, bytes]]) -> None:
        """Tell the session that holds ``lease`` to stop training it after the current epoch."""
        held = self.state.leases[lease]
        for identity, session in self.sessions.items():
            if held.held_by(session.name, session.holder):
                replies.append((identity, protocol.encode("stop", lease=lease)))

    def _free_name(self, name: str) -> str:
        taken = {session.name for session in self.sessions.values()}
        number = 2
        while f"{name[:120]}-{number}" in taken:
            number += 1
        return f"{name[:120]}-{number}"

    def _work(self, identity: bytes, session: Session, slots: int) -> bytes:
        items = self.scheduler.assign(session.name, slots, session.holder) if slots else []
        self._sent_leases.extend(item.lease for item in items)
        done = not items and self.state.finished is not None
        session.told_done = session.told_done or done
        return protocol.encode("work", items=[item.to_message() for item in items], retry=RETRY_SECONDS, done=done)

    def _on_ready(self, identity: bytes, session: Session, message: dict[str, Any],
                  replies: list[tuple[bytes, bytes]]) -> None:
        replies.append((identity, self._work(identity, session, message["slots"])))

    def _on_data(self, identity: bytes, session: Session, message: dict[str, Any],
                 replies: list[tuple[bytes, bytes]]) -> None:
        """Record what towers are built on (the first trainer's word stands). No reply."""
        problem = self.scheduler.describe(message["input"])
        if problem:
            self.watch.note(refused.REPORTS, session.name, problem)

    def _on_heartbeat(self, identity: bytes, session: Session, message: dict[str, Any],
                      replies: list[tuple[bytes, bytes]]) -> None:
        unknown = self.scheduler.heartbeat(session.name, session.holder, message["leases"], time.monotonic())
        replies.append((identity, protocol.encode("beat", unknown=unknown)))

    def _owned(self, session: Session, lease: int) -> str | None:
        held = self.state.leases.get(lease)
        if held is not None and not held.held_by(session.name, session.holder):
            return f"lease {lease} belongs to trainer {held.trainer}"
        return None

    def _on_progress(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]]) -> None:
        """Record a lease's learning curve so far; it counts as a heartbeat of that lease. No reply."""
        lease = message["lease"]
        problem = self._owned(session, lease)
        if problem:
            self.watch.note(refused.SESSIONS, session.name, problem)
            return
        self.scheduler.heartbeat(session.name, session.holder, [lease], time.monotonic())
        problem = self.scheduler.progress(lease, message["epochs"])
        if problem:
            self.watch.note(refused.REPORTS, session.name, f"lease {lease}: {problem}")

    def _on_result(self, identity: bytes, session: Session, message: dict[str, Any],
                   replies: list[tuple[bytes, bytes]]) -> None:
        missing = [d for d in message["artifacts"].values() if not self.store.has(d)]

        def record() -> tuple[bool, str]:
            if missing:
                return False, f"artifact {missing[0]} was not uploaded"
            return self.scheduler.complete(message["lease"], message["metrics"], message["artifacts"],
                                           message["inherited"])

        self._acknowledge(identity, session, message, replies, record)

    def _on_fail(self, identity: bytes, session: Session, message: dict[str, Any],
                 replies: list[tuple[bytes, bytes]]) -> None:
        self._acknowledge(identity, session, message, replies,
                          lambda: self.scheduler.fail(message["lease"], message["reason"], message["blame"],
                                                                  message["metrics"]))

    def _acknowledge(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]], record: Callable[[], tuple[bool, str]]) -> None:
        """Record a trainer's report on its own lease, acknowledge it, and hand out more work if asked."""
        lease = message["lease"]
        problem = self._owned(session, lease)
        if problem:
            self.watch.note(refused.SESSIONS, session.name, problem)
        accepted, reason = (False, problem) if problem else record()
        replies.append((identity, protocol.encode("ack", lease=lease, accepted=accepted, reason=reason)))
        if message["slots"]:
            replies.append((identity, self._work(identity, session, message["slots"])))

    def _on_blob_put(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]]) -> None:
        digest, offset, total, data = message["digest"], message["offset"], message["total"], message["data"]
        try:
            if not self.store.has(digest):
                self.uploaded.check(session.account, session.name, total if offset == 0 else len(data))
            have, written = self.store.put_chunk(digest, offset, total, data, uploader=session.holder)
        except ArtifactError as exc:
            self.watch.note(refused.UPLOADS, session.name, str(exc))
            replies.append((identity, protocol.error("blob", str(exc))))
            return
        self.uploaded.add(session.account, written)
        replies.append((identity, protocol.encode("blob_ok", digest=digest, have=have, complete=have == total)))

    def _on_blob_get(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]]) -> None:
        digest = message["digest"]
        if identity in self._chunked:
            # A trainer asks for the next chunk once it has the last: more in one turn would only pile up.
            self.watch.note(refused.REPLIES, session.name, "asked for a second chunk before reading the first")
            replies.append((identity, protocol.error("busy", "one chunk at a time")))
            return
        self._chunked.add(identity)
        try:
            data, total = self.store.read_chunk(digest, message["offset"])
        except ArtifactError as exc:
            replies.append((identity, protocol.error("blob", str(exc))))
            return
        replies.append((identity, protocol.encode(
            "blob", digest=digest, offset=message["offset"], total=total, data=data)))

    def _on_bye(self, identity: bytes, session: Session, message: dict[str, Any],
                replies: list[tuple[bytes, bytes]]) -> None:
        self.scheduler.forget_trainer(session.name, session.holder, keep=set(), reason="its trainer left")
        del self.sessions[identity]


def _give_memory_back() -> None:
    """Return freed heap memory to the system. ZeroMQ holds a multi-part message whole before the engine
    sees any of it; once the engine let it go, the C allocator would otherwise keep those pages."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _hex(identity: bytes) -> str:
    return identity.hex()[:16]
