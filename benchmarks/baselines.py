"""Hand-designed baselines, built from Lineage's blocks and trained with a search config's training settings.

The same data, split, epochs, early stopping and optimizer as the search (the config's ``[data]`` and
``[training]``, its first batch size), so a baseline and a searched model differ only in architecture. Each is
trained per seed with the Keras trainer at each of the config's learning rates, and the one with the best
validation accuracy counts (the tutorial CNN's dense layer over 33k features learns nothing at 0.001 and does at
0.0003): its validation and test accuracy, its parameters and its training time.

- ``keywords`` and ``spoken-languages`` (spectrograms):
  - ``ds-cnn``: DS-CNN, the small variant of Zhang et al. 2017 ("Hello Edge", arXiv:1711.07128): a 10x4 stride-2
    convolution with 64 filters, four depthwise-separable layers of 64, global average pooling. Batch
    normalisation after every convolution as in the paper; our stem pads to keep the shape ("same").
  - ``tutorial-cnn``: the TensorFlow "simple audio recognition" tutorial's CNN (two 3x3 convolutions of 32 and
    64, 2x2 max pooling, a dense layer of 128, dropout 0.5 before the head; the tutorial's 0.25 dropout after
    pooling and its resizing of the spectrogram to 32x32 are left out, and our convolutions add batch norm).
- ``languages`` and ``topics`` (token ids):
  - ``fasttext``: a bag of tokens (Joulin et al. 2016, "Bag of Tricks for Efficient Text Classification"):
    ``bag_of_tokens_64``, a 64-dimensional embedding averaged over the text's tokens (padding left out), then
    the linear head;
  - ``bilstm``: a 64-dimensional embedding, a bidirectional LSTM of 32 units a direction, max pooling over time.

Usage::

    python benchmarks/baselines.py --config examples/keywords.toml --set keywords --seeds 0 1
    python benchmarks/baselines.py --config examples/languages.toml --set languages

Prints a table and writes ``benchmarks/results/baselines_<set>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from race import ROOT, search_config, test_accuracy

from engine.config import Config
from engine.state import TOWER, Artifact
from engine.work import Teacher, WorkItem

SPECTROGRAMS = {
    "ds-cnn": (["stem_conv2d_64_k10x4", "ds_conv2d_64", "ds_conv2d_64", "ds_conv2d_64", "ds_conv2d_64",
                "global_avg_pool2d"], {"dropout": 0.0}),
    "tutorial-cnn": (["conv2d_32", "conv2d_64", "maxpool2d", "dense_128"], {"dropout": 0.5}),
}
TOKENS = {
    "fasttext": (["bag_of_tokens_64"], {"dropout": 0.0}),
    "bilstm": (["embedding_64", "bilstm_32", "global_max_pool1d"], {"dropout": 0.0}),
}
BASELINES = {"keywords": SPECTROGRAMS, "spoken-languages": SPECTROGRAMS, "languages": TOKENS, "topics": TOKENS}


def train(config: Config, architecture: list[str], dropout: dict[str, float], seed: int,
          teacher: Teacher | None = None, outputs: bytes = b"", capture: dict[str, bytes] | None = None
          ) -> dict[str, Any]:
    """One baseline trained with ``config``'s training settings, at each of its learning rates: the figures of
    the one with the best validation accuracy (a baseline's learning rate is tuned as a search's is). With a
    ``teacher``, it learns from the teacher's recorded ``outputs`` as a search's student does; ``capture`` gets the
    chosen training's artifacts."""
    from trainers.evaluator import make_evaluator

    choices = config.space.hparams
    best = None
    for learning_rate in choices.learning_rate:
        hyperparameters = {"learning_rate": learning_rate, "batch_size": choices.batch_size[0],
                           "optimizer": choices.optimizer[0], **dropout}
        work = WorkItem(lease=seed + 1, trial=seed + 1, key="|".join(architecture), kind=TOWER,
                        architecture=tuple(architecture), hyperparameters=hyperparameters, seed=seed, teacher=teacher)
        started = time.perf_counter()
        outcome = make_evaluator(config).evaluate(work, fetch=lambda _: outputs)
        if best is None or outcome.metrics["val_accuracy"] > best["val_accuracy"]:
            best = {"seed": seed, "learning_rate": learning_rate, "val_accuracy": outcome.metrics["val_accuracy"],
                    "params": int(outcome.metrics["params"]), "epochs": outcome.metrics["epochs"],
                    "seconds": time.perf_counter() - started,
                    "test_accuracy": test_accuracy(config, architecture, hyperparameters,
                                                   outcome.artifacts[Artifact.WEIGHTS])}
            if capture is not None:
                capture.update(outcome.artifacts)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the search config whose data and training to use")
    parser.add_argument("--set", required=True, choices=sorted(BASELINES), help="which baselines")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", type=Path, help="where to write (default benchmarks/results/baselines_SET.json)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these baselines of the set only")
    args = parser.parse_args()
    config = search_config(args.config)
    results = {name: [train(config, list(tower), dropout, seed) for seed in args.seeds]
               for name, (tower, dropout) in BASELINES[args.set].items() if not args.only or name in args.only}
    print(f"{'baseline':<14} {'params':>8} {'val':>7} {'test':>7} {'seconds':>8}  (medians of seeds {args.seeds})")
    for name, runs in results.items():
        print(f"{name:<14} {runs[0]['params']:>8} {statistics.median(r['val_accuracy'] for r in runs):>7.4f} "
              f"{statistics.median(r['test_accuracy'] for r in runs):>7.4f} "
              f"{statistics.median(r['seconds'] for r in runs):>8.0f}")
    out = args.out or ROOT / "benchmarks" / "results" / f"baselines_{args.set}.json"
    out.write_text(json.dumps({"config": str(args.config), "seeds": args.seeds, "baselines": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
