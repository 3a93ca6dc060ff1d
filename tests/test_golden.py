"""Golden logs: searches recorded by an earlier Lineage (``tests/golden/record.py``) still replay to the same
state and verify exactly; and a log tampered with fails verification at the event that was changed."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from engine import events as ev
from engine.log import EventLog
from engine.runs import state_at
from replay import verify
from replay.report import state_dict, strict_json

GOLDEN = Path(__file__).parent / "golden"
NAMES = sorted(path.stem for path in GOLDEN.glob("*.msgpack"))


def golden(name: str) -> list[bytes]:
    return msgpack.unpackb((GOLDEN / f"{name}.msgpack").read_bytes())


def rebuild(raws: list[bytes], run: Path) -> Path:
    """A run whose log holds ``raws`` as they are (the golden logs were written before events were linked)."""
    with EventLog.create(run, sync=False) as log:
        log.copy(raws, expected_head=0)
    return run


def linked(raws: list[bytes], run: Path) -> list[bytes]:
    """The stored bytes of ``raws`` appended to a new log today: each linked to the one before it."""
    with EventLog.create(run, sync=False) as log:
        log.append(raws, expected_head=0)
        return [raw for _, raw in log.read_raw()]


def test_there_are_golden_logs_of_each_kind() -> None:
    assert {"nb201_beam", "nb201_fork_evolution", "mnist1d_knowledge"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_golden_log_replays_to_its_recorded_state_and_verifies(name: str, tmp_path: Path) -> None:
    raws = golden(name)
    run = rebuild(raws, tmp_path / name)
    with EventLog.open_reader(run) as log:
        assert [raw for _, raw in log.read_raw()] == raws, "stored bytes are never rewritten"
    assert strict_json(state_dict(state_at(run))) == (GOLDEN / f"{name}.json").read_text().strip()
    proposals = sum(ev.TYPES.decode(seq, raw).type == ev.CANDIDATE_PROPOSED for seq, raw in enumerate(raws, 1))
    assert verify(run).proposals == proposals


def _tampered(raws: list[bytes], how: str) -> tuple[list[bytes], int]:
    """A copy of a log changed one way, and the seq of the first event that is no longer what was recorded."""
    records = [msgpack.unpackb(raw) for raw in raws]
    proposals = [seq for seq, record in enumerate(records, 1) if record["type"] == ev.CANDIDATE_PROPOSED]
    changed = list(raws)
    if how == "changed proposal":
        seq = proposals[len(proposals) // 2]
        record = records[seq - 1]
        record["payload"]["seed"] += 1
        changed[seq - 1] = msgpack.packb(record)
        return changed, seq
    if how == "dropped event":
        seq = proposals[len(proposals) // 2] + 1  # the assignment after a proposal
        return changed[: seq - 1] + changed[seq:], seq
    seq = proposals[len(proposals) // 2]  # a proposal and the event after it, swapped
    changed[seq - 1], changed[seq] = changed[seq], changed[seq - 1]
    return changed, seq


@pytest.mark.parametrize("chained", [False, True], ids=["as recorded", "linked"])
@pytest.mark.parametrize("how", ["changed proposal", "dropped event", "reordered pair"])
def test_a_tampered_log_fails_verification_at_the_event_changed(how: str, chained: bool, tmp_path: Path,
                                                                  engine_cli) -> None:
    raws = linked(golden("nb201_beam"), tmp_path / "linked") if chained else golden("nb201_beam")
    raws, seq = _tampered(raws, how)
    run = rebuild(raws, tmp_path / "run")
    result = engine_cli("replay", "--run", str(run), "--verify", check=False)
    assert result.returncode != 0, result.stdout
    named = [int(number) for number in re.findall(r"event (\d+)", result.stderr)]
    assert named and seq <= named[0] <= seq + 2, result.stderr
    # Without links, the searcher finds the change; with them, the chain does, before any proposal is re-derived.
    assert ("hash chain" in result.stderr) == chained, result.stderr
