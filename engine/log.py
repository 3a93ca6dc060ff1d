"""The event log: an LMDB file of msgpack records under big-endian uint64 keys.

One process writes (an exclusive ``flock`` on ``writer.lock`` guards it); any number of readers in
other processes read while it writes. Appends are atomic groups guarded by the head the writer
expects, and durable (``sync`` on) unless a test turns that off. Each appended event is linked to the
one before it by its hash (``engine/chain.py``).

Example::

    >>> log = EventLog.create("runs/nb")              # or EventLog.open_writer / open_reader
    >>> raw = TYPES.encode("SearchStarted", payload, at=time.time())
    >>> log.append([raw], expected_head=0)
    >>> [e.type for e in log.read()]
    ['SearchStarted']
"""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import lmdb

from engine.chain import GENESIS, digest, link
from engine.events import TYPES, Event, EventTypes, unpack_record

LOG_DIR = "events.lmdb"
LOCK_FILE = "writer.lock"
INITIAL_MAP_SIZE = 64 << 20


class LogError(RuntimeError):
    """The log cannot be opened or written as asked."""


def _reason(exc: lmdb.Error) -> str:
    """LMDB's message without the call it came from ("mdb_txn_commit: No space left on device")."""
    return str(exc).split(": ", 1)[-1]


class LogWriteError(LogError):
    """The disk refused a commit (full, or failing); nothing of that commit was written."""


class StaleHeadError(LogError):
    """An append expected a head that is no longer the log's head; nothing was written."""


def _key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


class _Environments:
    """LMDB allows one open environment per file per process: readers in the writer's process
    share the writer's environment, counted so the last one to close really closes it. A lock
    keeps two threads (the dashboard's requests) from both opening the same file."""

    def __init__(self) -> None:
        self._open: dict[str, list] = {}  # path -> [environment, users, writable]
        self._lock = threading.Lock()

    def acquire(self, path: Path, writable: bool, **options) -> lmdb.Environment:
        with self._lock:
            return self._acquire(path, writable, **options)

    def _acquire(self, path: Path, writable: bool, **options) -> lmdb.Environment:
        key = str(path.resolve())
        entry = self._open.get(key)
        if entry is None:
            if writable:
                environment = lmdb.open(key, subdir=True, max_dbs=0, readahead=False, **options)
            else:
                environment = lmdb.open(key, readonly=True, subdir=True, max_dbs=0, readahead=False)
            entry = self._open[key] = [environment, 0, writable]
        elif writable and not entry[2]:
            raise LogError(f"{path} is open read-only in this process; open the writer before any reader")
        entry[1] += 1
        return entry[0]

    def release(self, environment: lmdb.Environment) -> None:
        with self._lock:
            self._release(environment)

    def _release(self, environment: lmdb.Environment) -> None:
        for key, entry in list(self._open.items()):
            if entry[0] is environment:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._open[key]
                    environment.close()
                return


_ENVIRONMENTS = _Environments()


