"""What the protocol tests send and receive: example work items of every shape, and hostile values of every type."""

from __future__ import annotations

import math

import msgpack

from engine import protocol
from engine.protocol import ProtocolError
from engine.state import ENSEMBLE, TOWER, Resume
from engine.work import Ensemble, Inherit, Member, Source, Teacher, WorkItem

DIGEST = "ab" * 32
P = protocol.PROTOCOL

WEIGHTS_1, WEIGHTS_2, OUTPUTS_3, OUTPUTS_4 = ("1" * 64), ("2" * 64), ("3" * 64), ("4" * 64)
CHECKPOINT_5 = "5" * 64
HP = {"learning_rate": 0.003, "dropout": 0.1, "batch_size": 32, "optimizer": "adam"}
#: A tower that starts from two trials' averaged weights and learns from the best ensemble.
TOWER_ITEM = WorkItem(
    lease=12, trial=9, key="conv1d_16_k3 > dense_32", kind=TOWER, architecture=("conv1d_16_k3", "dense_32"),
    hyperparameters=HP, seed=2**62 + 5, parent=1, parent_artifacts={"weights": WEIGHTS_1, "outputs": OUTPUTS_4},
    inherit=Inherit("average", (Source(1, ("conv1d_16_k3",), HP, WEIGHTS_1, 0.75),
                                Source(2, ("conv1d_16_k3", "dense_32"), {**HP, "dropout": 0.0}, WEIGHTS_2, 0.25))),
    teacher=Teacher(kind="ensemble", trial=3, loss="soft", temperature=4.0, weight=0.5,
                    architecture=Ensemble((1, 2), "weighted"), hyperparameters={}, outputs=OUTPUTS_3),
    needs=(WEIGHTS_1, WEIGHTS_2, OUTPUTS_3, CHECKPOINT_5), until=8, resume=Resume(2, CHECKPOINT_5),
)
#: An ensemble step: three trained towers' outputs, combined.
ENSEMBLE_ITEM = WorkItem(
    lease=13, trial=10, key="ensemble 1+2+4 (average)", kind=ENSEMBLE, architecture=Ensemble((1, 2, 4), "average"),
    hyperparameters={}, seed=7, members=(Member(1, ("conv1d_16_k3",), HP, OUTPUTS_3),
                                         Member(2, ("conv1d_16_k3", "dense_32"), HP, OUTPUTS_4),
                                         Member(4, ("dense_32",), HP, None)),
    needs=(OUTPUTS_3, OUTPUTS_4),
)
#: A tower trained from scratch: no parent, nothing inherited, no teacher, nothing needed.
PLAIN_ITEM = WorkItem(lease=14, trial=11, key="nor_conv_3x3|skip_connect", kind=TOWER,
                      architecture=("nor_conv_3x3", "skip_connect"), hyperparameters={}, seed=0)
ITEMS = [TOWER_ITEM, ENSEMBLE_ITEM, PLAIN_ITEM]

HOSTILE = [
    None, True, False, -1, 2**64 - 1, -(2**63), math.nan, math.inf, -0.0, 1.5, "", "x" * 300_000, "A" * 64,
    b"", b"\x00" * (protocol.CHUNK + 1), [], [1, "two"], list(range(4096)), [[[1]]], {}, {"k": "v"}, {1: 2},
    {str(i): i for i in range(4096)}, [[[]] * 64] * 64, msgpack.ExtType(1, b"x"),
]


def assert_short_refusal(exc: ProtocolError) -> None:
    """A refusal is a few words: never the value it got, however large."""
    assert len(str(exc)) <= protocol.MAX_ERROR, f"a {len(str(exc))}-character error: {str(exc)[:80]}..."
