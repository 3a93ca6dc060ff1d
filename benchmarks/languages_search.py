"""Text language identification in 15 minutes: Lineage beside Optuna's TPE and KerasTuner (see ``budget_race``).

The space and training of ``examples/languages.toml`` (an embedding, then 1-D blocks over the words of a
sentence; 8 languages), on the CSV ``make_sentences.py`` makes from Debian's ``fortunes-*`` packages (it is run
first when the file is missing). Reports the test accuracy of the model each system would hand back at each
quarter of the budget and the time to the first 90% validation accuracy; ``baselines.py --set languages``
trains the fastText-style bag of words and the BiLSTM with the same settings.

Usage::

    python benchmarks/languages_search.py --systems beam tpe-hyperband kerastuner-hyperband
    python benchmarks/languages_search.py --systems beam --seeds 0 --minutes 3

Prints a table and writes ``benchmarks/results/languages_search.json``.
"""

import subprocess
import sys

from budget_race import ROOT, Race, main

LANGUAGES = Race(name="languages", config=ROOT / "examples" / "languages.toml", minutes=15.0, seeds=(0, 1),
                 target_validation=0.90)

if __name__ == "__main__":
    if not (ROOT / "examples" / "text" / "languages.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_sentences.py")], check=True)
    sys.exit(main(LANGUAGES))
