"""Run bundles: the files a run's trainers need, its data and its block modules, packed once when the run starts.

A bundle is a tar archive made the same way every time from the same files (names sorted; no times, owners or
modes of the machine that made it). It lives in the run's artifact store under its sha256 like any blob, and
``SearchStarted`` records that digest, so a trainer anywhere downloads it once (in chunks, checked against the
digest, cached by it), unpacks it and trains on exactly the files the run started with, whatever becomes of them on
the engine's disk later; replay and forks know which data every trial saw.

Inside: ``data/<name>``, the file or folder ``data.path`` names, and ``blocks/<i>/``, the Python modules of the
i-th folder of ``space.block_paths``. :func:`localise` points a config's paths at an unpacked bundle.

Example::

    >>> payload = pack(config)                       # None when the run names no files
    >>> root = unpack(payload, cache / "bundles" / digest_of(payload))
    >>> make_evaluator(localise(config, root))
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

from engine.config import Config
from engine.options import ConfigError
from engine.space_options import TowerOptions

MAX_BUNDLE = 1 << 30  # what one run may ship to its trainers; more is better read from a disk they share
DATA, BLOCKS = "data", "blocks"
SKIPPED = {"__pycache__", ".git", ".ipynb_checkpoints"}


class BundleError(ConfigError):
    """The run's files cannot be bundled (missing, unreadable, too large); the message names the path."""


def _files(root: Path, suffix: str = "") -> Iterator[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted, following links, without caches."""
    if root.is_file():
        yield root
        return
    for folder, folders, names in os.walk(root, followlinks=True):
        folders[:] = sorted(name for name in folders if name not in SKIPPED)
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and path.name.endswith(suffix):
                yield path


def block_paths(config: Config) -> tuple[str, ...]:
    """The folders of user block modules a run imports (only towers have user blocks)."""
    return config.space.block_paths if isinstance(config.space, TowerOptions) else ()


def members(config: Config) -> list[tuple[str, Path]]:
    """(name in the bundle, file on this machine) for every file the run's trainers read, in bundle order."""
    chosen: list[tuple[str, Path]] = []
    if config.data.path:
        source = Path(config.data.path)
        if not source.exists():
            raise BundleError(f"data.path: {source} does not exist")
        base = source.parent
        chosen += [(f"{DATA}/{path.relative_to(base).as_posix()}", path) for path in _files(source)]
    for index, folder in enumerate(block_paths(config)):
        folder = Path(folder)
        if not folder.is_dir():
            raise BundleError(f"space.block_paths[{index}]: {folder} is not a folder")
        chosen += [(f"{BLOCKS}/{index}/{path.relative_to(folder).as_posix()}", path) for path in _files(folder, ".py")]
    return chosen


def pack(config: Config, limit: int = MAX_BUNDLE) -> bytes | None:
    """The run's bundle, or None when its trainers read no files (a generated or built-in dataset)."""
    chosen = members(config)
    if not chosen and not block_paths(config):
        return None
    total = sum(path.stat().st_size for _, path in chosen)
    if total > limit:
        raise BundleError(f"the run's files ({config.data.path} and its block folders) hold {total / 1e9:.2f} GB, "
                          f"more than the {limit / 1e9:.2f} GB a run ships to its trainers: start it with "
                          "--no-ship, and give every trainer the files at the same paths")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for index in range(len(block_paths(config))):  # each folder, even one with no module in it yet
            folder = tarfile.TarInfo(f"{BLOCKS}/{index}")
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(folder)
        for name, path in chosen:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BundleError(f"{path}: cannot be read: {exc.strerror}") from None
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack(payload: bytes, into: Path) -> Path:
    """Unpack a bundle into folder ``into`` (made whole or not at all: a trainer killed half-way leaves no
    half-made folder behind to be trusted); returns ``into``. An unpacked folder is reused as it is."""
    into = Path(into)
    if into.is_dir():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    partial = into.parent / f".{into.name}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as archive:
            archive.extractall(partial, filter="data")  # no absolute paths, no way out of the folder, no devices
        os.rename(partial, into)
    except OSError:
        if into.is_dir():  # another trainer on this machine unpacked the same bundle first
            return into
        raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return into


def localise(config: Config, root: Path) -> Config:
    """``config`` with ``data.path`` and ``space.block_paths`` inside the bundle unpacked at ``root``."""
    stored = config.to_dict()
    if config.data.path:
        stored["data"]["path"] = str(root / DATA / Path(config.data.path).name)
    if block_paths(config):
        stored["space"]["block_paths"] = [str(root / BLOCKS / str(index)) for index in range(len(block_paths(config)))]
    return Config.from_dict(stored)
