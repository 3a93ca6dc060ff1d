"""Crashes: SIGKILL a trainer or the engine at a bad moment; nothing completed is lost.

Real processes: ``engine serve`` and ``engine trainer`` children on a loopback port.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from support import free_port, wait_for, write_toml

from engine import events as ev
from engine.log import EventLog
from engine.runs import read_endpoints

SLOW = """
[search]
trials = {trials}
[space]
kind = "nb201"
[evaluator]
delay = 0.4
[engine]
lease_timeout = 1.5
heartbeat = 0.3
"""


def events(run: Path) -> list[ev.Event]:
    with EventLog.open_reader(run) as log:
        return list(log.read())


def raw_events(run: Path) -> list[tuple[int, bytes]]:
    with EventLog.open_reader(run) as log:
        return list(log.read_raw())


def test_a_trainer_killed_mid_trial_has_its_candidate_rerun(tmp_path: Path, spawn, engine_here) -> None:
    config = write_toml(tmp_path / "slow.toml", SLOW.format(trials=10))
    run, endpoint = tmp_path / "run", f"tcp://127.0.0.1:{free_port()}"
    engine = spawn("serve", "--run", str(run), "--config", str(config), "--bind", endpoint, "--pub",
                   "tcp://127.0.0.1:0")
    wait_for(lambda: read_endpoints(run))
    victim = spawn("trainer", "--connect", endpoint, "--name", "victim", "--once")
    survivor = spawn("trainer", "--connect", endpoint, "--name", "survivor", "--once")

    def victim_busy() -> bool:
        log = events(run)
        mine = {e.seq for e in log if e.type == ev.TRIAL_ASSIGNED and e.payload["trainer"] == "victim"}
        finished = {e.payload["lease"] for e in log if e.type == ev.TRIAL_COMPLETED}
        return len(mine & finished) >= 1 and bool(mine - finished)

    wait_for(victim_busy)  # it has finished one trial and holds another (it always holds one)
    victim.send_signal(signal.SIGKILL)
    assert engine.wait(timeout=90) == 0
    assert survivor.wait(timeout=30) == 0

    log = events(run)
    victims = {e.seq: e.payload["trial"] for e in log
               if e.type == ev.TRIAL_ASSIGNED and e.payload["trainer"] == "victim"}
    completed = {e.payload["lease"]: e for e in log if e.type == ev.TRIAL_COMPLETED}
    cut_short = {lease: trial for lease, trial in victims.items() if lease not in completed}
    assert cut_short, "the victim was killed holding a lease"
    for lease, trial in cut_short.items():
        [lost] = [e for e in log if e.type == ev.TRIAL_LOST and e.payload["lease"] == lease]
        assert lost.payload["trial"] == trial and "no heartbeat" in lost.payload["reason"]
        [rerun] = [e for e in completed.values() if e.payload["trial"] == trial]
        assert rerun.seq > lost.seq
    proposed = {e.seq for e in log if e.type == ev.CANDIDATE_PROPOSED}
    assert proposed == {e.payload["trial"] for e in completed.values()} and len(proposed) == 10, \
        "nothing lost, nothing failed"
    assert "reproduce exactly" in engine_here("replay", "--run", str(run), "--verify").stdout


def test_an_engine_killed_mid_run_resumes_and_loses_no_result(tmp_path: Path, spawn, engine_here) -> None:
    config = write_toml(tmp_path / "slow.toml", SLOW.format(trials=16))
    run, endpoint = tmp_path / "run", f"tcp://127.0.0.1:{free_port()}"
    serve = ["serve", "--run", str(run), "--bind", endpoint, "--pub", "tcp://127.0.0.1:0"]
    first = spawn(*serve, "--config", str(config))
    wait_for(lambda: read_endpoints(run))
    trainers = [spawn("trainer", "--connect", endpoint, "--name", f"t{i}", "--once") for i in range(2)]
    wait_for(lambda: sum(e.type == ev.TRIAL_COMPLETED for e in events(run)) >= 4, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    before = raw_events(run)
    results_before = {(e.payload["trial"], tuple(sorted(e.payload["metrics"].items())))
                      for e in events(run) if e.type == ev.TRIAL_COMPLETED}

    second = spawn(*serve)
    assert second.wait(timeout=20) == 0, second.log_path.read_text()
    for trainer in trainers:
        assert trainer.wait(timeout=30) == 0

    after = raw_events(run)
    assert after[: len(before)] == before, "the log before the crash is untouched"
    log = events(run)
    results_after = {(e.payload["trial"], tuple(sorted(e.payload["metrics"].items())))
                     for e in log if e.type == ev.TRIAL_COMPLETED}
    assert results_before <= results_after
    assert [e.type for e in log].count(ev.SEARCH_RESUMED) == 1
    assert log[-1].type == ev.SEARCH_FINISHED
    proposed = {e.seq for e in log if e.type == ev.CANDIDATE_PROPOSED}
    assert proposed == {trial for trial, _ in results_after} and len(proposed) == 16
    # The restarted engine's own final state (printed as it exits) is the state a replay rebuilds.
    replayed = engine_here("status", "--run", str(run)).stdout
    assert second.out_path.read_text() == replayed
    assert "reproduce exactly" in engine_here("replay", "--run", str(run), "--verify").stdout


def test_killing_the_engine_run_command_stops_its_trainers_and_run_again_requeues_their_leases_at_once(
        tmp_path: Path, spawn, engine_cli) -> None:
    # A lease timeout no test waits out: the leases of the killed run's trainers must go back to the queue at once.
    config = write_toml(tmp_path / "slow.toml", SLOW.format(trials=12).replace("lease_timeout = 1.5",
                                                                                "lease_timeout = 600"))
    run = tmp_path / "run"
    parent = spawn("run", "--run", str(run), "--config", str(config), "--trainers", "2", "--quiet")
    endpoints = wait_for(lambda: read_endpoints(run))
    wait_for(lambda: sum(e.type == ev.TRIAL_ASSIGNED for e in events(run)) >= 2)
    children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2 and endpoints["pid"] == parent.pid
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)

    def gone(pid: str) -> bool:
        return subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0 or _zombie(pid)

    wait_for(lambda: all(gone(pid) for pid in children), timeout=30)

    in_flight = {e.seq for e in events(run) if e.type == ev.TRIAL_ASSIGNED} - {
        e.payload["lease"] for e in events(run) if e.type in (ev.TRIAL_COMPLETED, ev.TRIAL_LOST)}
    assert in_flight, "the killed run's trainers held leases"
    engine_cli("run", "--run", str(run), "--trainers", "1", "--quiet", timeout=120)
    log = events(run)
    lost = {e.payload["lease"]: e.payload["reason"] for e in log if e.type == ev.TRIAL_LOST}
    assert set(lost) == in_flight and all("earlier engine" in reason for reason in lost.values())
    assert sum(e.type == ev.TRIAL_COMPLETED for e in log) == 12 and log[-1].type == ev.SEARCH_FINISHED


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
