"""The engine server: a thin ZeroMQ loop around the scheduler.

Each turn of the loop drains a batch of trainer messages from the ROUTER socket, lets the scheduler
decide (drafting events into the live state), commits every drafted event in one durable
transaction, publishes them on the PUB socket in seq order, and only then sends the replies, so a
trainer is never told about something that is not on disk.

The engine binds to loopback by default; binding elsewhere needs CurveZMQ keys (``engine keys``),
and with keys an unauthorised trainer is refused during the handshake. Every frame is size-limited
and validated; garbage is logged and dropped, and the engine keeps serving.

Example::

    >>> log, state = open_run("runs/nb", config)
    >>> server = EngineServer(log, state, bind="tcp://127.0.0.1:0", pub="tcp://127.0.0.1:0")
    >>> server.start()
    >>> server.serve()         # returns once the search finished and the trainers were told
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from engine import protocol
from engine.artifacts import ARTIFACTS_DIR, ArtifactError, ArtifactStore
from engine.fold import State
from engine.keys import is_loopback, server_keys
from engine.log import EventLog
from engine.runs import remove_endpoints, started_at, write_endpoints
from engine.scheduler import Scheduler

log = logging.getLogger("lineage.engine")

MAX_BATCH = 256
POLL_SECONDS = 0.05
RETRY_SECONDS = 0.2


class ServerError(RuntimeError):
    """The engine cannot serve as asked (an unsafe bind, bad keys, a port in use)."""


def check_bind(endpoints: list[str], keys: Path | str | None, *, probe: bool = True) -> None:
    """Refuse to listen beyond this machine without CurveZMQ keys, or (with ``probe``) on a TCP port
    that is taken. Call it before writing anything."""
    if keys is not None:
        server_keys(keys)
    else:
        for endpoint in endpoints:
            if not is_loopback(endpoint):
                raise ServerError(
                    f"refusing to bind {endpoint} without CurveZMQ keys: anyone who can reach it could send "
                    "results. Make keys with `engine keys --dir keys` and pass --keys keys, or bind to 127.0.0.1"
                )
    if probe:
        for endpoint in endpoints:
            _probe_tcp(endpoint)


def _probe_tcp(endpoint: str) -> None:
    """Bind and release a plain socket where ZeroMQ will listen. A ZeroMQ probe would not do: its
    unbind completes later, in the I/O thread, and would make the real bind fail."""
    if not endpoint.startswith("tcp://"):
        return
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if port in ("0", "*") or not port.isdigit():
        return
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
        try:
            probe.bind(("" if host in ("*", "0.0.0.0") else host, int(port)))
        except OSError as exc:
            raise ServerError(f"cannot listen on {endpoint}: {exc.strerror} (is another engine using it?)") from None


@dataclass
class Session:
    """A trainer connection that said hello."""

    name: str
    told_done: bool = False


class EngineServer:
    """Serves one run to trainers until its search finishes (or :meth:`stop` is called)."""

    def __init__(
        self, log_: EventLog, state: State, *, bind: str = "tcp://127.0.0.1:5555",
        pub: str = "tcp://127.0.0.1:5556", keys: Path | str | None = None, linger: float | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.log = log_
        self.state = state
        self.scheduler = Scheduler(state, started_at=started_at(log_, state))
        self.store = ArtifactStore(log_.run_dir / ARTIFACTS_DIR)
        self.bind, self.pub_bind, self.keys = bind, pub, keys
        self.linger = linger if linger is not None else min(5.0, 2 * state.config["engine"]["heartbeat"])
        self.sessions: dict[bytes, Session] = {}
        self.dropped = 0
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._auth = None
        self._last_warning = 0.0
        self.endpoint = self.pub_endpoint = ""

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
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            public, secret, authorized = curve
            self._auth = ThreadAuthenticator(self._context)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(authorized))
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
        write_endpoints(self.log.run_dir, {
            "router": self.endpoint, "pub": self.pub_endpoint, "run_id": self.state.run_id,
            "curve": curve is not None, "host": socket.gethostname(),
        })

    def stop(self) -> None:
        """Ask the loop to return after its current turn (safe from signal handlers and threads)."""
        self._stop.set()

    def close(self) -> None:
        for name in ("router", "publisher"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
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
            if self.router in ready:
                for _ in range(MAX_BATCH):
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(frames, replies)
            now = time.monotonic()
            self.scheduler.expire(now)
            self.scheduler.finish_if_done()
            self._commit()
            for identity, frame in replies:
                self.router.send_multipart([identity, frame])
            if on_turn is not None:
                on_turn(self.state)
            if self.state.finished is not None:
                finished_at = finished_at or now
                if all(s.told_done for s in self.sessions.values()) or now - finished_at > self.linger:
                    break
            else:
                finished_at = None
        return self.state

    def _commit(self) -> None:
        drafts = self.scheduler.take()
        if not drafts:
            return
        self.log.append([raw for _, raw in drafts], expected_head=drafts[0][0].seq - 1)
        for event, raw in drafts:
            self.publisher.send_multipart([event.type.encode(), event.seq.to_bytes(8, "big"), raw])

    # -- messages -------------------------------------------------------------------------------

    def _handle(self, frames: list[bytes], replies: list[tuple[bytes, bytes]]) -> None:
        if len(frames) != 2:
            self._drop(f"{len(frames) - 1} frames instead of 1")
            return
        identity, frame = frames
        try:
            kind, message = protocol.decode(frame, protocol.TRAINER_MESSAGES)
        except protocol.ProtocolError as exc:
            self._drop(str(exc))
            replies.append((identity, protocol.encode("error", code=exc.code, message=str(exc))))
            return
        session = self.sessions.get(identity)
        if kind == "hello":
            self._hello(identity, message, replies)
        elif session is None:
            replies.append((identity, protocol.encode(
                "error", code="hello", message="say hello first (the engine may have restarted)")))
        else:
            getattr(self, f"_on_{kind}")(identity, session, message, replies)

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_warning > 1.0:
            self._last_warning = now
            log.warning("dropped an invalid message (%d so far): %s", self.dropped, reason)

    def _hello(self, identity: bytes, message: dict[str, Any], replies: list[tuple[bytes, bytes]]) -> None:
        name = message["name"]
        for other, session in list(self.sessions.items()):
            if session.name == name and other != identity:
                # The same trainer on a new connection, or two trainers sharing a name (which then take
                # each other's leases away: give each trainer its own --name).
                log.warning("trainer name %s connected again; the older connection is forgotten", name)
                del self.sessions[other]
        self.sessions[identity] = Session(name)
        held = set(message["leases"])
        self.scheduler.forget_trainer(name, keep=held, reason="its trainer reconnected without it")
        self.scheduler.heartbeat(name, sorted(held), time.monotonic())
        log.info("trainer %s connected (pid %s on %s)", name, message["pid"], message["host"])
        config = self.state.config
        replies.append((identity, protocol.encode(
            "welcome", run=self.state.run_id, config=config, heartbeat=config["engine"]["heartbeat"],
            lease_timeout=config["engine"]["lease_timeout"],
        )))

    def _work(self, identity: bytes, session: Session, slots: int) -> bytes:
        items = self.scheduler.assign(session.name, slots, time.monotonic()) if slots else []
        done = not items and self.state.finished is not None
        session.told_done = session.told_done or done
        return protocol.encode("work", items=items, retry=RETRY_SECONDS, done=done)

    def _on_ready(self, identity: bytes, session: Session, message: dict[str, Any],
                  replies: list[tuple[bytes, bytes]]) -> None:
        replies.append((identity, self._work(identity, session, message["slots"])))

    def _on_heartbeat(self, identity: bytes, session: Session, message: dict[str, Any],
                      replies: list[tuple[bytes, bytes]]) -> None:
        unknown = self.scheduler.heartbeat(session.name, message["leases"], time.monotonic())
        replies.append((identity, protocol.encode("beat", unknown=unknown)))

    def _owned(self, session: Session, lease: int) -> str | None:
        held = self.state.leases.get(lease)
        if held is not None and held.trainer != session.name:
            return f"lease {lease} belongs to trainer {held.trainer}"
        return None

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
                          lambda: self.scheduler.fail(message["lease"], message["reason"], message["blame"]))

    def _acknowledge(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]], record: Callable[[], tuple[bool, str]]) -> None:
        """Record a trainer's report on its own lease, acknowledge it, and hand out more work if asked."""
        lease = message["lease"]
        problem = self._owned(session, lease)
        accepted, reason = (False, problem) if problem else record()
        replies.append((identity, protocol.encode("ack", lease=lease, accepted=accepted, reason=reason)))
        if message["slots"]:
            replies.append((identity, self._work(identity, session, message["slots"])))

    def _on_blob_put(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]]) -> None:
        digest = message["digest"]
        try:
            have = self.store.put_chunk(digest, message["offset"], message["total"], message["data"])
        except ArtifactError as exc:
            replies.append((identity, protocol.encode("error", code="blob", message=str(exc))))
            return
        replies.append((identity, protocol.encode(
            "blob_ok", digest=digest, have=have, complete=have == message["total"])))

    def _on_blob_get(self, identity: bytes, session: Session, message: dict[str, Any],
                     replies: list[tuple[bytes, bytes]]) -> None:
        digest = message["digest"]
        try:
            data, total = self.store.read_chunk(digest, message["offset"])
        except ArtifactError as exc:
            replies.append((identity, protocol.encode("error", code="blob", message=str(exc))))
            return
        replies.append((identity, protocol.encode(
            "blob", digest=digest, offset=message["offset"], total=total, data=data)))

    def _on_bye(self, identity: bytes, session: Session, message: dict[str, Any],
                replies: list[tuple[bytes, bytes]]) -> None:
        self.scheduler.forget_trainer(session.name, keep=set(), reason="its trainer left")
        del self.sessions[identity]
