"""Write examples/data/customers.csv: a small synthetic table with numeric and text columns and gaps.

The label (``churned``: yes or no) depends on the plan, the tenure, support calls and the monthly
charge, with noise, so there is something to learn. Run it again to get the same file:

    python examples/make_customers.py
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

PLANS = {"basic": 0.8, "plus": 0.0, "family": -0.6}
REGIONS = ["north", "south", "east", "west"]


def rows(n: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    table = []
    for _ in range(n):
        plan = rng.choice(list(PLANS))
        region = rng.choice(REGIONS)
        tenure = rng.randint(1, 72)
        calls = min(9, int(rng.expovariate(0.7)))
        charge = round(20 + 40 * rng.random() + (15 if plan == "family" else 0), 2)
        logit = PLANS[plan] - 0.05 * tenure + 0.45 * calls + 0.03 * (charge - 40) + rng.gauss(0, 0.6)
        churned = "yes" if 1 / (1 + math.exp(-logit)) > 0.5 else "no"
        row = [str(tenure), plan, region, str(calls), f"{charge:.2f}", churned]
        if rng.random() < 0.05:  # some gaps, in a numeric and a text column
            row[0] = ""
        if rng.random() < 0.05:
            row[2] = "NA"
        table.append(row)
    return table


def main() -> None:
    path = Path(__file__).parent / "data" / "customers.csv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tenure_months", "plan", "region", "support_calls", "monthly_charge", "churned"])
        writer.writerows(rows(600))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
