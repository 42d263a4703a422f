"""Metrics pinned against hand-computed values, scikit-learn and a plain per-user loop
(DIN paper: GAUC Eq. 10, RelaImpr Eq. 11, logloss Eq. 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import ctrbench.metrics as metrics_module
from ctrbench.errors import UserError
from ctrbench.metrics import WEIGHTINGS, GAUCResult, auc, evaluate_predictions, gauc, logloss, rela_impr

# --------------------------------------------------------------------------------------------------
# references written out the slow, obvious way


def pairwise_auc(labels, scores) -> float:
    """Share of (positive, negative) pairs ordered right, ties counting 1/2."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y == 1], s[y == 0]
    won = 0.0
    for p in pos:
        for q in neg:
            won += 1.0 if p > q else 0.5 if p == q else 0.0
    return won / (len(pos) * len(neg))


def loop_gauc(users, labels, scores, weighting):
    """Eq. (10) with a Python loop over users."""
    rows: dict = {}
    for u, y, s in zip(users, labels, scores):
        rows.setdefault(u, []).append((y, s))
    num = den = 0.0
    used = skipped = 0
    for user_rows in rows.values():
        ys = [y for y, _ in user_rows]
        if len(set(ys)) < 2:
            skipped += 1
            continue
        w = {"impressions": len(ys), "samples": len(ys), "uniform": 1, "positives": sum(ys)}[weighting]
        num += w * pairwise_auc(ys, [s for _, s in user_rows])
        den += w
        used += 1
    return (num / den if den else math.nan), used, skipped


# --------------------------------------------------------------------------------------------------
# AUC


def test_auc_hand_computed():
    # pairs (pos, neg): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, 0.1) right, (0.8, 0.4) right -> 3/4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_auc_ties_count_one_half():
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    # pos 0.5 vs neg 0.2 -> 1, vs neg 0.5 -> 1/2: 1.5 / 2
    assert auc([0, 0, 1], [0.2, 0.5, 0.5]) == 0.75
    # everything tied -> 0.5 whatever the class balance
    assert auc([0, 1, 1, 1, 0], [0.3] * 5) == 0.5
    # -0.0 and +0.0 are the same score
    assert auc([0, 1], [-0.0, 0.0]) == 0.5
    assert auc(np.array([0, 1]), np.array([-0.0, 0.0], dtype=np.float32)) == 0.5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auc_equals_sklearn_with_many_ties(dtype):
    rng = np.random.default_rng(0)
    for levels in (2, 5, 30, 1000):
        y = rng.integers(0, 2, 5000)
        s = (rng.integers(0, levels, 5000) / levels).astype(dtype)
        assert abs(auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_equals_sklearn_on_scores_that_are_not_float32():
    # float64 scores that float32 cannot hold exactly take the dense-rank path
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.standard_normal(3000), 2) * 1e-3 + 1e-12 * rng.integers(0, 3, 3000)
    assert abs(auc(y, s) - roc_auc_score(y, s)) < 1e-9
    assert auc(y, s * 1e200) == pytest.approx(auc(y, s), abs=1e-12)  # beyond float32's range
    ints = rng.integers(-5, 5, 3000)
    assert abs(auc(y, ints) - roc_auc_score(y, ints)) < 1e-9


def test_auc_allows_infinite_scores():
    assert auc([0, 1, 0, 1], [-np.inf, np.inf, 0.3, 0.3]) == pytest.approx(pairwise_auc([0, 1, 0, 1], [-1e308, 1e308, 0.3, 0.3]))


def test_auc_one_class_is_nan():
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auc([0], [0.7]))


