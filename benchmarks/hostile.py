"""Hostile peers against a real ``engine serve``, with an honest ``engine trainer`` searching beside them.

Each attack of issue 11 is made with raw ZeroMQ DEALER sockets on loopback, as an attacker would: deeply
nested frames, replies that amplify, a hello under the honest trainer's name with forged results for
its leases, metrics that are NaN, out of range or unknown, bad blob uploads, a 64 MiB multi-part
message, a hello storm, and a peer that asks for blob chunks without reading them. For each it records
whether the engine still serves, how its memory moved (VmRSS, and VmHWM for the peak), the largest
reply an attacker got, and what the engine counted; at the end, whether the honest trainer's search
finished, how fast it went before and during the attacks, that no forged result became an event, and
that ``engine replay --verify`` reproduces every proposal.

Usage::

    python benchmarks/hostile.py            # about two minutes; writes benchmarks/results/hostile.{json,txt}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import events as ev  # noqa: E402
from engine import protocol  # noqa: E402
from engine.artifacts import ArtifactStore  # noqa: E402
from engine.log import EventLog  # noqa: E402
from engine.runs import read_endpoints  # noqa: E402

MIB = 1 << 20
CONFIG = """
[space]
kind = "nb201"
[search]
algorithm = "random"
trials = {trials}
[evaluator]
delay = 0.05
[engine]
lease_timeout = 3.0
heartbeat = 0.5
"""


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) // 1024 for name in ("VmRSS", "VmHWM")}


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def frame_of(fields: dict[str, bytes]) -> bytes:
    """A msgpack map of values given already encoded (msgpack's packer refuses deep nesting)."""
    return bytes([0x80 | len(fields)]) + b"".join(msgpack.packb(key) + value for key, value in fields.items())


def hello(name: str, secret: str, leases: list[int] | None = None) -> bytes:
    return protocol.encode("hello", name=name, host="attacker", pid=os.getpid(), leases=leases or [], secret=secret)


class Attacker:
    """A raw DEALER socket; ``reading=False`` makes one that never reads (and takes one message at most)."""

    def __init__(self, endpoint: str, reading: bool = True) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        if not reading:
            self.socket.rcvhwm = 1
            self.socket.setsockopt(zmq.RCVBUF, 4096)
        self.socket.connect(endpoint)
        self.largest = 0

    def replies(self, wait: float = 1.0) -> list[tuple[str, dict]]:
        """Everything that arrives until ``wait`` seconds pass without a message."""
        got = []
        while self.socket.poll(wait * 1000):
            frame = self.socket.recv()
            self.largest = max(self.largest, len(frame))
            got.append(protocol.decode(frame, protocol.ENGINE_MESSAGES))
        return got

    def close(self) -> None:
        self.socket.close(0)


def run(trials: int, workdir: Path) -> dict:
    run_dir = workdir / "run"
    config = workdir / "nb.toml"
    config.write_text(CONFIG.format(trials=trials))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(workdir / "cache")}
    engine_log = (workdir / "engine.log").open("w")
    engine = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--run", str(run_dir), "--config", str(config),
                               "--bind", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0", "--grace", "1"],
                              env=env, stderr=engine_log, stdout=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 60
    while (endpoints := read_endpoints(run_dir)) is None:
        assert time.monotonic() < deadline and engine.poll() is None, "the engine did not start"
        time.sleep(0.1)
    endpoint = endpoints["router"]
    trainer = subprocess.Popen([sys.executable, "-m", "engine", "trainer", "--connect", endpoint, "--once",
                                "--name", "honest", "--prefetch", "4", "--quiet"],
                               env=env, stderr=(workdir / "trainer.log").open("w"), cwd=workdir)
    blob = ArtifactStore(run_dir / "artifacts").put(os.urandom(2 * MIB))

    def completed() -> list[ev.Event]:
        with EventLog.open_reader(run_dir) as log:
            return [e for e in log.read() if e.type == ev.TRIAL_COMPLETED]

    def counts() -> dict[str, int]:
        return (read_endpoints(run_dir) or {}).get("refused", {})

    time.sleep(4)
    before_attacks = completed()
    rate_before = len(before_attacks) / max(before_attacks[-1].at - before_attacks[0].at, 1e-9) \
        if len(before_attacks) > 1 else 0.0
    results = []

    def attack(name: str, body) -> None:
        started_mem, started = memory(engine.pid), time.monotonic()
        detail = body() or {}
        time.sleep(1.5)  # let the engine drain and housekeep
        ended_mem = memory(engine.pid)
        results.append({"attack": name, "engine_serving": engine.poll() is None, "seconds": time.monotonic() - started,
                        "rss_mib_before": started_mem["VmRSS"], "rss_mib_after": ended_mem["VmRSS"],
                        "peak_rss_growth_mib": ended_mem["VmHWM"] - started_mem["VmHWM"], **detail,
                        "engine_counts": counts()})
        print(f"{name:<44} serving={engine.poll() is None} rss {started_mem['VmRSS']}->{ended_mem['VmRSS']} MiB "
              f"{detail}", flush=True)

    def deep() -> dict:
        peer = Attacker(endpoint)
        for depth in (1010, 1500, 3000):
            for field in ("pid", "name", "t", "p", "leases"):
                fields = {"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb("hello"),
                          "name": msgpack.packb("x"), "host": msgpack.packb("h"), "pid": msgpack.packb(1),
                          "leases": msgpack.packb([]), "secret": msgpack.packb("0" * 32)}
                fields[field] = nested(depth)
                peer.socket.send(frame_of(fields))
        answered = len(peer.replies())
        peer.close()
        return {"frames": 15, "answered": answered, "largest_reply_bytes": peer.largest}

    def amplify() -> dict:
        mute, loud = Attacker(endpoint, reading=False), Attacker(endpoint)
        for _ in range(60):
            mute.socket.send(b"\x00" * MIB)
        for _ in range(20):
            loud.socket.send(frame_of({"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb("\x00" * MIB)}))
        answered = len(loud.replies())
        mute.close()
        loud.close()
        return {"frames_mib": 80, "answered": answered, "largest_reply_bytes": loud.largest}

    def impersonate() -> dict:
        with EventLog.open_reader(run_dir) as log:
            ended = (ev.TRIAL_COMPLETED, ev.TRIAL_FAILED, ev.TRIAL_LOST)
            leases = {e.seq for e in log.read() if e.type == ev.TRIAL_ASSIGNED} - {
                e.payload["lease"] for e in log.read() if e.type in ended}
        peer = Attacker(endpoint)
        peer.socket.send(hello("honest", "7" * 32, sorted(leases)[:64]))
        for lease in leases:
            peer.socket.send(protocol.encode("result", lease=lease, metrics={"val_acc": 99.9}, artifacts={},
                                             inherited=[], slots=0))
        replies = peer.replies()
        peer.close()
        welcome = [fields for kind, fields in replies if kind == "welcome"]
        accepted = sum(fields["accepted"] for kind, fields in replies if kind == "ack")
        return {"leases_targeted": len(leases), "given_name": welcome[0]["name"] if welcome else None,
                "forged_results_accepted": accepted}

    def metrics() -> dict:
        peer = Attacker(endpoint)
        peer.socket.send(hello("metrics", "8" * 32))
        peer.socket.send(protocol.encode("ready", slots=3))
        items = [item for kind, fields in peer.replies() if kind == "work" for item in fields["items"]]
        for item, values in zip(items, ({"val_acc": float("nan")}, {"val_acc": 7777.1},
                                        {"val_acc": 50.0, "hostile_marker": 1.0}), strict=False):
            peer.socket.send(protocol.encode("result", lease=item.lease, metrics=values, artifacts={}, inherited=[],
                                             slots=0))
        peer.replies()
        peer.close()
        return {"own_leases_reported": len(items)}

    def blobs() -> dict:
        peer = Attacker(endpoint)
        peer.socket.send(hello("blobs", "9" * 32))
        bad = {"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb("blob_put"),
               "digest": msgpack.packb("ab" * 32 + "\n"), "offset": msgpack.packb(0), "total": msgpack.packb(3),
               "data": msgpack.packb(b"abc")}
        peer.socket.send(frame_of(bad))
        peer.socket.send(protocol.encode("blob_put", digest="cd" * 32, offset=0, total=1000, data=b"x" * 10))
        peer.socket.send(protocol.encode("blob_put", digest="cd" * 32, offset=10, total=12, data=b"yy"))
        for number in range(100):
            digest = f"{number:064x}"
            peer.socket.send(protocol.encode("blob_put", digest=digest, offset=0, total=protocol.MAX_BLOB, data=b"z"))
        replies = peer.replies()
        peer.close()
        partial = run_dir / "artifacts" / ".partial"
        return {"uploads_refused": sum(kind == "error" for kind, _ in replies),
                "partial_files": len(list(partial.iterdir())) if partial.exists() else 0,
                "newline_digest_file": any("\n" in p.name for p in partial.iterdir()) if partial.exists() else False}

    def multipart() -> dict:
        peer = Attacker(endpoint)
        peer.socket.send_multipart([b"\x00" * MIB] * 64)
        answered = len(peer.replies())
        peer.close()
        return {"parts": 64, "answered": answered}

    def storm() -> dict:
        peers = [Attacker(endpoint) for _ in range(200)]
        for number, peer in enumerate(peers):
            peer.socket.send(hello(f"storm-{number}", f"{number:032x}"))
        for peer in peers:
            peer.replies(wait=0.2)
            peer.close()
        time.sleep(4.5)  # past the lease timeout, and a housekeeping turn
        return {"hellos": 200}

    def greedy() -> dict:
        peer = Attacker(endpoint, reading=False)
        peer.socket.send(hello("greedy", "a" * 32))
        time.sleep(0.3)
        for _ in range(300):
            peer.socket.send(protocol.encode("blob_get", digest=blob, offset=0))
        time.sleep(2)
        peer.close()
        return {"chunks_asked_mib": 300}

    attacks_started = time.time()
    for name, body in (("1. nested 1010-3000 deep", deep), ("2. 80 MiB of frames that amplified", amplify),
                       ("3. hello under the trainer's name, forged results", impersonate),
                       ("4. NaN, out-of-range and unknown metrics", metrics), ("6. bad blob uploads", blobs),
                       ("6. one 64 x 1 MiB multi-part message", multipart), ("6. hello storm of 200", storm),
                       ("2. 300 blob chunks asked, none read", greedy)):
        attack(name, body)
    attacks_ended = time.time()
    during = [e for e in completed() if attacks_started <= e.at <= attacks_ended]
    rate_during = len(during) / (attacks_ended - attacks_started)
    trainer.wait(timeout=600)
    engine.wait(timeout=60)
    with EventLog.open_reader(run_dir) as log:
        events = list(log.read())
    holders = {e.seq: e.payload["holder"] for e in events if e.type == ev.TRIAL_ASSIGNED}
    honest = {e.payload["holder"] for e in events if e.type == ev.TRIAL_ASSIGNED and e.payload["trainer"] == "honest"}
    finished = any(e.type == ev.SEARCH_FINISHED for e in events)
    verify = subprocess.run([sys.executable, "-m", "engine", "replay", "--run", str(run_dir), "--verify"],
                            capture_output=True, text=True, env=env, cwd=workdir)
    completed_events = [e for e in events if e.type == ev.TRIAL_COMPLETED]
    return {
        "trials": trials, "attacks": results, "search_finished": finished,
        "honest_trials_per_second_before": rate_before, "honest_trials_per_second_during_attacks": rate_during,
        "completed": len(completed_events),
        "completed_from_another_holder": sum(holders[e.payload["lease"]] not in honest for e in completed_events),
        "completed_with_hostile_metrics": sum(
            "hostile_marker" in e.payload["metrics"] or not 0 <= e.payload["metrics"]["val_acc"] <= 100
            for e in completed_events),
        "failed": [e.payload["reason"] for e in events if e.type == ev.TRIAL_FAILED],
        "verify": verify.stdout.strip() or verify.stderr.strip(),
        "trainer_exit": trainer.returncode, "engine_exit": engine.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000, help="the honest search's budget (default 2000)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hostile.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lineage-hostile-"))
    try:
        result = run(args.trials, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"{'attack':<50} {'serving':<8} {'RSS MiB':<12} {'peak +MiB':<10} details"]
    for row in result["attacks"]:
        details = {k: v for k, v in row.items() if k not in (
            "attack", "engine_serving", "rss_mib_before", "rss_mib_after", "peak_rss_growth_mib", "seconds")}
        lines.append(f"{row['attack']:<50} {str(row['engine_serving']):<8} "
                     f"{row['rss_mib_before']}->{row['rss_mib_after']:<8} {row['peak_rss_growth_mib']:<10} {details}")
    lines += [
        f"search finished: {result['search_finished']}; {result['completed']} completed, none from another holder: "
        f"{result['completed_from_another_holder'] == 0}, none with hostile metrics: "
        f"{result['completed_with_hostile_metrics'] == 0}",
        f"honest trials/s before the attacks {result['honest_trials_per_second_before']:.1f}, during them "
        f"{result['honest_trials_per_second_during_attacks']:.1f}",
        f"failed: {result['failed']}", f"replay --verify: {result['verify']}",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".txt").write_text(text + "\n")
    return 0 if result["search_finished"] and all(r["engine_serving"] for r in result["attacks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
