"""Blocks: the pieces Lineage builds towers from, found by name in the registry."""

from blocks.registry import Block, BlockError, BlockSpec, lookup, names, register

__all__ = ["Block", "BlockError", "BlockSpec", "lookup", "names", "register"]