def test_auc_accepts_lists_bools_columns_and_array_likes():
    class FakeTensor:  # what np.asarray sees of a CPU torch tensor
        def __init__(self, values, dtype):
            self.values = np.asarray(values, dtype=dtype)

        def __array__(self, dtype=None, copy=None):
            return self.values if dtype is None else self.values.astype(dtype)

    expected = 0.75
    assert auc(np.array([False, False, True, True]), [0.1, 0.4, 0.35, 0.8]) == expected
    assert auc(np.array([[0], [0], [1], [1]]), np.array([[0.1], [0.4], [0.35], [0.8]])) == expected
    assert auc(FakeTensor([0, 0, 1, 1], np.float32), FakeTensor([0.1, 0.4, 0.35, 0.8], np.float32)) == expected


# --------------------------------------------------------------------------------------------------
# GAUC


def hand_users():
    """Three users, rows interleaved:

    user 7 : 2 impressions, 1 positive:  pos 0.9 > neg 0.2                              -> AUC 1
    user 3 : 5 impressions, 2 positives: pos 0.6 vs negs 0.6 / 0.4 / 0.1 -> 1/2 + 1 + 1,
                                         pos 0.3 vs negs 0.6 / 0.4 / 0.1 -> 0 + 0 + 1  -> AUC 3.5 / 6
    user 11: 3 impressions, all negative                                              -> skipped
    """
    users = [3, 7, 11, 3, 3, 11, 7, 3, 11, 3]
    labels = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    scores = [0.6, 0.9, 0.5, 0.6, 0.3, 0.5, 0.2, 0.4, 0.8, 0.1]
    return users, labels, scores


HAND_GAUC = {
    "impressions": (2 * 1.0 + 5 * 3.5 / 6) / 7,  # = 59/84, the paper's Eq. (10)
    "samples": (2 * 1.0 + 5 * 3.5 / 6) / 7,
    "uniform": (1.0 + 3.5 / 6) / 2,  # = 19/24
    "positives": (1 * 1.0 + 2 * 3.5 / 6) / 3,  # = 13/18
}


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_gauc_hand_computed_each_weighting(weighting):
    u, y, s = hand_users()
    r = gauc(u, y, s, weighting=weighting)
    assert isinstance(r, GAUCResult)
    assert r.gauc == pytest.approx(HAND_GAUC[weighting], abs=1e-12)
    assert (r.n_users, r.n_skipped, r.weighting) == (2, 1, weighting)
    assert r == GAUCResult(gauc=r.gauc, n_users=2, n_skipped=1, weighting=weighting)


def test_gauc_default_is_impressions_and_samples_is_an_alias():
    u, y, s = hand_users()
    assert gauc(u, y, s).gauc == gauc(u, y, s, "impressions").gauc == gauc(u, y, s, "samples").gauc
    assert gauc(u, y, s).weighting == "impressions"


def test_gauc_result_is_frozen():
    r = gauc(*hand_users())
    with pytest.raises(AttributeError):
        r.gauc = 1.0  # type: ignore[misc]


def test_gauc_skips_all_positive_users_too_and_is_nan_without_usable_users():
    u, y, s = hand_users()
    r = gauc(u + [99, 99], y + [1, 1], s + [0.1, 0.9])
    assert (r.n_users, r.n_skipped) == (2, 2)
    assert r.gauc == pytest.approx(HAND_GAUC["impressions"], abs=1e-12)
    none = gauc([1, 1, 2], [0, 0, 1], [0.3, 0.4, 0.5])
    assert math.isnan(none.gauc) and (none.n_users, none.n_skipped) == (0, 2)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("score_kind", ["float64-ties", "float32", "float64-dense"])
def test_gauc_equals_a_per_user_loop_with_ties(weighting, score_kind):
    rng = np.random.default_rng(1)
    n = 2000
    u = rng.integers(0, 80, n)
    y = rng.integers(0, 2, n)
    s = {
        "float64-ties": rng.integers(0, 8, n) / 8.0,
        "float32": (rng.integers(0, 50, n) / 50.0).astype(np.float32),
        "float64-dense": np.round(rng.random(n), 2) + 1e-13 * rng.integers(0, 2, n),
    }[score_kind]
    expected, used, skipped = loop_gauc(u.tolist(), y.tolist(), s.tolist(), weighting)
    r = gauc(u, y, s, weighting)
    assert abs(r.gauc - expected) < 1e-12
    assert (r.n_users, r.n_skipped) == (used, skipped)


