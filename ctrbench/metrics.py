"""Evaluation metrics of the DIN paper (Zhou et al., KDD 2018): AUC, user-weighted GAUC (Eq. 10),
logloss (the objective of Eq. 2) and RelaImpr (Eq. 11).

Everything is vectorised with NumPy; there is no Python loop over users or samples.

How AUC and GAUC are computed. AUC is the Mann-Whitney U statistic: over all (positive, negative)
pairs, a pair counts 1 when the positive scores higher and 1/2 when the two scores tie, so it equals
``sklearn.metrics.roc_auc_score``. For GAUC every row is packed into one int64 key
``(user code, score code, label)`` whose integer order is the (user, score) order, and the keys are
sorted once (``np.sort`` of int64 is a SIMD sort, several times faster than ``np.lexsort``). Runs of
equal ``(user, score)`` are the tie blocks; a positive in a block spanning sorted positions a..b
gets the average rank (a + b) / 2 within its user, and per-user sums come from cumulative sums and
``np.add.reduceat`` over the user segments. The score code is the order-preserving bit pattern of
the float32 score when every score is exactly a float32 (model outputs are), otherwise the dense
rank of the score among all distinct scores; user codes are ``id - min(id)`` for integer ids or
the ``np.unique`` inverse for anything else. When a key would not fit in 63 bits the code falls
back to ``np.lexsort``.

Inputs may be NumPy arrays or anything ``np.asarray`` accepts (lists, CPU torch tensors); they
are flattened to 1-D. Integer scores are treated as float64.

Logits, not probabilities, for model outputs. In float32, sigmoid(z) rounds to exactly 1.0 for
every z above about 16.6 (and to ever coarser steps well before), so ranking a confident model's
float32 probabilities invents ties that its logits do not have. AUC and GAUC depend only on the
order of the scores, and the sigmoid is increasing, so :func:`evaluate_logits` ranks the logits
themselves, and computes logloss from them in float64 as softplus(-z) for a click and softplus(z)
otherwise (:func:`logloss_from_logits`): exact, finite for every finite logit, no clipping.
Training and evaluation (``ctrbench.train.evaluate``) use it; :func:`evaluate_predictions` remains
for true probabilities (the synthetic data's oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ctrbench.errors import UserError

__all__ = [
    "WEIGHTINGS", "GAUCResult", "auc", "gauc", "logloss", "logloss_from_logits", "rela_impr", "evaluate_predictions",
    "evaluate_logits",
]

#: GAUC weightings: w_i for user i in Eq. (10). ``impressions`` is the paper's; ``samples`` is an alias.
WEIGHTINGS: tuple[str, ...] = ("impressions", "samples", "uniform", "positives")

_MAX_KEY_BITS = 63  # packed keys are non-negative int64


# --------------------------------------------------------------------------------------------------
# validation


def _as_1d(x: ArrayLike, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise UserError(f"{name} cannot be read as an array: {e}") from None
    return a.reshape(-1)


def _labels(labels: ArrayLike) -> np.ndarray:
    """Labels as an int64 array of 0/1."""
    y = _as_1d(labels, "labels")
    if y.dtype.kind not in "biuf":
        raise UserError(f"labels must be numeric 0 or 1, got an array of dtype {y.dtype}")
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    bad = (y != 0) & (y != 1)  # NaN is bad too
    if bad.any():
        first = y[np.flatnonzero(bad)[0]].item()
        raise UserError(f"labels must be 0 or 1, found {first!r} ({int(bad.sum())} of {y.size} labels)")
    return y.astype(np.int64)


def _scores(scores: ArrayLike, name: str) -> np.ndarray:
    """Scores as a float32 (kept as given) or float64 array without NaN."""
    s = _as_1d(scores, name)
    if s.dtype.kind in "biu" or s.dtype == np.float16:
        s = s.astype(np.float64)
    elif s.dtype.kind == "O":
        try:
            s = s.astype(np.float64)
        except (TypeError, ValueError):
            raise UserError(f"{name} must be numbers, got non-numeric values") from None
    elif s.dtype.kind != "f":
        raise UserError(f"{name} must be real numbers, got an array of dtype {s.dtype}")
    elif s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)  # longdouble
    n_nan = int(np.count_nonzero(np.isnan(s)))
    if n_nan:
        raise UserError(f"{name} contain NaN ({n_nan} of {s.size} values)")
    return s


def _validate(labels: ArrayLike, scores: ArrayLike, metric: str, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    y = _as_1d(labels, "labels")
    s = _as_1d(scores, name)
    if y.size != s.size:
        raise UserError(f"labels and {name} differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise UserError(f"cannot compute {metric} on empty inputs (0 labels and 0 {name})")
    return _labels(y), _scores(s, name)


# --------------------------------------------------------------------------------------------------
# integer codes whose order is the order of the scores / users


def _score_codes(s: np.ndarray) -> tuple[np.ndarray, int]:
    """(codes, bits): non-negative int64 codes with codes[i] < codes[j] iff s[i] < s[j] (equal iff
    equal), and the number of bits they need."""
    if s.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            s32 = s.astype(np.float32)
        exact = bool(np.array_equal(s32, s))
    else:
        s32, exact = s, True
    if exact:
        # IEEE-754 order-preserving map of float32 bit patterns onto [0, 2**32); adding +0.0 turns
        # -0.0 into +0.0 so the two (equal) zeros get one code.
        bits = (s32 + np.float32(0.0)).view(np.uint32).astype(np.int64)
        codes = np.where(bits >= 1 << 31, (1 << 32) - 1 - bits, bits + (1 << 31))
        return codes, 32
    order = np.argsort(s)
    s_sorted = s[order]
    new = np.empty(s.size, dtype=np.int64)
    new[0] = 0
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=new[1:], casting="unsafe")
    codes = np.empty(s.size, dtype=np.int64)
    codes[order] = np.cumsum(new)
    n_distinct = int(codes[order[-1]]) + 1
    return codes, max(1, (n_distinct - 1).bit_length())


def _user_codes(u: np.ndarray, room: int) -> tuple[np.ndarray, int]:
    """(codes, bits): non-negative int64 codes, equal iff the user ids are equal. ``room`` is the
    number of bits the codes may take; integer ids spanning more are mapped through ``np.unique``."""
    if u.dtype.kind == "b":
        u = u.astype(np.int64)
    if u.dtype.kind in "iu":
        lo, hi = u.min(), u.max()
        span = int(hi) - int(lo)
        if span.bit_length() <= room:
            if u.dtype.kind == "u" and u.dtype.itemsize == 8:
                codes = (u - lo).astype(np.int64)
            else:
                codes = u.astype(np.int64) - int(lo)
            return codes, max(1, span.bit_length())
    elif u.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(u)))
        if n_nan:
            raise UserError(f"users contain NaN ({n_nan} of {u.size} ids)")
    try:
        uniq, inverse = np.unique(u, return_inverse=True)
    except TypeError:
        raise UserError(f"user ids must be mutually comparable (numbers or strings), got dtype {u.dtype}") from None
    return inverse.reshape(-1).astype(np.int64), max(1, (uniq.size - 1).bit_length())


# --------------------------------------------------------------------------------------------------
# the shared core: tie-aware Mann-Whitney U per user segment


@dataclass(frozen=True)
class _Segments:
    n: np.ndarray  # int64, rows per user
    n_pos: np.ndarray  # int64, positives per user
    two_u: np.ndarray  # int64, 2 * Mann-Whitney U per user (pairs won, ties counting 1/2)


def _segment_u(user_start: np.ndarray, tie_start: np.ndarray, lab: np.ndarray) -> _Segments:
    """Per-user U statistics of rows already sorted by (user, score).

    ``user_start[k]`` marks the first row of each user, ``tie_start[k]`` the first row of each run
    of equal (user, score) (so it includes every ``user_start``), ``lab`` the sorted 0/1 labels.
    With 0-based sorted positions, a positive in a tie block spanning a..b has rank
    (a + b) / 2 - first_u + 1 within user u, and U_u = sum of positives' ranks - P_u (P_u + 1) / 2.
    Everything is kept in exact int64 arithmetic, doubled to avoid halves.
    """
    n = lab.size
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lab, out=cum[1:])
    block_first = np.flatnonzero(tie_start)
    block_end = np.empty_like(block_first)  # exclusive
    block_end[:-1] = block_first[1:]
    block_end[-1] = n
    pos_in_block = cum[block_end] - cum[block_first]
    twice_rank_sum = pos_in_block * (block_first + block_end - 1)  # sum over positives of (a + b)
    user_blocks = np.flatnonzero(user_start[block_first])
    per_user = np.add.reduceat(twice_rank_sum, user_blocks)
    first = block_first[user_blocks]
    end = np.empty_like(first)
    end[:-1] = first[1:]
    end[-1] = n
    n_pos = cum[end] - cum[first]
    two_u = per_user - 2 * n_pos * (first - 1) - n_pos * (n_pos + 1)
    return _Segments(n=end - first, n_pos=n_pos, two_u=two_u)


def _segments_by_user(user_codes: np.ndarray | None, user_bits: int, y: np.ndarray, codes: np.ndarray, score_bits: int) -> _Segments:
    """Sort rows by (user, score) and return the per-user U statistics (one user when
    ``user_codes`` is None)."""
    n = y.size
    if user_codes is None:
        user_bits = 0
    if user_bits + score_bits + 1 <= _MAX_KEY_BITS:
        key = codes << 1
        key |= y
        if user_codes is not None:
            key |= user_codes << (score_bits + 1)
        key.sort()
        # Neighbouring keys that differ above the label bit start a new tie block; above the score
        # bits, a new user.
        diff = key[1:] ^ key[:-1]
        tie_start = np.empty(n, dtype=bool)
        tie_start[0] = True
        np.greater(diff, 1, out=tie_start[1:])
        user_start = np.zeros(n, dtype=bool)
        user_start[0] = True
        if user_codes is not None:
            np.greater_equal(diff, 1 << (score_bits + 1), out=user_start[1:])
        del diff
        key &= 1  # the labels, in sorted order
        return _segment_u(user_start, tie_start, key)
    # Too wide to pack (more than ~2**30 rows): sort the columns lexicographically instead.
    order = np.lexsort((codes, user_codes)) if user_codes is not None else np.argsort(codes, kind="stable")
    c = codes[order]
    user_start = np.zeros(n, dtype=bool)
    user_start[0] = True
    if user_codes is not None:
        uc = user_codes[order]
        np.not_equal(uc[1:], uc[:-1], out=user_start[1:])
    tie_start = user_start.copy()
    tie_start[1:] |= c[1:] != c[:-1]
    return _segment_u(user_start, tie_start, y[order])


# --------------------------------------------------------------------------------------------------
# public API


def _auc_from_codes(y: np.ndarray, codes: np.ndarray, score_bits: int) -> float:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    seg = _segments_by_user(None, 0, y, codes, score_bits)
    return float(int(seg.two_u[0]) / (2.0 * n_pos * n_neg))


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Tie-aware ROC AUC: the share of (positive, negative) pairs whose positive scores higher,
    ties counting one half (Mann-Whitney U / (P * N)); equals ``sklearn.metrics.roc_auc_score``.

    The DIN paper reports it next to GAUC (Eq. 10, which averages it per user). Returns ``nan`` when
    only one class is present (AUC is undefined there; sklearn raises instead). Raises
    :class:`UserError` on inputs of different lengths, empty inputs, labels other than 0/1 and
    scores containing NaN. Infinite scores are allowed (they only need an order).
    """
    y, s = _validate(labels, scores, "AUC")
    codes, bits = _score_codes(s)
    return _auc_from_codes(y, codes, bits)


