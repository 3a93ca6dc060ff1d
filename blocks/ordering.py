"""Which block may follow which: the order rules of a tower, in one place for the space that proposes towers
and the builder that builds them.

- A whole network takes the data as it comes: it comes first, or not at all; so does a token embedding.
- A block whose input order matters (a convolution, a recurrent layer) needs every block before it to keep
  the order (global pooling does not).
- Blocks of one input family (sequences, images) are not mixed with the other; dense blocks may follow any.

Example::

    >>> specs = {name: lookup(name) for name in ("conv1d_16_k3", "global_avg_pool1d", "gru_32")}
    >>> str(problem(["conv1d_16_k3", "global_avg_pool1d", "gru_32"], specs))
    "block 2 ('gru_32') needs ordered input, but 'global_avg_pool1d' before it loses the order"
    >>> arrange(["gru_32", "global_avg_pool1d", "conv1d_16_k3"], specs)
    ['gru_32', 'conv1d_16_k3', 'global_avg_pool1d']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from blocks.registry import BlockSpec

NETWORK, DENSE, EMBEDDING = "network", "dense", "embedding"
FIRST_ONLY = {NETWORK: "a whole network", EMBEDDING: "a token embedding"}


class Reason(StrEnum):
    """Why a block cannot stand where it is."""

    UNKNOWN = "unknown"  # not a block of the space
    NETWORK_NOT_FIRST = "network not first"  # or an embedding: a block that must come first
    ORDER_LOST = "order lost"
    FAMILIES_MIXED = "families mixed"


@dataclass(frozen=True)
class Problem:
    """The first block of a tower that breaks a rule, and why (``cause``: the block before it that lost the
    order, for ``ORDER_LOST``)."""

    position: int
    block: str
    reason: Reason
    family: str = ""
    cause: str = ""

    def __str__(self) -> str:
        where = f"block {self.position} ({self.block!r})"
        return {
            Reason.UNKNOWN: f"{where} is not in space.blocks",
            Reason.NETWORK_NOT_FIRST: f"{where} is {FIRST_ONLY.get(self.family, 'a whole network')}: it must come "
                                      "first in a tower",
            Reason.ORDER_LOST: f"{where} needs ordered input, but {self.cause!r} before it loses the order",
            Reason.FAMILIES_MIXED: f"{where} mixes {self.family} blocks with another family",
        }[self.reason]


def _breaks(prefix: Sequence[BlockSpec], position: int, spec: BlockSpec) -> Problem | None:
    if spec.order_matters:
        lost = next((before for before in prefix if not before.keeps_order), None)
        if lost is not None:
            return Problem(position, spec.name, Reason.ORDER_LOST, cause=lost.name)
    if spec.family in FIRST_ONLY:
        return Problem(position, spec.name, Reason.NETWORK_NOT_FIRST, family=spec.family) if prefix else None
    families = {before.family for before in prefix if before.family not in (DENSE, *FIRST_ONLY)}
    if spec.family != DENSE and families and families != {spec.family}:
        return Problem(position, spec.name, Reason.FAMILIES_MIXED, family=spec.family)
    return None


def fits(prefix: Sequence[str], name: str, specs: Mapping[str, BlockSpec]) -> bool:
    """Whether block ``name`` may follow ``prefix``."""
    return _breaks([specs[b] for b in prefix], len(prefix), specs[name]) is None


def problem(architecture: Sequence[str], specs: Mapping[str, BlockSpec]) -> Problem | None:
    """The first block of ``architecture`` that breaks a rule (or is not in ``specs``), or None."""
    for position, name in enumerate(architecture):
        if name not in specs:
            return Problem(position, name, Reason.UNKNOWN)
        broken = _breaks([specs[b] for b in architecture[:position]], position, specs[name])
        if broken is not None:
            return broken
    return None


def arrange(blocks: Sequence[str], specs: Mapping[str, BlockSpec]) -> list[str]:
    """Blocks in an order that builds, if any does: a whole network (or an embedding) first, then the
    order-keeping blocks, then one that needs order but loses it (global pooling), then the rest, each group in
    the order given."""

    def place(name: str) -> int:
        spec = specs[name]
        if spec.family in FIRST_ONLY:
            return 0
        return 1 if spec.keeps_order else 2 if spec.order_matters else 3

    return sorted(blocks, key=place)
