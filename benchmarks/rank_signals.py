"""What foretells how good a tower ends up, read from race results that keep every tower (``run_towers.py``).

A search under a trial budget lives on two guesses: ASHA stops a tower after its first epochs, and the beam's
surrogate picks the mutations to train. Both matter most among good towers, where the winner is chosen. For each
result file this prints Spearman rank correlations with a tower's best validation accuracy, over the best
``--top`` towers trained to the end (at least ``--full`` epochs) whose parent was too:

- ``first rung``: its own validation accuracy after ``--rung`` epochs (what ASHA's first rung reads);
- ``parent``: its parent's best (what a rule that judges children by their parent reads);
- ``surrogate``: the mean the beam's Gaussian process predicts for it, fitted at ``--cut`` on the towers that
  finished before (scored as the beam scores them: their best, stopped or not); over the towers after the cut.

Usage::

    python benchmarks/rank_signals.py benchmarks/results/keywords_small_counted_24min_seed*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from engine.searchers.surrogate import GaussianProcess, Vectorizer
from engine.spaces import make_space


def _best(tower: dict[str, Any]) -> float:
    return max(value for value in tower["curve"] if value is not None)


def _rho(guess: list[float], truth: list[float]) -> float:
    return float(spearmanr(guess, truth)[0]) if len(truth) >= 5 else float("nan")


def signals(towers: list[dict[str, Any]], rung: int, full: int, top: int, cut: int) -> dict[str, float]:
    """The three correlations above for one run's towers (in the order the run proposed them)."""
    towers = [t for t in towers if t["curve"] and t["curve"][0] is not None]
    by_trial = {t["trial"]: t for t in towers}
    trained = [t for t in towers if len(t["curve"]) >= full]
    with_parent = [t for t in trained if len(by_trial.get(t["parent"], {"curve": ()})["curve"]) >= full]
    chosen = sorted(with_parent, key=_best, reverse=True)[:top]
    truth = [_best(t) for t in chosen]
    space = make_space({"kind": "tower", "blocks": sorted({b for t in towers for b in t["architecture"]})})
    encode = [space.encode(t["architecture"], t["hp"]) for t in towers]
    vectorizer = Vectorizer(encode)
    before, after = slice(0, cut), [i for i in range(cut, len(towers)) if len(towers[i]["curve"]) >= full]
    surrogate = float("nan")
    if cut < len(towers) and len(after) >= 5:
        gp = GaussianProcess().fit(vectorizer.transform(encode[before]), np.array([_best(t) for t in towers[before]]))
        mean, _ = gp.predict(vectorizer.transform([encode[i] for i in after]))
        surrogate = _rho(list(mean), [_best(towers[i]) for i in after])
    return {"towers": len(chosen),
            "first rung": _rho([t["curve"][rung - 1] for t in chosen], truth),
            "parent": _rho([_best(by_trial[t["parent"]]) for t in chosen], truth),
            "surrogate": surrogate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="race results with towers (budget_race.py --out)")
    parser.add_argument("--rung", type=int, default=2, help="epochs of the first rung (search.asha.min_epochs)")
    parser.add_argument("--full", type=int, default=12, help="epochs that count as trained to the end")
    parser.add_argument("--top", type=int, default=40, help="the best towers trained to the end that count")
    parser.add_argument("--cut", type=int, default=100, help="towers the surrogate is fitted on")
    args = parser.parse_args()
    rows = []
    print(f"{'result':<52} {'towers':>6} {'first rung':>10} {'parent':>7} {'surrogate':>9}")
    for path in args.results:
        for run in json.loads(path.read_text()).get("runs", ()):
            if not any(tower.get("curve") for tower in run.get("towers", ())):
                continue  # results from before towers kept their curves
            row = signals(run["towers"], args.rung, args.full, args.top, args.cut)
            rows.append(row)
            print(f"{path.name[:52]:<52} {row['towers']:>6} {row['first rung']:>10.2f} {row['parent']:>7.2f} "
                  f"{row['surrogate']:>9.2f}")
    if not rows:
        print("no result keeps its towers", file=sys.stderr)
        return 1
    medians = {key: statistics.median(r[key] for r in rows if r[key] == r[key]) for key in rows[0] if key != "towers"}
    print(f"{'median':<52} {'':>6} {medians['first rung']:>10.2f} {medians['parent']:>7.2f} "
          f"{medians['surrogate']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
