"""TensorBoard HParams summaries of a run (``engine tensorboard``), so TensorBoard users see its trials there.

The folder it writes holds the experiment (which hyperparameters, with their domains from the config, and which
metrics) and one sub-folder per completed trial: its hyperparameters, its architecture as text columns (the
candidate's key, how it was made, its parent, its depth), its final metrics, and its learning curve where the
trainer reported epochs (each metric at each epoch). Open it with ``tensorboard --logdir OUT``, tab HPARAMS.

Example::

    >>> write_hparams("runs/m1d", "tb/")         # then: tensorboard --logdir tb/
    64
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.space_options import TowerOptions
from engine.state import TOWER, State, Status, Trial
from replay.history import history, origin

TEXT_COLUMNS = ("architecture", "origin", "parent", "depth")
FINAL_METRICS = ("val_loss", "params", "epochs", "train_seconds")


def _value(value: Any) -> bool | int | float | str:
    """A hyperparameter's value as TensorBoard takes it (no nil)."""
    return value if isinstance(value, bool | int | float | str) else str(value)


def columns(state: State, trial: Trial) -> dict[str, bool | int | float | str]:
    """A completed tower's row in the HParams table: its hyperparameters and its architecture as text."""
    architecture = trial.architecture if isinstance(trial.architecture, list) else []
    found = {name: _value(value) for name, value in sorted(trial.hyperparameters.items())}
    found.update(architecture=" > ".join(map(str, architecture)), origin=origin(state, trial),
                 parent="" if trial.parent is None else str(trial.parent), depth=len(architecture))
    return found


def write_hparams(run_dir: Path | str, out: Path | str, at: int | None = None) -> int:
    """Write the HParams summaries of ``run_dir`` (as it stood after event ``at``) into ``out`` (replaced whole)
    and return how many trials it holds."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    state = history(run_dir, at).state
    metric = state.config.search.metric
    towers = [t for t in state.trials.values() if t.kind == TOWER and t.status is Status.COMPLETED]
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    space = state.config.space
    choices = space.hparams.choices() if isinstance(space, TowerOptions) else {}
    names = sorted({name for trial in towers for name in trial.hyperparameters})
    params = {name: hp.HParam(name, hp.Discrete([_value(v) for v in choices[name]])
                              if name in choices and choices[name] else None) for name in names}
    params.update({name: hp.HParam(name) for name in TEXT_COLUMNS})
    measured = [metric, *(m for m in FINAL_METRICS if m != metric)]
    with tf.summary.create_file_writer(str(partial)).as_default():
        hp.hparams_config(hparams=list(params.values()),
                          metrics=[hp.Metric(name, display_name=name) for name in measured])
    for trial in towers:
        with tf.summary.create_file_writer(str(partial / f"trial-{trial.id}")).as_default():
            hp.hparams({params[name]: value for name, value in columns(state, trial).items()},
                       trial_id=f"trial-{trial.id}")
            last = int((trial.metrics or {}).get("epochs", 0))
            for point in trial.curve:
                for name, value in point.metrics.items():
                    tf.summary.scalar(f"epoch/{name}", value, step=point.epoch)
            for name in measured:
                value = (trial.metrics or {}).get(name)
                if isinstance(value, int | float):
                    tf.summary.scalar(name, value, step=last)
    shutil.rmtree(out, ignore_errors=True)
    partial.replace(out)
    return len(towers)
