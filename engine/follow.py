"""Following a run's log: every event from a seq on, then new ones as the engine commits them.

Events always come from the log itself, so none is missed or repeated; the engine's PUB socket
(when one is serving the run) only says when to look again, and a short poll covers the rest.

Example::

    >>> for event in follow("runs/nb", start=1, forever=True):
    ...     print(event.seq, event.type)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import zmq

from engine.events import Event
from engine.log import EventLog
from engine.runs import read_endpoints

POLL_SECONDS = 0.5


def follow(run_dir: Path | str, start: int = 1, forever: bool = False) -> Iterator[Event]:
    """Events with seq >= ``start``; with ``forever``, keep waiting for new ones."""
    log = EventLog.open_reader(run_dir)
    subscriber: zmq.Socket | None = None
    next_seq = start
    try:
        while True:
            for event in log.read(next_seq):
                yield event
                next_seq = event.seq + 1
            if not forever:
                return
            if subscriber is None:
                subscriber = _subscribe(run_dir)
            if subscriber is not None and subscriber.poll(POLL_SECONDS * 1000):
                while subscriber.poll(0):
                    subscriber.recv_multipart()
            elif subscriber is None:
                time.sleep(POLL_SECONDS)
    finally:
        if subscriber is not None:
            subscriber.close(0)
        log.close()


def _subscribe(run_dir: Path | str) -> zmq.Socket | None:
    endpoints = read_endpoints(run_dir)
    if endpoints is None or endpoints.get("curve"):
        return None
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(endpoints["pub"])
    return subscriber
