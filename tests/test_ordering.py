"""The order rules of a tower (blocks/ordering.py), shared by the tower space and the builder."""

from __future__ import annotations

import pytest

from blocks import lookup
from blocks.ordering import Reason, arrange, fits, problem

SPECS = {name: lookup(name) for name in ("conv1d_16_k3", "global_avg_pool1d", "gru_32", "conv2d_16", "dense_32",
                                         "maxpool1d")}


@pytest.mark.parametrize(("tower", "reason", "position"), [
    (["conv1d_16_k3", "global_avg_pool1d", "gru_32"], Reason.ORDER_LOST, 2),
    (["conv1d_16_k3", "conv2d_16"], Reason.FAMILIES_MIXED, 1),
    (["dense_32", "nonesuch"], Reason.UNKNOWN, 1),
])
def test_each_broken_rule_has_its_reason(tower: list[str], reason: Reason, position: int) -> None:
    found = problem(tower, SPECS)
    assert found is not None and (found.reason, found.position, found.block) == (reason, position, tower[position])
    assert str(found).startswith(f"block {position} ({tower[position]!r})")
    if reason is not Reason.UNKNOWN:
        assert not fits(tower[:position], tower[position], SPECS)


def test_towers_that_keep_the_rules_pass_and_any_collection_is_arranged_to_keep_them() -> None:
    for tower in (["conv1d_16_k3", "maxpool1d", "gru_32", "global_avg_pool1d", "dense_32"], ["dense_32", "dense_32"]):
        assert problem(tower, SPECS) is None
    drawn = ["dense_32", "global_avg_pool1d", "gru_32", "conv1d_16_k3"]
    assert problem(drawn, SPECS) is not None
    assert arrange(drawn, SPECS) == ["gru_32", "conv1d_16_k3", "global_avg_pool1d", "dense_32"]
    assert problem(arrange(drawn, SPECS), SPECS) is None
