"""Benchmark the metrics: AUC, GAUC (each weighting) and evaluate_predictions on random data.

    python scripts/bench_metrics.py --n 1000000 --users 100000

Prints the best of --repeat runs, in seconds per call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctrbench.metrics import WEIGHTINGS, auc, evaluate_predictions, gauc  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    users = rng.integers(0, a.users, a.n)
    labels = rng.integers(0, 2, a.n)
    scores = rng.random(a.n).astype(np.float32)
    print(f"{a.n:,} predictions over {a.users:,} users, best of {a.repeat}:")
    print(f"  auc                    {best_of(lambda: auc(labels, scores), a.repeat):.3f} s")
    for w in WEIGHTINGS:
        print(f"  gauc ({w:<11})     {best_of(lambda: gauc(users, labels, scores, w), a.repeat):.3f} s")
    print(f"  evaluate_predictions   {best_of(lambda: evaluate_predictions(users, labels, scores), a.repeat):.3f} s")


if __name__ == "__main__":
    main()
