"""Metrics pinned against hand-computed values and scikit-learn (DIN paper Eqs. 10-11)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ctrbench.errors import UserError
from ctrbench.metrics import auc, evaluate_predictions, gauc, logloss, rela_impr


def test_auc_hand_computed():
    # pairs (pos, neg): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, 0.1) ok, (0.8, 0.4) ok -> 3/4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # a tie between a positive and a negative counts one half
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert auc([0, 0, 1], [0.2, 0.5, 0.5]) == 0.75


def test_auc_equals_sklearn_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 5000)
        s = rng.integers(0, 30, 5000) / 30.0
        assert abs(auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_one_class_is_nan():
    assert np.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))


def hand_users():
    # user a: 3 impressions (2 pos, 1 neg), per-user AUC: pos 0.9 > neg 0.5, pos 0.3 < 0.5 -> 0.5
    # user b: 4 impressions (1 pos, 3 neg), pos 0.6 beats 0.2, ties 0.6, loses to 0.7 -> (1 + .5 + 0)/3 = 0.5
    # user c: 2 impressions, both positive -> skipped
    users = ["a", "a", "a", "b", "b", "b", "b", "c", "c"]
    labels = [1, 1, 0, 1, 0, 0, 0, 1, 1]
    scores = [0.9, 0.3, 0.5, 0.6, 0.2, 0.6, 0.7, 0.1, 0.2]
    return users, labels, scores


def test_gauc_hand_computed_each_weighting():
    u, y, s = hand_users()
    # a: AUC 0.5 (3 impressions, 2 positives); b: AUC 0.5 (4 impressions, 1 positive)
    for w in ("impressions", "samples", "uniform", "positives"):
        r = gauc(u, y, s, weighting=w)
        assert r.gauc == pytest.approx(0.5) and r.n_users == 2 and r.n_skipped == 1 and r.weighting == w
    # make user b perfect: weights now matter
    s2 = list(s)
    s2[3] = 0.95  # b: AUC 1.0
    assert gauc(u, y, s2, "impressions").gauc == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)
    assert gauc(u, y, s2, "uniform").gauc == pytest.approx((0.5 + 1.0) / 2)
    assert gauc(u, y, s2, "positives").gauc == pytest.approx((2 * 0.5 + 1 * 1.0) / 3)


def reference_gauc(u, y, s):
    num = den = 0.0
    for _, g in pd.DataFrame({"u": u, "y": y, "s": s}).groupby("u"):
        if g.y.nunique() == 2:
            num += len(g) * roc_auc_score(g.y, g.s)
            den += len(g)
    return num / den


def test_gauc_equals_a_per_user_loop_with_ties():
    rng = np.random.default_rng(1)
    u = rng.integers(0, 120, 4000)
    y = rng.integers(0, 2, 4000)
    s = rng.integers(0, 10, 4000) / 10.0
    assert abs(gauc(u, y, s).gauc - reference_gauc(u, y, s)) < 1e-12


def test_gauc_invariant_to_row_order_and_user_relabelling():
    rng = np.random.default_rng(2)
    u, y, s = rng.integers(0, 50, 1000), rng.integers(0, 2, 1000), rng.random(1000)
    base = gauc(u, y, s).gauc
    p = rng.permutation(1000)
    assert gauc(u[p], y[p], s[p]).gauc == pytest.approx(base, abs=1e-12)
    relabel = rng.permutation(50)[u] * 1000 + 7
    assert gauc(relabel, y, s).gauc == pytest.approx(base, abs=1e-12)
    assert gauc(u.astype(str), y, s).gauc == pytest.approx(base, abs=1e-12)


def test_logloss_hand_computed():
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))  # clipped


def test_rela_impr_reproduces_the_papers_table3():
    # Amazon(Electro): DIN 0.8818 and LR 0.7742 against BaseModel 0.8624 (DIN paper Table 3)
    assert rela_impr(0.8818, 0.8624) == pytest.approx(5.35, abs=0.01)
    assert rela_impr(0.7742, 0.8624) == pytest.approx(-24.34, abs=0.01)
    assert rela_impr(0.8871, 0.8624) == pytest.approx(6.82, abs=0.01)
    # MovieLens: DIN 0.7337 against BaseModel 0.7300
    assert rela_impr(0.7337, 0.7300) == pytest.approx(1.61, abs=0.01)


def test_evaluate_predictions_is_json_ready():
    u, y, s = hand_users()
    m = evaluate_predictions(u, y, s)
    assert set(m) == {"auc", "gauc", "logloss", "n", "gauc_users", "gauc_skipped_users", "gauc_weighting"}
    assert isinstance(m["gauc"], float) and m["n"] == 9 and m["gauc_skipped_users"] == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: auc([0, 1], [0.1]), "differ in length"),
        (lambda: auc([], []), "empty"),
        (lambda: auc([0, 2], [0.1, 0.2]), "labels must be 0 or 1"),
        (lambda: auc([0, 1], [0.1, float("nan")]), "NaN"),
        (lambda: gauc([1, 2], [0, 1], [0.1, 0.2], weighting="clicks"), "unknown GAUC weighting 'clicks'"),
        (lambda: gauc([1], [0, 1], [0.1, 0.2]), "users and labels differ"),
        (lambda: rela_impr(0.7, 0.5), "0.5"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(UserError, match=match):
        call()
