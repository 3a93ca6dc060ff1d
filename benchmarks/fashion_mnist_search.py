"""Fashion-MNIST in 10 minutes: Lineage beside Optuna's TPE and KerasTuner on this machine (see ``budget_race``).

The space and training of ``examples/fashion_mnist.toml``: a stratified 10,000 of the 60,000 training
images (15% of them for validation), scored on the official 10,000 t10k test images. The images come
from Debian's ``dataset-fashion-mnist`` package, which this benchmark installs with apt when they are
missing (nothing is downloaded at run time). Reports the test accuracy of the model each system would
hand back at each quarter of the budget and the time to the first 85% validation accuracy.

Usage::

    python benchmarks/fashion_mnist_search.py --systems beam beam-asha tpe-hyperband kerastuner-hyperband
    python benchmarks/fashion_mnist_search.py --systems beam --seeds 0 --minutes 2

Prints a table and writes ``benchmarks/results/fashion_mnist_search.json``.
"""

import subprocess
import sys
from pathlib import Path

from budget_race import ROOT, Race, main

FASHION_MNIST = Race(name="fashion_mnist", config=ROOT / "examples" / "fashion_mnist.toml", minutes=10.0,
                     seeds=(0, 1), target_validation=0.85)
IMAGES = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts the four .gz files

if __name__ == "__main__":
    if not (IMAGES / "train-images-idx3-ubyte.gz").exists():
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], check=True)
    sys.exit(main(FASHION_MNIST))
