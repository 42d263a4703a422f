"""Statistics for the results table: mean ± std over seeds, RelaImpr (DIN paper Eq. 11) and
Welch's t-test of a row against the baseline row over seeds.

Welch's test (unequal variances) is ``scipy.stats.ttest_ind(a, b, equal_var=False)``:

    t = (mean_a − mean_b) / sqrt(s_a²/n_a + s_b²/n_b)
    dof = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))

with sample variances (ddof 1), and the two-sided p from Student's t with ``dof`` degrees of freedom.
Edge cases are decided here rather than left to scipy's NaN:

* fewer than 2 values on either side: no test (p is None, shown as "–");
* zero variance on both sides (every seed gave the same number): the t statistic is 0/0 or ±∞, so
  p = 1 when the two means are equal and p = 0 when they differ, flagged ``degenerate``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ctrbench.metrics import rela_impr as _rela_impr_eq11

#: significance marks: (threshold, mark), checked in order
MARKS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of ``a`` (a row's per-seed values) against ``b`` (the baseline row's)."""

    t: float | None
    dof: float | None
    p: float | None
    n_a: int
    n_b: int
    reason: str | None = None  # why there is no p, or why it is degenerate
    degenerate: bool = False  # zero variance on both sides

    @property
    def mark(self) -> str:
        return significance_mark(self.p)


def clean(values: Iterable) -> np.ndarray:
    """The finite values of ``values`` (None and NaN dropped) as a float array."""
    out = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    a = np.asarray(out, dtype=float)
    return a[np.isfinite(a)]


def mean_std(values: Iterable) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value; None for none)."""
    a = clean(values)
    if a.size == 0:
        return None, None
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's unequal-variance t-test of ``a`` against ``b`` (two-sided)."""
    x, y = clean(a), clean(b)
    nx, ny = int(x.size), int(y.size)
    if nx < 2 or ny < 2:
        return Welch(None, None, None, nx, ny, reason="fewer than 2 seeds")
    # identical seeds have zero variance exactly (np.var can leave ~1e-32 of rounding behind)
    flat_x, flat_y = bool(np.all(x == x[0])), bool(np.all(y == y[0]))
    vx = 0.0 if flat_x else float(x.var(ddof=1))
    vy = 0.0 if flat_y else float(y.var(ddof=1))
    if flat_x and flat_y:
        diff = float(x[0] - y[0])  # not x.mean() - y.mean(), which rounding can make non-zero
        if diff == 0.0:
            return Welch(0.0, None, 1.0, nx, ny, reason="zero variance on both sides, equal means", degenerate=True)
        return Welch(math.copysign(math.inf, diff), None, 0.0, nx, ny,
                     reason="zero variance on both sides, different means", degenerate=True)
    # scipy comes with scikit-learn; imported here to keep `import ctrbench.report.stats` light
    from scipy import stats

    with warnings.catch_warnings():  # scipy's "catastrophic cancellation" note on a side of identical seeds
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(x, y, equal_var=False)
    sx, sy = vx / nx, vy / ny
    dof = (sx + sy) ** 2 / (sx**2 / (nx - 1) + sy**2 / (ny - 1))
    return Welch(float(res.statistic), float(dof), float(res.pvalue), nx, ny)


def significance_mark(p: float | None) -> str:
    """``***`` p < 0.001, ``**`` p < 0.01, ``*`` p < 0.05, else ``""``."""
    if p is None or math.isnan(p):
        return ""
    for threshold, mark in MARKS:
        if p < threshold:
            return mark
    return ""


def format_p(p: float | None) -> str:
    """A p-value with its significance mark: ``0.012 *``, ``3.1e-05 ***``, ``0.41``; None → ``–``."""
    if p is None or math.isnan(p):
        return "–"
    if p == 0.0:
        text = "0"
    elif p < 0.001:
        text = f"{p:.1e}"
    else:
        text = f"{p:.3f}"
    mark = significance_mark(p)
    return f"{text} {mark}" if mark else text


def rela_impr(model: float | None, base: float | None) -> float | None:
    """RelaImpr (Eq. 11) in percent, or None when either value is missing / NaN or the base is 0.5
    (a random base model: the ratio is undefined)."""
    if model is None or base is None:
        return None
    model, base = float(model), float(base)
    if math.isnan(model) or math.isnan(base) or base == 0.5:
        return None
    return _rela_impr_eq11(model, base)


def rela_impr_per_seed(values: Sequence[float], base_mean: float | None) -> list[float]:
    """Each seed's RelaImpr against the baseline row's mean (the spread of these is the error bar of
    the RelaImpr plot; the baseline's own seed-to-seed spread is not included)."""
    out = [rela_impr(v, base_mean) for v in clean(values)]
    return [v for v in out if v is not None]
