"""Run bundles: the same files make the same bytes; a bundle unpacks whole, safely, and a config localised to it
reads its files from there; what cannot be shipped is refused with the path named."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from support import ROOT, tower_config

from engine.artifacts import digest_of
from engine.bundle import BundleError, localise, members, pack, unpack


def user_files(root: Path) -> tuple[Path, Path]:
    data = root / "shapes"
    for kind in ("circle", "square"):
        (data / kind).mkdir(parents=True)
        for number in range(3):
            (data / kind / f"{number}.png").write_bytes(os.urandom(40))
    blocks = root / "my_blocks"
    (blocks / "__pycache__").mkdir(parents=True)
    (blocks / "mine.py").write_text((ROOT / "examples" / "my_blocks.py").read_text())
    (blocks / "notes.txt").write_text("not a module")
    (blocks / "__pycache__" / "mine.cpython-311.pyc").write_bytes(b"\0")
    return data, blocks


def config_of(data: Path, blocks: Path):
    return tower_config(evaluator__kind="keras", data__dataset="images", data__path=str(data),
                        space__block_paths=[str(blocks)], space__blocks=["conv2d_32", "global_avg_pool2d"])


def test_the_same_files_make_the_same_bundle_whatever_their_times(tmp_path: Path) -> None:
    data, blocks = user_files(tmp_path / "a")
    first = pack(config_of(data, blocks))
    for path in data.rglob("*.png"):
        os.utime(path, (1_000_000, 1_000_000))
    assert pack(config_of(data, blocks)) == first
    (data / "circle" / "0.png").write_bytes(b"changed")
    assert digest_of(pack(config_of(data, blocks))) != digest_of(first)

    names = [name for name, _ in members(config_of(data, blocks))]
    assert names == [*(f"data/shapes/circle/{n}.png" for n in range(3)),
                     *(f"data/shapes/square/{n}.png" for n in range(3)), "blocks/0/mine.py"]
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        assert {(m.mtime, m.uid, m.uname) for m in archive.getmembers()} == {(0, 0, "")}


def test_an_unpacked_bundle_holds_the_files_a_localised_config_names(tmp_path: Path) -> None:
    data, blocks = user_files(tmp_path / "user")
    config = config_of(data, blocks)
    payload = pack(config)
    root = unpack(payload, tmp_path / "cache" / digest_of(payload))
    here = localise(config, root)
    assert Path(here.data.path) == root / "data" / "shapes"
    assert (Path(here.data.path) / "square" / "2.png").read_bytes() == (data / "square" / "2.png").read_bytes()
    assert [Path(p) for p in here.space.block_paths] == [root / "blocks" / "0"]
    assert sorted(os.listdir(root / "blocks" / "0")) == ["mine.py"]
    assert here.to_dict() | {"data": None, "space": None} == config.to_dict() | {"data": None, "space": None}

    os.remove(root / "blocks" / "0" / "mine.py")
    assert unpack(payload, root) == root, "an unpacked bundle is reused as it is"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")], "no partial folder is left"


def test_a_run_that_reads_no_files_has_no_bundle() -> None:
    assert pack(tower_config(data__dataset="mnist1d")) is None


def test_files_that_cannot_be_shipped_are_named(tmp_path: Path) -> None:
    data, blocks = user_files(tmp_path)
    with pytest.raises(BundleError, match=r"data.path: .*missing does not exist"):
        pack(config_of(tmp_path / "missing", blocks))
    with pytest.raises(BundleError, match=r"space.block_paths\[0\]: .*nowhere is not a folder"):
        pack(config_of(data, tmp_path / "nowhere"))
    with pytest.raises(BundleError, match="more than the 0.00 GB a run ships to its trainers: start it with --no-ship"):
        pack(config_of(data, blocks), limit=100)


def test_a_bundle_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.TarError):
        unpack(buffer.getvalue(), tmp_path / "cache" / "bundle")
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not (tmp_path / "cache" / "bundle").exists()
