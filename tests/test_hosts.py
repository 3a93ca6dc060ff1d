"""An engine and trainers on separate hosts (network namespaces, tests/netlab.py) that share nothing but the
engine's address and key, through latency, jitter, packet loss, a partition and a dropped link.

Each host has its own working directory and is told no path of the others: the trainers get the engine's
address, its public key and a secret key of their own, and the run's files come in its bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from netlab import Lab, unavailable
from support import ROOT, wait_for

from engine import events as ev
from engine.log import EventLog
from engine.runs import is_run

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no network lab here: {unavailable()}")

PORT = 5555  # each host is a namespace of this test's own: nothing else listens there
NB201 = """
[space]
kind = "nb201"
[search]
trials = {trials}
seed = 3
[evaluator]
delay = 0.3
[engine]
lease_timeout = 4.0
heartbeat = 0.5
"""
TABLE = """
[space]
kind = "tower"
blocks = ["dense_32", "dense_64"]
max_depth = 2
[space.hparams]
batch_size = [16]
optimizer = ["adam"]
[search]
trials = 3
[data]
dataset = "csv"
path = "rows.csv"
label = "label"
[training]
epochs = 1
patience = 0
threads = 1
[engine]
lease_timeout = 20.0
heartbeat = 1.0
"""


class Hosts:
    """The lab and what runs on it: an engine host and trainer hosts, each with a folder of its own."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        self.dirs = {name: root / name for name in lab.names}
        for folder in self.dirs.values():
            folder.mkdir()
        self.logs = {name: (root / f"{name}.log").open("a") for name in lab.names}
        self.endpoint = f"tcp://{lab.address['engine']}:{PORT}"
        keys = self.dirs["engine"] / "keys"
        _engine(["keys", "--dir", str(keys)], cwd=self.dirs["engine"])
        for name in lab.names[1:]:  # a trainer host holds its own copies of the two keys it needs
            shutil.copy(keys / "server.key", self.dirs[name])
            shutil.copy(keys / "trainer.key_secret", self.dirs[name])

    def env(self, name: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(self.dirs[name] / "xdg")}

    def engine(self, config: str) -> subprocess.Popen:
        folder = self.dirs["engine"]
        (folder / "search.toml").write_text(config)
        return self.lab.spawn("engine", [sys.executable, "-m", "engine", "serve", "--run", "run", "--config",
                                         "search.toml", "--bind", self.endpoint, "--pub", "tcp://127.0.0.1:0",
                                         "--keys", "keys"], cwd=folder, log=self.logs["engine"],
                              env=self.env("engine"))

    def trainer(self, name: str) -> subprocess.Popen:
        return self.lab.spawn(name, [sys.executable, "-m", "engine", "trainer", "--connect", self.endpoint,
                                     "--server-key", "server.key", "--key", "trainer.key_secret", "--once",
                                     "--idle-exit", "20", "--name", name, "--cache", "cache"], cwd=self.dirs[name],
                              log=self.logs[name], env=self.env(name))

    @property
    def run(self) -> Path:
        return self.dirs["engine"] / "run"

    def events(self) -> list[ev.Event]:
        if not is_run(self.run):
            return []
        with EventLog.open_reader(self.run) as log:
            return list(log.read())

    def completed(self) -> int:
        return sum(e.type == ev.TRIAL_COMPLETED for e in self.events())

    def wait_completed(self, count: int, timeout: float, *watched: subprocess.Popen) -> None:
        deadline = time.monotonic() + timeout
        while self.completed() < count:
            assert time.monotonic() < deadline, f"{count} trials not completed in {timeout:g}s:\n{self.tail()}"
            for process in watched:  # the count re-read: a process may have exited because it was reached
                assert process.poll() is None or self.completed() >= count, \
                    f"a process exited early ({process.args[4:8]}):\n{self.tail()}"
            time.sleep(0.2)

    def in_flight(self, trainer: str) -> int | None:
        """``trainer``'s latest lease while it is neither completed nor lost, else None."""
        events = self.events()
        leases = [e.seq for e in events if e.type == ev.TRIAL_ASSIGNED and e.payload["trainer"] == trainer]
        completed = {e.payload["lease"] for e in events if e.type in (ev.TRIAL_COMPLETED, ev.TRIAL_LOST)}
        return leases[-1] if leases and leases[-1] not in completed else None

    def refused(self, trainer: str) -> bool:
        """Whether the engine refused a result of ``trainer``'s for a lease no longer in flight (it came late)."""
        return "not recorded: lease is not in flight" in (self.root / f"{trainer}.log").read_text()

    def completed_lease(self, lease: int) -> bool:
        return any(e.type == ev.TRIAL_COMPLETED and e.payload["lease"] == lease for e in self.events())

    def cut_while_evaluating(self, trainer: str) -> None:
        """Cut ``trainer``'s host off while it holds a lease whose result has not reached the engine, so that
        the result can only come late. The engine logs a lease before it sends it: the cut waits for a packet
        from the trainer's host sent after that (its kernel's acknowledgement of the work message). A trial
        takes 0.3 s: a cut that comes after the result got through is undone and tried again."""
        for _ in range(20):
            lease = wait_for(lambda: self.in_flight(trainer), timeout=30)
            seen = time.monotonic()
            try:
                wait_for(lambda seen=seen: self.lab.last_sent.get(trainer, 0.0) > seen, timeout=2)
            except AssertionError:
                continue
            self.lab.impair(trainer, up=False)
            time.sleep(1.0)  # a result sent before the cut has been recorded by now
            if not self.completed_lease(lease):
                return
            self.lab.impair(trainer, up=True)
        raise AssertionError(f"no cut caught {trainer} evaluating in 20 tries")

    def tail(self) -> str:
        return "\n".join(f"--- {name}\n{(self.root / f'{name}.log').read_text()[-1500:]}" for name in self.lab.names)

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


