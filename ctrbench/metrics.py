"""Metrics: AUC, user-weighted GAUC (DIN paper Eq. 10), logloss and RelaImpr (Eq. 11).

All vectorised with NumPy: one sort, then segment sums; no Python loop over users or samples.
AUC is tie-aware (tied scores get average ranks: the Mann-Whitney U statistic), so it equals
``sklearn.metrics.roc_auc_score``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctrbench.errors import UserError

WEIGHTINGS = ("impressions", "samples", "uniform", "positives")


def _validate(labels, scores, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise UserError(f"labels and {what} differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise UserError(f"cannot compute a metric on empty labels and {what}")
    if np.isnan(s).any():
        raise UserError(f"{what} contain NaN ({int(np.isnan(s).sum())} of {s.size})")
    yf = y.astype(np.float64)
    if not np.all((yf == 0) | (yf == 1)):
        bad = y[(yf != 0) & (yf != 1)][0]
        raise UserError(f"labels must be 0 or 1, found {bad!r}")
    return yf, s


def _average_ranks_sorted(s_sorted: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """1-based average ranks of already-sorted scores, restarting at each group start.

    ``group_start`` is a boolean mask marking the first element of each group (e.g. each user).
    Tied scores inside a group share the mean of the positions they span.
    """
    n = s_sorted.size
    new_tie = np.empty(n, dtype=bool)
    new_tie[0] = True
    new_tie[1:] = s_sorted[1:] != s_sorted[:-1]
    new_tie |= group_start
    tie_id = np.cumsum(new_tie) - 1
    tie_first = np.flatnonzero(new_tie)
    tie_last = np.append(tie_first[1:], n) - 1
    group_first_pos = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    # rank within group of the tie block's first and last members (1-based), averaged
    first_rank = tie_first - group_first_pos[tie_first] + 1
    last_rank = tie_last - group_first_pos[tie_first] + 1
    return ((first_rank + last_rank) / 2.0)[tie_id]


def _user_score_order(users: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The order that sorts rows by user, then score (what ``np.lexsort((scores, users))`` gives),
    via one sort of the scores and one sort of a single int64 key (about 2x faster)."""
    n = scores.size
    by_score = np.argsort(scores, kind="stable")
    s_sorted = scores[by_score]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = s_sorted[1:] != s_sorted[:-1]
    dense_rank = np.empty(n, dtype=np.int64)
    dense_rank[by_score] = np.cumsum(new) - 1
    u = np.asarray(users)
    if not np.issubdtype(u.dtype, np.integer) or (u.size and (u.min() < 0 or u.max() > (2**62) // max(n, 1))):
        return np.lexsort((scores, u))
    return np.argsort(u.astype(np.int64) * n + dense_rank, kind="stable")


def auc(labels, scores) -> float:
    """Tie-aware ROC AUC; ``nan`` when only one class is present."""
    y, s = _validate(labels, scores)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    start = np.zeros(s.size, dtype=bool)
    start[0] = True
    ranks = _average_ranks_sorted(s[order], start)
    return float((ranks[y[order] == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class GAUCResult:
    gauc: float
    n_users: int  # users that entered the average
    n_skipped: int  # users whose labels are all one class
    weighting: str


def gauc(users, labels, scores, weighting: str = "impressions") -> GAUCResult:
    """User-weighted AUC, DIN paper Eq. (10): sum_i w_i AUC_i / sum_i w_i over users i.

    ``weighting``: ``impressions`` (Eq. 10; w_i = the user's number of samples in the evaluated set;
    ``samples`` is the same), ``uniform`` (w_i = 1) or ``positives`` (w_i = the user's positives).
    Users whose labels are all one class have no AUC and are skipped (and counted).
    """
    if weighting not in WEIGHTINGS:
        raise UserError(f"unknown GAUC weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
    y, s = _validate(labels, scores)
    u = np.asarray(users).reshape(-1)
    if u.shape != y.shape:
        raise UserError(f"users and labels differ in length: {u.shape[0]} vs {y.shape[0]}")
    order = _user_score_order(u, s)
    u_s, y_s, s_s = u[order], y[order], s[order]
    start = np.empty(u_s.size, dtype=bool)
    start[0] = True
    start[1:] = u_s[1:] != u_s[:-1]
    ranks = _average_ranks_sorted(s_s, start)
    seg = np.flatnonzero(start)  # first row of each user
    n = np.diff(np.append(seg, u_s.size)).astype(np.float64)
    n_pos = np.add.reduceat(y_s, seg)
    n_neg = n - n_pos
    rank_pos = np.add.reduceat(ranks * y_s, seg)
    ok = (n_pos > 0) & (n_neg > 0)
    per_user = (rank_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    w = {"impressions": n, "samples": n, "uniform": np.ones_like(n), "positives": n_pos}[weighting][ok]
    value = float(np.sum(w * per_user) / np.sum(w)) if ok.any() else float("nan")
    return GAUCResult(gauc=value, n_users=int(ok.sum()), n_skipped=int((~ok).sum()), weighting=weighting)


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (DIN paper Eq. 2), probabilities clipped to [eps, 1 - eps]."""
    y, p = _validate(labels, probs, what="probabilities")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr, DIN paper Eq. (11), in percent: ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100."""
    if auc_base == 0.5:
        raise UserError("RelaImpr is undefined when the base model's AUC is 0.5 (division by zero)")
    return ((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0


def evaluate_predictions(users, labels, scores_prob, weighting: str = "impressions") -> dict:
    """AUC, GAUC and logloss of one split's predictions, as plain JSON-serialisable values."""
    g = gauc(users, labels, scores_prob, weighting)
    return {
        "auc": auc(labels, scores_prob),
        "gauc": g.gauc,
        "logloss": logloss(labels, scores_prob),
        "n": int(np.asarray(labels).size),
        "gauc_users": g.n_users,
        "gauc_skipped_users": g.n_skipped,
        "gauc_weighting": g.weighting,
    }