class EventLog:
    """An append-only log of events in ``<run>/events.lmdb``.

    Open it with :meth:`create` (a new run), :meth:`open_writer` (the engine) or :meth:`open_reader`
    (status, log, replay; never blocks the writer).
    """

    def __init__(
        self, run_dir: Path, *, writer: bool, sync: bool = True, map_size: int = INITIAL_MAP_SIZE,
        types: EventTypes = TYPES,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.types = types
        self.writer = writer
        self._lock_fd: int | None = None
        path = self.run_dir / LOG_DIR
        if writer:
            self._lock_fd = self._take_writer_lock()
            try:
                path.mkdir(exist_ok=True)
                self._env = _ENVIRONMENTS.acquire(path, True, map_size=map_size, sync=sync, metasync=sync)
            except (lmdb.Error, LogError) as exc:
                self._release_lock()
                raise LogError(f"cannot open {path}: {exc}") from None
        else:
            if not (path / "data.mdb").exists():
                raise LogError(f"{self.run_dir} has no event log ({path} not found)")
            self._env = _ENVIRONMENTS.acquire(path, False)
        self._head = self._read_head()

    @classmethod
    def create(cls, run_dir: Path | str, **kwargs) -> EventLog:
        """A new, empty log in a run directory that has none yet."""
        run_dir = Path(run_dir)
        if (run_dir / LOG_DIR).exists():
            raise LogError(f"{run_dir} already holds a run")
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir, writer=True, **kwargs)

    @classmethod
    def open_writer(cls, run_dir: Path | str, **kwargs) -> EventLog:
        run_dir = Path(run_dir)
        if not (run_dir / LOG_DIR / "data.mdb").exists():
            raise LogError(f"{run_dir} has no event log")
        return cls(run_dir, writer=True, **kwargs)

    @classmethod
    def open_reader(cls, run_dir: Path | str, **kwargs) -> EventLog:
        return cls(Path(run_dir), writer=False, **kwargs)

    # -- writer -------------------------------------------------------------------------------

    def _take_writer_lock(self) -> int:
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogError(
                f"{self.run_dir} is already being written by another engine process; "
                "one run has one writer (stop it, or fork the run)"
            ) from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def head(self) -> int:
        """The seq of the last committed event (0 for an empty log)."""
        return self._head

    def append(self, records: Sequence[bytes], expected_head: int) -> int:
        """Commit encoded events as ``expected_head + 1, + 2, ...`` in one durable transaction, each linked to
        the event before it (``engine/chain.py``).

        Returns the new head. Raises :class:`StaleHeadError`, writing nothing, when the log's head is
        not ``expected_head``. The memory map doubles by itself when it is full.
        """
        return self._put(records, expected_head, linked=True)

    def copy(self, records: Sequence[bytes], expected_head: int) -> int:
        """Commit another log's stored events as they are (a fork's prefix: its chain goes on from there)."""
        return self._put(records, expected_head, linked=False)

    def _put(self, records: Sequence[bytes], expected_head: int, linked: bool) -> int:
        if not self.writer:
            raise LogError("this log was opened read-only")
        if not records:
            return self._head
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    head = self._head_in(txn)
                    if head != expected_head:
                        raise StaleHeadError(
                            f"append expected head {expected_head} but the log is at {head}; nothing written"
                        )
                    before = digest(txn.get(_key(head))) if head else GENESIS
                    for offset, raw in enumerate(records, start=1):
                        if linked:
                            raw = link(raw, before)
                            before = digest(raw)
                        txn.put(_key(head + offset), raw, append=True)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.DiskError as exc:  # the transaction was aborted: the log ends where it did
                raise LogWriteError(
                    f"{self.run_dir}: the disk refused to write the event log ({_reason(exc)}); nothing of the "
                    f"last {len(records)} event(s) was written and the log ends intact at event {self._head}. "
                    f"Free space there, then resume the run (engine serve --run {self.run_dir})") from None
        self._head = expected_head + len(records)
        return self._head

    # -- readers ------------------------------------------------------------------------------

    def _read_head(self) -> int:
        with self._env.begin() as txn:
            return self._head_in(txn)

    @staticmethod
    def _head_in(txn: lmdb.Transaction) -> int:
        cursor = txn.cursor()
        return int.from_bytes(cursor.key(), "big") if cursor.last() else 0

    def _begin(self) -> lmdb.Transaction:
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            # The writer grew the map: adopt its size (LMDB's documented remedy) and retry.
            self._env.set_mapsize(0)
            return self._env.begin()

    def refresh(self) -> int:
        """Re-read the head (a reader's view of a log another process writes)."""
        with self._begin() as txn:
            self._head = self._head_in(txn)
        return self._head

    def read(self, start: int = 1, stop: int | None = None) -> Iterator[Event]:
        """Events with ``start <= seq <= stop`` (to the head when ``stop`` is None), upcast."""
        decode = self.types.decode
        for seq, raw in self.read_raw(start, stop):
            yield decode(seq, raw)

    def read_raw(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Stored bytes with their seq, as committed (never rewritten)."""
        for key, raw in self.records(start, stop):
            yield int.from_bytes(key, "big"), raw

    def records(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The stored key/value pairs of events ``start..stop``: LMDB's own cursor iterator, so replay,
        which reads every event of a run through here, pays nothing extra per record. The iterator
        holds a read transaction (a snapshot of the log) until it is dropped."""
        cursor = self._begin().cursor()
        if not cursor.set_range(_key(max(start, 1))):
            return iter(())
        if stop is None:
            return cursor.iternext()
        first = int.from_bytes(cursor.key(), "big")
        return itertools.islice(cursor.iternext(), max(stop - first + 1, 0))

    def close(self) -> None:
        if self._env is not None:
            _ENVIRONMENTS.release(self._env)
            self._env = None
        self._release_lock()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decoded(records: Iterable[tuple[bytes, bytes]], types: EventTypes = TYPES) -> Iterator[tuple[int, str, dict]]:
    """``(seq, type, payload)`` of stored records (as :meth:`EventLog.records` yields them), upcast.

    A record at its type's current version is only unpacked: building an Event per record is most of what
    replaying a long log would cost beyond decoding it. Older versions go through the upcasters, and a
    record that is not valid raises the EventError that names it.
    """
    current, seq_of = types.current_versions, int.from_bytes
    for key, raw in records:
        seq = seq_of(key, "big")
        try:
            record = unpack_record(raw)
            kind, payload = record["type"], record["payload"]
            fast = current.get(kind) == record["v"]
        except Exception:  # decode() below names what is wrong with the record
            fast = False
        if fast:
            yield seq, kind, payload
        else:
            event = types.decode(seq, raw)
            yield seq, event.type, event.payload

