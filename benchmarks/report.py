"""How long ``engine report`` takes and how large its page is, over NAS-Bench-201 logs of growing size.

Each log is a real search: ``engine run`` on ``examples/nb201.toml`` with random search, 2 trainers and the
table evaluator (prefetch 16), for 1,000, 10,000 and 100,000 trials. For each: the seconds ``engine report``
takes (a fresh process, imports included: what a user waits for), the page's size, the seconds to replay the
log alone (``engine replay``), and for the largest, how long the dashboard takes to answer ``/views`` (the
latest event, and the middle of the run).

Usage::

    python benchmarks/report.py                       # 1k, 10k and 100k trials
    python benchmarks/report.py --sizes 1000 5000

Prints a table and writes ``benchmarks/results/report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.log import EventLog  # noqa: E402


def make_run(folder: Path, trials: int) -> Path:
    run = folder / f"nb201-{trials}"
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(run), "--config",
                    str(ROOT / "examples" / "nb201.toml"), "--set", "search.algorithm=random", "--trials",
                    str(trials), "--trainers", "2", "--prefetch", "16", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return run


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def measure(run: Path, rounds: int) -> dict:
    out = run.parent / f"{run.name}.html"
    report = [timed([sys.executable, "-m", "engine", "report", "--run", str(run), "--out", str(out)])
              for _ in range(rounds)]
    replay = [timed([sys.executable, "-m", "engine", "replay", "--run", str(run)]) for _ in range(rounds)]
    with EventLog.open_reader(run) as log:
        events = log.head
    return {"run": str(run), "events": events, "report_seconds": report, "median_report_seconds":
            statistics.median(report), "replay_seconds": replay, "median_replay_seconds": statistics.median(replay),
            "megabytes": out.stat().st_size / 1e6}


def dashboard_views(run: Path, events: int) -> dict:
    from replay.dashboard import Dashboard

    with Dashboard(run, port=0) as dashboard:
        while dashboard.head() < events:
            time.sleep(0.05)
        found = {}
        for label, at in (("latest", None), ("middle", events // 2)):
            started = time.perf_counter()
            size = len(json.dumps(dashboard.views(at)))
            found[label] = {"seconds": time.perf_counter() - started, "megabytes": size / 1e6}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3, help="timings per size (default 3; medians reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "report.json")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lineage-report-"))
    rows = []
    for size in args.sizes:
        print(f"{size} trials: searching ...", file=sys.stderr, flush=True)
        run = make_run(folder, size)
        print("  reporting ...", file=sys.stderr, flush=True)
        rows.append({"trials": size, **measure(run, args.rounds)})
    largest = max(rows, key=lambda r: r["trials"])
    views = dashboard_views(Path(largest["run"]), largest["events"])
    print(f"\nengine report over NAS-Bench-201 logs on {os.cpu_count()} cores (medians of {args.rounds})")
    print(f"{'trials':>8} {'events':>8} {'report s':>9} {'replay s':>9} {'page MB':>8}")
    for row in rows:
        print(f"{row['trials']:>8} {row['events']:>8} {row['median_report_seconds']:>9.1f} "
              f"{row['median_replay_seconds']:>9.1f} {row['megabytes']:>8.1f}")
    for label, found in views.items():
        print(f"dashboard /views at the {label} event of {largest['trials']} trials: {found['seconds']:.1f}s, "
              f"{found['megabytes']:.1f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows, "dashboard": views}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
