"""What a trainer needs to serve a run, made from the engine's WELCOME: the run's evaluator (or why this trainer
cannot evaluate the run's candidates) and the epochs its stopping rule judges trials at.

Example::

    >>> setup = set_up("t1", welcome["config"], welcome["bundle"], cache / "bundles", client.download)
    >>> setup.evaluator.evaluate(item, fetch) if setup.unusable is None else setup.unusable
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bundle import localise, unpack
from engine.config import Config
from engine.state import TowerInput
from engine.stopping import rungs
from trainers.client import EngineGone, EngineRefused
from trainers.datasets import DataError
from trainers.evaluator import Evaluator, make_evaluator

log = logging.getLogger("lineage.trainer")


@dataclass(frozen=True)
class RunSetup:
    """A run as one trainer serves it: ``evaluator`` None and ``unusable`` saying why when it cannot."""

    evaluator: Evaluator | None = None
    unusable: str | None = None
    rungs: frozenset[int] = frozenset()  # epochs the run's stopping rule judges trials at (asha)

    def described(self) -> TowerInput | None:
        """What this trainer builds towers on, for the engine to count their weights (None: nothing to say)."""
        return self.evaluator.describe() if self.evaluator is not None else None


def set_up(trainer: str, config: Mapping[str, Any], bundle: str | None, bundles: Path,
           download: Callable[[str], bytes]) -> RunSetup:
    """The set-up of the run whose WELCOME held ``config`` and ``bundle``, the digest of the run's files (None: the
    trainer reads them from its own disk), unpacked under ``bundles`` once per machine after ``download``. A
    bundle whose download fails raises (the next hello tries again); a run this trainer cannot evaluate is a
    set-up that says why."""
    try:
        run_config = Config.from_dict(dict(config))
        if bundle is not None:
            run_config = localise(run_config, unpacked(trainer, bundles / bundle, bundle, download))
        asha = run_config.search.asha
        judged = frozenset(rungs(asha.min_epochs, asha.eta, run_config.training.epochs)
                           if run_config.search.stopping == "asha" else ())
        return RunSetup(make_evaluator(run_config), None, judged)
    except (EngineGone, EngineRefused):
        raise
    except DataError as exc:
        return RunSetup(unusable=f"trainer {trainer} cannot read the data: {exc}")
    except Exception as exc:  # a missing package, a block that does not import
        return RunSetup(unusable=f"trainer {trainer} cannot evaluate this run's candidates: "
                                 f"{type(exc).__name__}: {exc}")


def unpacked(trainer: str, root: Path, digest: str, download: Callable[[str], bytes]) -> Path:
    """The run's files (its bundle ``digest``) in ``root``, downloaded and unpacked unless they are there."""
    if not root.is_dir():
        started = time.monotonic()
        payload = download(digest)
        unpack(payload, root)
        log.info("%s: the run's files (%.1f MB) downloaded and unpacked in %s in %.1fs", trainer,
                 len(payload) / 1e6, root, time.monotonic() - started)
    return root