def test_gauc_with_few_rows_per_user_matches_the_loop():
    # many users with 1-3 rows: lots of single-class users and segment boundaries
    rng = np.random.default_rng(4)
    u = rng.integers(0, 700, 1000)
    y = rng.integers(0, 2, 1000)
    s = rng.integers(0, 3, 1000) / 3.0
    expected, used, skipped = loop_gauc(u.tolist(), y.tolist(), s.tolist(), "impressions")
    r = gauc(u, y, s)
    assert abs(r.gauc - expected) < 1e-12 and (r.n_users, r.n_skipped) == (used, skipped)


def test_gauc_invariant_to_row_order_and_user_relabelling():
    rng = np.random.default_rng(2)
    n, n_users = 3000, 60
    u, y, s = rng.integers(0, n_users, n), rng.integers(0, 2, n), rng.integers(0, 20, n) / 20.0
    for weighting in WEIGHTINGS:
        base = gauc(u, y, s, weighting)
        p = rng.permutation(n)
        shuffled = gauc(u[p], y[p], s[p], weighting)
        assert abs(shuffled.gauc - base.gauc) < 1e-12
        assert (shuffled.n_users, shuffled.n_skipped) == (base.n_users, base.n_skipped)
        relabelled = [
            rng.permutation(n_users)[u],  # a permutation of the ids
            rng.permutation(n_users)[u] * 1_000_003 - 500_000,  # sparse and negative
            (u.astype(np.uint64) + np.uint64(1)) * np.uint64(2**57),  # huge: mapped through np.unique
            np.array([f"user-{i}" for i in range(n_users)])[u],  # strings
            u.astype(np.int8),
            u.astype(np.float64) + 0.5,
        ]
        for ids in relabelled:
            r = gauc(ids, y, s, weighting)
            assert abs(r.gauc - base.gauc) < 1e-12
            assert (r.n_users, r.n_skipped) == (base.n_users, base.n_skipped)


def test_gauc_wide_key_fallback_matches_the_packed_path(monkeypatch):
    rng = np.random.default_rng(5)
    u, y, s = rng.integers(0, 40, 800), rng.integers(0, 2, 800), rng.integers(0, 6, 800) / 6.0
    packed = gauc(u, y, s), auc(y, s)
    monkeypatch.setattr(metrics_module, "_MAX_KEY_BITS", 4)  # no key fits: lexsort path
    assert gauc(u, y, s).gauc == pytest.approx(packed[0].gauc, abs=1e-12)
    assert auc(y, s) == pytest.approx(packed[1], abs=1e-12)


# --------------------------------------------------------------------------------------------------
# logloss, RelaImpr, evaluate_predictions


def test_gauc_does_not_call_blas(monkeypatch):
    """The weighted mean is an element-wise product and a sum: np.dot would hand a large average to
    NumPy's OpenBLAS threads, which keep spinning after returning and slow the torch work after it."""

    def no_dot(*args, **kwargs):
        raise AssertionError("gauc called np.dot")

    monkeypatch.setattr(np, "dot", no_dot)
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30_000, 200_000)
    labels = rng.integers(0, 2, users.size)
    scores = rng.random(users.size).astype(np.float32)
    assert 0.49 < gauc(users, labels, scores).gauc < 0.51  # random scores


def test_logloss_hand_computed():
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, rel=1e-12)
    assert logloss([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-12)


def test_logloss_clips_to_eps():
    # a confident miss costs -log(eps), not infinity
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert logloss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-9)
    assert logloss([1, 0], np.array([1.0, 0.0], dtype=np.float32)) == pytest.approx(-math.log(1 - 1e-7), rel=1e-6)