@dataclass(frozen=True)
class GAUCResult:
    """GAUC (DIN paper Eq. 10) and what entered it."""

    gauc: float  #: sum_i w_i AUC_i / sum_i w_i; nan when no user has both classes
    n_users: int  #: users that entered the average (both classes present)
    n_skipped: int  #: users skipped because all their labels are one class
    weighting: str  #: the w_i used: one of WEIGHTINGS


def _gauc_from_codes(users: ArrayLike, y: np.ndarray, codes: np.ndarray, score_bits: int, weighting: str) -> GAUCResult:
    u = _as_1d(users, "users")
    if u.size != y.size:
        raise UserError(f"users and labels differ in length: {u.size} vs {y.size}")
    user_codes, user_bits = _user_codes(u, _MAX_KEY_BITS - score_bits - 1)
    seg = _segments_by_user(user_codes, user_bits, y, codes, score_bits)
    n_neg = seg.n - seg.n_pos
    ok = (seg.n_pos > 0) & (n_neg > 0)
    n_users = int(np.count_nonzero(ok))
    n_skipped = int(ok.size - n_users)
    if n_users == 0:
        return GAUCResult(gauc=float("nan"), n_users=0, n_skipped=n_skipped, weighting=weighting)
    n_pos = seg.n_pos[ok].astype(np.float64)
    per_user_auc = seg.two_u[ok] / (2.0 * n_pos * n_neg[ok])
    if weighting in ("impressions", "samples"):
        w = seg.n[ok].astype(np.float64)
    elif weighting == "positives":
        w = n_pos
    else:  # uniform
        w = np.ones(n_users)
    # an element-wise product and a pairwise sum, not np.dot: NumPy's OpenBLAS runs a dot product of
    # this size on its own threads, which then spin for about 0.1 s of CPU after returning, taking a
    # core from whatever torch runs next (measured: a DIN evaluation pass right after ran 28% slower)
    return GAUCResult(gauc=float((w * per_user_auc).sum() / w.sum()), n_users=n_users, n_skipped=n_skipped, weighting=weighting)


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise UserError(f"unknown GAUC weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")


