"""Shared pieces of the property-based (hypothesis) tests: settings and a case counter.

Every fuzz test runs a fixed, derandomized set of examples (the same cases each run, so CI is
reproducible and the counts in docs/reliability.md hold); ``CTRBENCH_FUZZ_SCALE=10`` multiplies
the number of examples and ``CTRBENCH_FUZZ_RANDOM=1`` draws fresh ones, for a longer hunt.
``CTRBENCH_FUZZ_REPORT=<file.json>`` appends the number of cases each test tried, by outcome.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("CTRBENCH_FUZZ_SCALE", "1"))
RANDOM = bool(os.environ.get("CTRBENCH_FUZZ_RANDOM"))

CASES: dict[str, Counter] = defaultdict(Counter)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=timedelta(seconds=10),  # a hang (catastrophic regex, endless loop) fails the example
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


def count(test: str, outcome: str) -> None:
    CASES[test][outcome] += 1


def write_report() -> None:
    path = os.environ.get("CTRBENCH_FUZZ_REPORT")
    if not path or not CASES:
        return
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    for test, outcomes in CASES.items():
        old[test] = dict(outcomes)
    with open(path, "w") as f:
        json.dump(old, f, indent=2, sort_keys=True)
