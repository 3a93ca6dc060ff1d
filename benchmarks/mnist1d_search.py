"""MNIST-1D in 8 minutes: Lineage beside Optuna's TPE and KerasTuner on this machine (see ``budget_race``).

The space and training of ``examples/mnist1d.toml``; the ``budget`` system searches
``examples/mnist1d_small.toml`` (``space.max_params = 5200``, the size of the MNIST-1D paper's CNN).
Reports the test accuracy of the model each system would hand back at each quarter of the budget and
the time to the first 90% validation accuracy.

Usage::

    python benchmarks/mnist1d_search.py                                   # all systems, 3 seeds (long)
    python benchmarks/mnist1d_search.py --systems beam tpe-hyperband --seeds 0 --minutes 3

Prints a table and writes ``benchmarks/results/mnist1d_search.json``.
"""

import sys

from budget_race import ROOT, Race, main

MNIST1D = Race(name="mnist1d", config=ROOT / "examples" / "mnist1d.toml", minutes=8.0, seeds=(0, 1, 2),
               target_validation=0.90, small_config=ROOT / "examples" / "mnist1d_small.toml")

if __name__ == "__main__":
    sys.exit(main(MNIST1D))