def gauc(users: ArrayLike, labels: ArrayLike, scores: ArrayLike, weighting: str = "impressions") -> GAUCResult:
    """Group (user-weighted) AUC, DIN paper Eq. (10)::

        GAUC = sum_i w_i * AUC_i / sum_i w_i

    over users i, where AUC_i is the tie-aware AUC (see :func:`auc`) of user i's rows and w_i is

    - ``"impressions"`` (default, the paper's): the user's number of impressions, i.e. of rows in
      the evaluated set;
    - ``"samples"``: the same number (an alias giving an identical result);
    - ``"uniform"``: 1 (the unweighted mean of the per-user AUCs);
    - ``"positives"``: the user's number of positive rows (clicks).

    Users whose labels are all 0 or all 1 have no AUC: they are skipped and counted in
    ``n_skipped``. When no user has both classes, ``gauc`` is ``nan``. User ids may be any
    integers, or any mutually comparable values (strings, floats without NaN).

    Raises :class:`UserError` for an unknown weighting and for the input problems listed in
    :func:`auc` (or users of another length than the labels).
    """
    _check_weighting(weighting)
    y, s = _validate(labels, scores, "GAUC")
    codes, bits = _score_codes(s)
    return _gauc_from_codes(users, y, codes, bits, weighting)


