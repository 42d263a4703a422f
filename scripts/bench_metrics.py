"""Benchmark the metrics: AUC, GAUC (each weighting) and evaluate_predictions on random data.

    python scripts/bench_metrics.py                      # 1M predictions over 100k users
    python scripts/bench_metrics.py --n 5000000 --users 500000 --dtype float64

Scores are random probabilities (float32 by default, like the model's sigmoid outputs; float64
ones that float32 cannot hold exactly take the slower dense-rank path). Prints the best of
--repeat calls, in seconds per call, after one warm-up call each.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctrbench.metrics import WEIGHTINGS, auc, evaluate_predictions, gauc  # noqa: E402


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="predictions (default 1,000,000)")
    ap.add_argument("--users", type=int, default=100_000, help="distinct users (default 100,000)")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per metric; the best is printed (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="score dtype (default float32)")
    a = ap.parse_args(argv)
    if a.n < 1 or a.users < 1 or a.repeat < 1:
        ap.error("--n, --users and --repeat must be positive")

    rng = np.random.default_rng(a.seed)
    users = rng.integers(0, a.users, a.n)
    labels = rng.integers(0, 2, a.n)
    scores = rng.random(a.n).astype(a.dtype)

    print(
        f"{a.n:,} predictions over {a.users:,} users, {a.dtype} scores, best of {a.repeat} "
        f"(numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs):"
    )
    print(f"  {'auc':<24} {best_of(lambda: auc(labels, scores), a.repeat):.3f} s")
    for w in WEIGHTINGS:
        secs = best_of(lambda: gauc(users, labels, scores, w), a.repeat)
        print(f"  {f'gauc ({w})':<24} {secs:.3f} s")
    secs = best_of(lambda: evaluate_predictions(users, labels, scores), a.repeat)
    print(f"  {'evaluate_predictions':<24} {secs:.3f} s")


if __name__ == "__main__":
    main()
