"""Separate hosts on one machine: network namespaces joined by a router that delays, jitters, drops and cuts.

Each host is a network namespace of its own with one TUN device (``10.77.0.N/24``); the other end of every
device is a file descriptor held by :class:`Lab`'s router thread, which reads each IP packet a host sends and
writes it to the host it is addressed to, after the delay, jitter and loss of both hosts' links
(:class:`Link`). A host whose link is cut (``up=False``) is partitioned: its packets vanish silently, as on a
real network, while ``ip link set down`` (:meth:`Lab.link_down`) takes its interface away, so its sockets see
the network go. This kernel has no ``netem`` queueing discipline and no ``tc`` actions (``tc qdisc add ...
netem`` says "Specified qdisc kind is unknown"), so the router does in user space what netem would do.

Needs root, ``ip`` (iproute2) and ``/dev/net/tun``; :func:`unavailable` says why a lab cannot be built here.
Every namespace, device and process is removed on exit. Example::

    >>> with Lab(["engine", "trainer"], seed=0) as lab:
    ...     lab.impair("trainer", delay=0.2, jitter=0.05)
    ...     server = lab.spawn("engine", ["python", "-m", "engine", "serve", ...], cwd=engine_dir)
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import os
import random
import selectors
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
SUBNET = "10.77.0"


@dataclass(frozen=True)
class Link:
    """One host's link to the router: seconds of delay each way, jitter (uniform, plus or minus; packets may
    be reordered, as with netem), the share of packets lost, and whether it carries anything at all."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    up: bool = True


def unavailable() -> str | None:
    """Why a lab cannot be built on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Lab:
    """Hosts named ``names``, each in a namespace of its own, addressed ``10.77.0.1`` onwards."""

    def __init__(self, names: list[str], seed: int = 0) -> None:
        self.names = list(names)
        self.number = next(_labs)
        self.prefix = f"lineage-{os.getpid()}-{self.number}"
        self.address = {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(self.names)}
        self.links = {name: Link() for name in self.names}
        self.counts: Counter[str] = Counter()  # forwarded, lost, cut
        self.last_sent: dict[str, float] = {}  # host -> when the router last passed on a packet it sent
        self._rng = random.Random(seed)
        self._fds: dict[str, int] = {}
        self._host_of_ip = {bytes(int(part) for part in ip.split(".")): name for name, ip in self.address.items()}
        self._processes: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._router: threading.Thread | None = None

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{self.names.index(name)}"

    def device(self, name: str) -> str:
        return f"lt{os.getpid() % 10000}n{self.number % 1000}x{self.names.index(name)}"  # 15 characters at most

    def __enter__(self) -> Lab:
        try:
            for name in self.names:
                namespace, device = self.namespace(name), self.device(name)
                _ip("netns", "add", namespace)
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
                self._fds[name] = fd
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", device.encode(), IFF_TUN | IFF_NO_PI))
                _ip("link", "set", device, "netns", namespace)  # the descriptor stays ours
                _ip("-n", namespace, "addr", "add", f"{self.address[name]}/24", "dev", device)
                _ip("-n", namespace, "link", "set", device, "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._router = threading.Thread(target=self._route, name="netlab-router", daemon=True)
        self._router.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self._stop.set()
        if self._router is not None:
            self._router.join(timeout=5)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for name in self.names:
            subprocess.run(["ip", "netns", "del", self.namespace(name)], capture_output=True)

    def impair(self, name: str, **link: float | bool) -> None:
        """Change host ``name``'s link (the fields of :class:`Link`); the packets already queued keep theirs."""
        self.links[name] = replace(self.links[name], **link)

    def heal(self) -> None:
        """Every link back to no delay, no loss, up."""
        self.links = {name: Link() for name in self.names}

    def link_down(self, name: str) -> None:
        """``ip link set down`` on the host's interface: its routes go, and its sockets see the network gone."""
        _ip("-n", self.namespace(name), "link", "set", self.device(name), "down")

    def link_up(self, name: str) -> None:
        _ip("-n", self.namespace(name), "link", "set", self.device(name), "up")

    def spawn(self, name: str, argv: list[str], *, cwd: Path, log: IO, env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        """Start ``argv`` inside host ``name``'s namespace (``ip netns exec`` becomes the process: its pid is
        the command's). The lab kills it on exit if it is still running."""
        process = subprocess.Popen(["ip", "netns", "exec", self.namespace(name), *argv], cwd=cwd, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        self._processes.append(process)
        return process

    def _route(self) -> None:
        selector = selectors.DefaultSelector()
        for name, fd in self._fds.items():
            selector.register(fd, selectors.EVENT_READ, name)
        queue: list[tuple[float, int, int, bytes]] = []  # (due, order, destination fd, packet)
        order = itertools.count()
        while not self._stop.is_set():
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, fd, packet = heapq.heappop(queue)
                try:
                    os.write(fd, packet)
                except OSError:  # the destination's interface is down: the packet is lost
                    self.counts["cut"] += 1
            wait = min(0.05, queue[0][0] - now) if queue else 0.05
            for key, _ in selector.select(timeout=max(0.0, wait)):
                source = key.data
                while True:
                    try:
                        packet = os.read(key.fd, 65535)
                    except BlockingIOError:
                        break
                    self._forward(source, packet, queue, order)
        selector.close()

    def _forward(self, source: str, packet: bytes, queue: list, order: itertools.count) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return  # not IPv4 (router solicitations and the like)
        target = self._host_of_ip.get(packet[16:20])
        if target is None:
            return
        links = (self.links[source], self.links[target])
        if not all(link.up for link in links):
            self.counts["cut"] += 1
            return
        if any(self._rng.random() < link.loss for link in links):
            self.counts["lost"] += 1
            return
        delay = sum(max(0.0, link.delay + self._rng.uniform(-link.jitter, link.jitter)) for link in links)
        self.counts["forwarded"] += 1
        self.last_sent[source] = time.monotonic()
        heapq.heappush(queue, (time.monotonic() + delay, next(order), self._fds[target], packet))


_labs = itertools.count()