def _logloss(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    if not 0.0 < eps < 0.5:
        raise UserError(f"logloss eps must lie in (0, 0.5), got {eps!r}")
    lo, hi = float(p.min()), float(p.max())
    if lo < 0.0 or hi > 1.0:
        raise UserError(
            f"probabilities must lie in [0, 1], got values in [{lo:.6g}, {hi:.6g}] (logits instead of sigmoid outputs?)"
        )
    q = np.clip(p.astype(np.float64), eps, 1.0 - eps)
    return float(-np.mean(np.where(y == 1, np.log(q), np.log1p(-q))))


def logloss(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, the negative log-likelihood the DIN paper trains on (Eq. 2)::

        -1/N * sum_n [ y_n log p_n + (1 - y_n) log(1 - p_n) ]

    with ``p`` clipped to ``[eps, 1 - eps]`` so that a confident miss costs a finite amount.
    Raises :class:`UserError` on the input problems listed in :func:`auc` and on probabilities
    outside [0, 1] (usually logits passed by mistake).
    """
    y, p = _validate(labels, probs, "logloss", name="probabilities")
    return _logloss(y, p, eps)


def _logloss_logits(y: np.ndarray, z: np.ndarray) -> float:
    # -log sigmoid(z) = softplus(-z) for a click, -log(1 - sigmoid(z)) = softplus(z) otherwise;
    # np.logaddexp(0, x) is softplus without overflow, in float64 (one array, worked on in place)
    x = z.astype(np.float64)
    np.negative(x, out=x, where=y == 1)
    np.logaddexp(0.0, x, out=x)
    return float(x.mean())


def logloss_from_logits(labels: ArrayLike, logits: ArrayLike) -> float:
    """The logloss of :func:`logloss` from logits z (p = sigmoid(z)), computed stably in float64::

        -1/N * sum_n [ y_n log sigmoid(z_n) + (1 - y_n) log sigmoid(-z_n) ]

    Exact, without clipping: a confident miss with logit z costs about |z|, which is finite for
    every finite logit (an infinite logit on the wrong side costs infinity). Raises
    :class:`UserError` on the input problems listed in :func:`auc`.
    """
    y, z = _validate(labels, logits, "logloss", name="logits")
    return _logloss_logits(y, z)


def rela_impr(auc_model: float, auc_base: float) -> float:
    """Relative improvement over a base model, DIN paper Eq. (11), in percent::

        RelaImpr = ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100

    e.g. 5.35 for +5.35% (DIN 0.8818 against BaseModel 0.8624 on Amazon, Table 3). Works the same
    for GAUC values. Returns ``nan`` if either value is ``nan``; raises :class:`UserError` when
    ``auc_base`` is 0.5 (a random base model: division by zero).
    """
    model, base = float(auc_model), float(auc_base)
    if base == 0.5:
        raise UserError(f"RelaImpr (Eq. 11) is undefined for auc_base={auc_base!r}: AUC_base - 0.5 is 0 (division by zero)")
    return ((model - 0.5) / (base - 0.5) - 1.0) * 100.0


def evaluate_predictions(users: ArrayLike, labels: ArrayLike, scores_prob: ArrayLike, weighting: str = "impressions") -> dict[str, Any]:
    """AUC, GAUC (Eq. 10) and logloss (Eq. 2) of one split's predicted click probabilities.

    Returns plain, JSON-serialisable values::

        {"auc": float, "gauc": float, "logloss": float, "n": int,
         "gauc_users": int, "gauc_skipped_users": int, "gauc_weighting": str}

    ``auc`` and ``gauc`` may be ``nan`` (see :func:`auc` and :func:`gauc`). The inputs are
    validated and the scores encoded once for all three metrics.
    """
    _check_weighting(weighting)
    y, p = _validate(labels, scores_prob, "metrics", name="probabilities")
    return _evaluate(users, y, p, weighting, _logloss(y, p, 1e-7))


def evaluate_logits(users: ArrayLike, labels: ArrayLike, logits: ArrayLike, weighting: str = "impressions") -> dict[str, Any]:
    """The metrics of :func:`evaluate_predictions` from a model's logits z (p = sigmoid(z)), the same
    dict. AUC and GAUC rank the logits (the sigmoid preserves order, so they are the AUC and GAUC of
    the exact probabilities, without the ties that float32 sigmoid outputs of confident predictions
    have); logloss is :func:`logloss_from_logits`. Raises :class:`UserError` as :func:`auc` does.
    """
    _check_weighting(weighting)
    y, z = _validate(labels, logits, "metrics", name="logits")
    return _evaluate(users, y, z, weighting, _logloss_logits(y, z))


def _evaluate(users: ArrayLike, y: np.ndarray, s: np.ndarray, weighting: str, loss: float) -> dict[str, Any]:
    codes, bits = _score_codes(s)
    g = _gauc_from_codes(users, y, codes, bits, weighting)
    return {
        "auc": _auc_from_codes(y, codes, bits),
        "gauc": g.gauc,
        "logloss": loss,
        "n": int(y.size),
        "gauc_users": g.n_users,
        "gauc_skipped_users": g.n_skipped,
        "gauc_weighting": g.weighting,
    }