def test_rela_impr_reproduces_the_papers_table3():
    # Amazon(Electro), DIN paper Table 3, against BaseModel 0.8624
    assert rela_impr(0.8818, 0.8624) == pytest.approx(5.35, abs=0.01)  # DIN
    assert rela_impr(0.7742, 0.8624) == pytest.approx(-24.34, abs=0.01)  # LR
    assert rela_impr(0.8871, 0.8624) == pytest.approx(6.82, abs=0.01)  # DIN with Dice
    # MovieLens: DIN 0.7337 against BaseModel 0.7300
    assert rela_impr(0.7337, 0.7300) == pytest.approx(1.61, abs=0.01)
    assert rela_impr(0.8624, 0.8624) == 0.0
    assert isinstance(rela_impr(np.float32(0.8818), np.float64(0.8624)), float)


def test_evaluate_predictions_is_json_ready_and_matches_the_functions():
    u, y, s = hand_users()
    m = evaluate_predictions(u, y, s)
    assert set(m) == {"auc", "gauc", "logloss", "n", "gauc_users", "gauc_skipped_users", "gauc_weighting"}
    assert json.loads(json.dumps(m)) == m
    assert [type(m[k]) for k in ("auc", "gauc", "logloss", "n", "gauc_users", "gauc_skipped_users", "gauc_weighting")] == [
        float, float, float, int, int, int, str,
    ]
    assert m["auc"] == auc(y, s)
    assert m["gauc"] == pytest.approx(HAND_GAUC["impressions"], abs=1e-12)
    assert m["logloss"] == logloss(y, s)
    assert (m["n"], m["gauc_users"], m["gauc_skipped_users"], m["gauc_weighting"]) == (10, 2, 1, "impressions")
    assert evaluate_predictions(u, y, np.asarray(s, dtype=np.float32), weighting="uniform")["gauc"] == pytest.approx(
        HAND_GAUC["uniform"], abs=1e-7
    )


# --------------------------------------------------------------------------------------------------
# bad inputs: a UserError whose message names the problem


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: auc([0, 1], [0.1]), r"labels and scores differ in length: 2 vs 1"),
        (lambda: auc([], []), r"empty"),
        (lambda: auc([0, 2], [0.1, 0.2]), r"labels must be 0 or 1, found 2"),
        (lambda: auc([0, float("nan")], [0.1, 0.2]), r"labels must be 0 or 1, found nan"),
        (lambda: auc(["a", "b"], [0.1, 0.2]), r"labels must be numeric"),
        (lambda: auc([0, 1], [0.1, float("nan")]), r"scores contain NaN \(1 of 2"),
        (lambda: auc([0, 1], ["x", "y"]), r"scores must be real numbers"),
        (lambda: gauc([1, 2], [0, 1], [0.1, 0.2], weighting="clicks"), r"unknown GAUC weighting 'clicks': expected one of impressions, samples, uniform, positives"),
        (lambda: gauc([1], [0, 1], [0.1, 0.2]), r"users and labels differ in length: 1 vs 2"),
        (lambda: gauc([1.0, float("nan")], [0, 1], [0.1, 0.2]), r"users contain NaN"),
        (lambda: gauc([], [], []), r"empty"),
        (lambda: gauc([1, 1], [0, 1], [0.1, float("nan")]), r"NaN"),
        (lambda: logloss([0, 1], [0.2, 1.5]), r"probabilities must lie in \[0, 1\]"),
        (lambda: logloss([0, 1], [0.2, 0.5], eps=0.0), r"eps must lie in \(0, 0.5\), got 0.0"),
        (lambda: logloss([0, 1], [0.2]), r"labels and probabilities differ in length"),
        (lambda: rela_impr(0.7, 0.5), r"auc_base=0.5.*division by zero"),
        (lambda: evaluate_predictions([1, 2], [0, 1], [0.1, 0.2], weighting="Impressions"), r"unknown GAUC weighting 'Impressions'"),
        (lambda: evaluate_predictions([1, 2], [0, 1], [-0.1, 0.2]), r"probabilities must lie in \[0, 1\]"),
    ],
)
def test_bad_inputs_raise_user_error(call, match):
    with pytest.raises(UserError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
