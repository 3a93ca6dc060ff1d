"""The event log: real LMDB files, one writer, readers in other processes, a map that grows."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import lmdb
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import events as ev
from engine.log import LOG_DIR, EventLog, LogError, StaleHeadError


def record(i: int, size: int = 10) -> bytes:
    return ev.TYPES.encode(ev.SEARCH_FINISHED, {"reason": f"event {i} " + "x" * size}, at=1000.0 + i)


def test_append_read_and_big_endian_keys(tmp_path: Path) -> None:
    with EventLog.create(tmp_path) as log:
        assert log.head == 0
        assert log.append([record(1), record(2)], expected_head=0) == 2
        assert log.append([record(3)], expected_head=2) == 3
        assert [e.seq for e in log.read()] == [1, 2, 3]
        assert [e.payload["reason"] for e in log.read(2, 2)] == ["event 2 xxxxxxxxxx"]
    env = lmdb.open(str(tmp_path / LOG_DIR), readonly=True)
    with env.begin() as txn:
        keys = [key for key, _ in txn.cursor()]
        stored = msgpack.unpackb(txn.get((2).to_bytes(8, "big")))
    env.close()
    assert keys == [(n).to_bytes(8, "big") for n in (1, 2, 3)]
    assert set(stored) == {"type", "v", "at", "payload", "prev"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(1, 5), min_size=1, max_size=6), wrong=st.integers(-3, 3).filter(bool))
def test_append_with_a_stale_expected_head_is_refused(tmp_path_factory, batches: list[int], wrong: int) -> None:
    run = tmp_path_factory.mktemp("log")
    with EventLog.create(run, sync=False) as log:
        n = 0
        for size in batches:
            log.append([record(n + i) for i in range(size)], expected_head=n)
            n += size
        before = list(log.read_raw())
        with pytest.raises(StaleHeadError):
            log.append([record(99)], expected_head=n + wrong)
        assert list(log.read_raw()) == before
        assert log.head == n


def test_the_map_grows_by_itself_when_full(tmp_path: Path) -> None:
    with EventLog.create(tmp_path, map_size=64 << 10, sync=False) as log:
        for i in range(200):
            log.append([record(i, size=2000)], expected_head=i)
        assert log.head == 200
        assert log._env.info()["map_size"] > 64 << 10
        assert sum(1 for _ in log.read()) == 200


def test_writes_are_durable_by_default(tmp_path: Path) -> None:
    with EventLog.create(tmp_path) as log:
        flags = log._env.flags()
        assert flags["sync"] and flags["metasync"]


def test_one_writer_per_run(tmp_path: Path) -> None:
    with EventLog.create(tmp_path):
        with pytest.raises(LogError, match="already being written"):
            EventLog.open_writer(tmp_path)
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from engine.log import EventLog; EventLog.open_writer(sys.argv[1])",
             str(tmp_path)], capture_output=True, text=True)
        assert other.returncode != 0 and "already being written" in other.stderr
    EventLog.open_writer(tmp_path).close()  # free again once the writer closed


READER = """
import sys, time
from engine.log import EventLog
log = EventLog.open_reader(sys.argv[1])
seen, last = 0, 0
deadline = time.time() + 60
while seen < int(sys.argv[2]) and time.time() < deadline:
    events = list(log.read(seen + 1))
    assert [e.seq for e in events] == list(range(seen + 1, seen + 1 + len(events))), "gap or reorder"
    seen += len(events)
print(seen)
"""


def test_a_reader_in_another_process_follows_the_writer_as_the_map_grows(tmp_path: Path) -> None:
    total = 400
    with EventLog.create(tmp_path, map_size=64 << 10, sync=False) as log:
        log.append([record(0)], expected_head=0)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path), str(total)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # 30 kB events: past a reader's default 10 MiB map, so it must adopt the grown map.
            for i in range(1, total):
                log.append([record(i, size=30_000)], expected_head=i)
                if i % 50 == 0:
                    time.sleep(0.01)
            out, err = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
        assert reader.returncode == 0, err
        assert int(out) == total


def test_reading_a_directory_without_a_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="has no event log"):
        EventLog.open_reader(tmp_path)


def test_threads_opening_and_closing_readers_of_one_run_share_its_environment(tmp_path: Path) -> None:
    # The dashboard answers requests on threads; each opens a reader while others close theirs.
    with EventLog.create(tmp_path) as log:
        log.append([record(1)], expected_head=0)
    errors: list[Exception] = []

    def read_many() -> None:
        try:
            for _ in range(300):
                with EventLog.open_reader(tmp_path) as reader:
                    assert reader.head == 1
        except Exception as exc:  # noqa: BLE001 - any failure on a thread is what this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=read_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
