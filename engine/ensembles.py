"""Ensemble steps: when the next candidate combines trained towers instead of training a new one.

A pure function of the state, like the searchers. An ensemble candidate's architecture is
``{"members": [trial ids], "combiner": "average" | "weighted"}``; a trainer combines the members'
recorded outputs and reports the ensemble's validation metric, and the fold keeps the best ensemble.

- ``adaptive``: the ensemble grows greedily. Each tower of the beam (top-K) is tried once as an addition
  to the best ensemble (one that beats every tower alone), or, when there is no such ensemble (to begin
  with, or since a new tower did as well alone), to the tower it has to beat (``ensemble.start``); an
  addition that does not improve on its base is set aside, so members are only ever added when they help.
  With ``ensemble.top`` (the default), each time the leaderboard's best ``width`` towers change their
  average is tried first: a full ensemble never grows, and without it the members picked from the first
  towers stayed for good (on Fashion-MNIST 87.1% test where the average of the final top five gave 88.3%).
- ``intermixed``: every n-th proposal is such a step (with the best tower not yet tried), the others
  train new architectures: exploration and exploitation interleaved on a fixed schedule.

With ``ensemble.replicas = n``, each tower the ensemble is built from (the tower it grows from, or the
best ensemble's members) is trained n more times with other seeds, as deep ensembles are (Lakshminarayanan
et al., 2017), once ``ensemble.replica_wait`` new towers have completed after it (a lucky early leader
is not worth it). A replica is a tower trial of the same architecture from fresh weights, so its
mistakes are its own, with the teacher any new tower would get (a replica without one tested up to 2
points below its distilled original on MNIST-1D); replicas are proposed when no ensemble step is due
and join the pool the ensemble grows from.

Example::

    >>> plan_ensemble(state)      # None, or {"members": [12, 30], "combiner": "average"}
    >>> plan_replica(state)       # None, or the trial to train again with another seed
"""

from __future__ import annotations

from typing import Any

from engine.state import Artifact, State, Trial

REPLICA = "replica"  # the mutation of a tower trained again with another seed


def ensemble_key(architecture: dict[str, Any]) -> str:
    """The stable name of an ensemble candidate (the dedupe key)."""
    return f"ensemble {'+'.join(map(str, sorted(architecture['members'])))} ({architecture['combiner']})"


def plan_ensemble(state: State, scheduled: bool = True) -> dict[str, Any] | None:
    """The next ensemble step, or None when the next candidate should be a new tower.

    ``scheduled=False`` ignores the intermixed schedule (when no new tower is left to try).
    """
    options = state.config.ensemble
    if options.strategy == "none":
        return None
    if scheduled and options.strategy == "intermixed" and (state.proposals + 1) % options.every != 0:
        return None
    towers = [t for t in state.leaderboard() if Artifact.OUTPUTS in (t.artifacts or {})]  # what ensembles combine
    if len(towers) < 2:
        return None
    if options.strategy == "adaptive" and options.top:
        leaders = {"members": [t.id for t in towers[:options.width]], "combiner": options.combiner}
        if ensemble_key(leaders) not in state.keys:
            return leaders
    base = _grown_from(state, towers)
    if len(base) >= options.width:
        return None
    pool = ([t for t in towers if t.id in state.top or t.mutation == REPLICA]
            if options.strategy == "adaptive" else towers)
    for candidate in pool:
        if candidate.id in base:
            continue
        architecture = {"members": base + [candidate.id], "combiner": options.combiner}
        if ensemble_key(architecture) not in state.keys:
            return architecture
    return None


def plan_replica(state: State) -> Trial | None:
    """The tower to train again with another seed, or None: the first tower the ensemble is built from
    (the best ensemble's members, else the tower it grows from) with fewer than ``ensemble.replicas`` replicas,
    once ``ensemble.replica_wait`` new towers have completed after it."""
    options = state.config.ensemble
    if options.strategy == "none" or not options.replicas:
        return None
    members = [state.trials[m] for m in _grown_from(state, state.leaderboard())]
    originals = dict.fromkeys(m.parent if m.mutation == REPLICA else m.id for m in members)
    new_towers = [t.id for t in state.completed_towers() if t.mutation != REPLICA]
    for original in originals:
        waited = sum(t > original for t in new_towers) >= options.replica_wait
        if waited and len(_replicas(state, original)) < options.replicas:
            return state.trials[original]
    return None


def _grown_from(state: State, towers: list[Trial]) -> list[int]:
    """What the ensemble is built from: the best ensemble's members (it beats every tower alone), else
    (``ensemble.start``) the tower an ensemble must beat if its outputs were recorded, else the best of
    ``towers``. By validation loss those two towers can differ, and growing from the leader then rarely
    clears the bar."""
    best = state.best_ensemble()
    if best is not None:
        return list(best.architecture["members"])
    strongest = state.strongest_tower()
    if state.config.ensemble.start == "criterion" and strongest is not None and Artifact.OUTPUTS in (
            strongest.artifacts or {}):
        return [strongest.id]
    return [towers[0].id] if towers else []


def replica_key(state: State, original: Trial) -> str:
    """The dedupe key of ``original``'s next replica."""
    return f"{original.key} (replica {len(_replicas(state, original.id)) + 1})"


def _replicas(state: State, original: int) -> list[int]:
    return [t.id for t in state.trials.values() if t.mutation == REPLICA and t.parent == original]