def _engine(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
                          check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_search_across_three_hosts_survives_latency_loss_a_partition_and_a_dropped_link(tmp_path: Path) -> None:
    trials = 80
    with Lab(["engine", "t1", "t2"], seed=0) as lab:
        hosts = Hosts(lab, tmp_path)
        try:
            engine = hosts.engine(NB201.format(trials=trials))
            t1, t2 = hosts.trainer("t1"), hosts.trainer("t2")
            hosts.wait_completed(6, 90, engine, t1, t2)

            for name in ("t1", "t2"):  # 200 ms each way between engine and trainers, 50 ms of jitter
                lab.impair(name, delay=0.2, jitter=0.05)
            hosts.wait_completed(14, 90, engine, t1, t2)

            lab.heal()
            for name in ("engine", "t1", "t2"):  # about 20% of the packets between engine and trainer lost
                lab.impair(name, loss=0.1)
            hosts.wait_completed(20, 120, engine, t1, t2)
            lab.heal()

            hosts.cut_while_evaluating("t1")  # t1's host is cut off for 2.5 lease timeouts
            partition = time.monotonic() - 1.0
            hosts.wait_completed(hosts.completed() + 4, 60, engine, t2)
            time.sleep(max(0.0, 10.0 - (time.monotonic() - partition)))
            lab.impair("t1", up=True)
            # t1's result from the partition comes late and is refused, unless t2 alone finished the budget during
            # the partition (a trial takes 0.3 s): then the engine is gone and there is no more to see.
            wait_for(lambda: hosts.refused("t1") or hosts.completed() >= trials, timeout=60)
            finished_alone = not hosts.refused("t1")
            hosts.wait_completed(min(hosts.completed() + 4, trials), 60, engine, t1, t2)

            lab.link_down("engine")  # the engine host's interface goes away, then comes back
            time.sleep(4.0)
            lab.link_up("engine")

            assert engine.wait(timeout=180) == 0, hosts.tail()
            # Each leaves when told the run is done, or (cut off as the engine finished) once it has heard
            # nothing for --idle-exit seconds.
            assert t1.wait(timeout=90) == 0 and t2.wait(timeout=90) == 0, hosts.tail()
        finally:
            hosts.close()
        counts = dict(lab.counts)

    events = hosts.events()
    completed = Counter(e.payload["trial"] for e in events if e.type == ev.TRIAL_COMPLETED)
    proposed = {e.seq for e in events if e.type == ev.CANDIDATE_PROPOSED}
    assert len(completed) == trials and set(completed) == proposed, "every trial completed"
    assert max(completed.values()) == 1, "and none twice"
    assert events[-1].type == ev.SEARCH_FINISHED
    assert counts["lost"] > 0 and counts["cut"] > 0, counts

    assigned = {e.seq: e.payload for e in events if e.type == ev.TRIAL_ASSIGNED}
    lost = [e.payload for e in events if e.type == ev.TRIAL_LOST]
    partitioned = [p for p in lost if assigned[p["lease"]]["trainer"] == "t1"]
    assert partitioned, "the partition cost t1 its leases"
    for payload in partitioned:  # each went back to the queue and was completed on a later lease
        trial = assigned[payload["lease"]]["trial"]
        later = [lease for lease, a in assigned.items() if a["trial"] == trial and lease > payload["lease"]]
        assert later and completed[trial] == 1

    assert hosts.refused("t1") or finished_alone, "t1's result from the partition came late and was refused"
    verify = _engine(["replay", "--run", str(hosts.run), "--verify"], cwd=tmp_path)
    assert "reproduce exactly" in verify.stdout and "hash chain" in verify.stdout
    status = json.loads(_engine(["status", "--run", str(hosts.run), "--json"], cwd=tmp_path).stdout)
    assert status["completed"] == trials and status["failed"] == 0


def test_a_keras_search_whose_csv_only_the_engine_host_has(tmp_path: Path) -> None:
    with Lab(["engine", "t1"], seed=1) as lab:
        hosts = Hosts(lab, tmp_path)
        rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}" for i in range(120)]
        (hosts.dirs["engine"] / "rows.csv").write_text("\n".join(rows) + "\n")
        lab.impair("t1", delay=0.1, jitter=0.03, loss=0.05)
        try:
            engine = hosts.engine(TABLE)
            t1 = hosts.trainer("t1")
            assert engine.wait(timeout=300) == 0, hosts.tail()
            assert t1.wait(timeout=60) == 0, hosts.tail()
        finally:
            hosts.close()
    status = json.loads(_engine(["status", "--run", str(hosts.run), "--json"], cwd=tmp_path).stdout)
    assert status["completed"] == 3 and status["failed"] == 0, status
    copies = list(hosts.dirs["t1"].rglob("rows.csv"))
    assert copies and all(path.is_relative_to(hosts.dirs["t1"] / "cache" / "bundles") for path in copies), \
        "the data came in the run's bundle"
