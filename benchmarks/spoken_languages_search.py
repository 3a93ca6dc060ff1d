"""Spoken language identification in 30 minutes: Lineage beside Optuna's TPE and KerasTuner (see ``budget_race``).

The space and training of ``examples/spoken_languages.toml`` (2-D and 1-D blocks over the MFCCs of three-second clips
of ``espeak-ng`` reading fortunes in 8 languages), on the clips ``make_spoken_languages.py`` makes (it is run first
when they are missing). Reports the test accuracy of the model each system would hand back at each quarter of
the budget and the time to the first 80% validation accuracy; ``baselines.py --set spoken-languages`` trains the
hand-designed DS-CNN and the TensorFlow tutorial's CNN with the same settings.

Usage::

    python benchmarks/spoken_languages_search.py --systems example --seeds 0
    python benchmarks/spoken_languages_search.py --systems example --set space.max_params=14599 --set space.head=pool

Prints a table and writes ``benchmarks/results/spoken_languages_search.json``.
"""

import subprocess
import sys

from budget_race import ROOT, Race, main

SPOKEN_LANGUAGES = Race(name="spoken_languages", config=ROOT / "examples" / "spoken_languages.toml", minutes=30.0,
                        seeds=(0, 1), target_validation=0.80)

if __name__ == "__main__":
    if not (ROOT / "examples" / "spoken_languages" / "en").is_dir():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_spoken_languages.py")], check=True)
    sys.exit(main(SPOKEN_LANGUAGES))
