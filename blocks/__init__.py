"""Blocks: the pieces Lineage builds towers from, found by name in the registry."""

from blocks.registry import (
    Block,
    BlockError,
    BlockSpec,
    Count,
    function_block,
    layers,
    lookup,
    names,
    register,
    use_paths,
)

__all__ = ["Block", "BlockError", "BlockSpec", "Count", "function_block", "layers", "lookup", "names", "register",
           "use_paths"]
