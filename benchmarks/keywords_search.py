"""Keyword spotting in 30 minutes: Lineage beside Optuna's TPE and KerasTuner on this machine (see ``budget_race``).

The space and training of ``examples/keywords.toml`` (2-D and 1-D blocks over the MFCCs of one-second clips: 10 words,
unknown words and silence, spoken by ``espeak-ng``), on the clips ``make_keywords.py`` makes (it is run
first when they are missing). Reports the test accuracy of the model each system would hand back at each quarter
of the budget and the time to the first 90% validation accuracy; ``baselines.py --set keywords`` trains the
hand-designed DS-CNN and the TensorFlow tutorial's CNN with the same settings.

Usage::

    python benchmarks/keywords_search.py --systems beam tpe-hyperband kerastuner-hyperband
    python benchmarks/keywords_search.py --systems beam --seeds 0 --minutes 5

Prints a table and writes ``benchmarks/results/keywords_search.json``.
"""

import subprocess
import sys

from budget_race import ROOT, Race, main

KEYWORDS = Race(name="keywords", config=ROOT / "examples" / "keywords.toml", minutes=30.0, seeds=(0, 1),
                target_validation=0.90)

if __name__ == "__main__":
    if not (ROOT / "examples" / "keywords" / "yes").is_dir():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_keywords.py")], check=True)
    sys.exit(main(KEYWORDS))
