"""Searchers, by the ``search.algorithm`` that selects them."""

from __future__ import annotations

from engine.searchers.base import Proposal, Proposer, Searcher, SpaceExhausted, proposal_seed
from engine.searchers.beam import BeamSearch
from engine.searchers.evolution import Evolution
from engine.searchers.random_search import RandomSearch

SEARCHERS: dict[str, type[Searcher]] = {cls.name: cls for cls in (BeamSearch, RandomSearch, Evolution)}

__all__ = ["SEARCHERS", "Proposal", "Proposer", "Searcher", "SpaceExhausted", "proposal_seed"]
