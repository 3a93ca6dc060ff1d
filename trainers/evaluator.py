"""The Evaluator API: how a trainer turns one work item (an ``engine.work.WorkItem``) into metrics and artifacts.

Evaluators plug in by the run's ``evaluator.kind``: ``keras`` trains towers on the run's data,
``table`` looks NAS-Bench-201 results up, ``synthetic`` scores towers with a cheap deterministic
stand-in for training. An evaluator is built once per run from the configuration the engine sends in WELCOME,
so it can load and cache its data once, not per trial.

Example::

    >>> evaluator = make_evaluator(config)
    >>> outcome = evaluator.evaluate(work_item, fetch=lambda digest: b"...")
    >>> outcome.metrics["val_acc"]
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from engine.config import Config
from engine.state import Epoch, TowerInput
from engine.work import WorkItem

Fetch = Callable[[str], bytes]
#: Called by an evaluator, from its thread, after each epoch it trains (the daemon sends them on, batched); it
#: returns whether to train on (False: the engine said to stop, and the evaluation ends after this epoch).
Report = Callable[[Epoch], bool | None]


@dataclass
class Outcome:
    """What an evaluation produced: numeric metrics, named artifact blobs (uploaded by digest) and the
    names of the layers it copied from other trials."""

    metrics: dict[str, float]
    artifacts: dict[str, bytes] = field(default_factory=dict)
    inherited: list[str] = field(default_factory=list)


class EvaluationError(RuntimeError):
    """The candidate cannot be evaluated; the trial fails with this message as its reason, and with the
    ``metrics`` measured before it failed (a tower over ``space.max_params`` reports its ``params``, which the
    beam's budget model learns from).

    Example::

        >>> raise EvaluationError("15,000 parameters exceed space.max_params = 14,000", {"params": 15000.0})
    """

    def __init__(self, message: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.metrics = dict(metrics or {})


class Evaluator(ABC):
    """Base class of evaluators. ``config`` is the run's resolved configuration."""

    kind: ClassVar[str]
    #: Whether work items should arrive with their parent's artifacts already in the local cache.
    wants_parent_artifacts: ClassVar[bool] = False

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    def evaluate(self, work: WorkItem, fetch: Fetch, report: Report | None = None) -> Outcome:
        """Evaluate one work item; ``fetch`` reads a cached blob (by digest) the item ``needs``, and
        ``report`` (if given) hears of each epoch trained, with its validation metrics."""

    def describe(self) -> TowerInput | None:
        """What this evaluator builds towers on, for the engine to count their weights (None: it builds none)."""
        return None


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (same on every machine and process)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def make_evaluator(config: Config) -> Evaluator:
    """The evaluator a run's ``evaluator.kind`` names."""
    kind = config.evaluator.kind
    if kind == "keras":  # imported only where it is needed: it brings TensorFlow along
        from trainers.keras_trainer import KerasEvaluator

        return KerasEvaluator(config)
    from trainers.synthetic import SyntheticEvaluator
    from trainers.table import TableEvaluator

    return {cls.kind: cls for cls in (TableEvaluator, SyntheticEvaluator)}[kind](config)
