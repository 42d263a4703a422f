"""Evaluation ranks logits, not float32 probabilities: sigmoid(z) is exactly 1.0 in float32 for every
z above about 16.7, so a confident model's probabilities tie where its logits do not (issue 22,
item 3). Logloss comes from the logits too, exactly, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ctrbench.data.batches import Batcher
from ctrbench.metrics import auc, gauc
from ctrbench.models.base import ModelOutput
from ctrbench.train.evaluate import evaluate, predict


class Confident(nn.Module):
    """Logits 17 ... 23: 17 + (item mod 5), two more for a click. All their float32 sigmoids are 1.0."""

    def forward(self, batch):
        return ModelOutput(logits=17.0 + (batch.item % 5).float() + 2.0 * batch.label)


def _logits(b: Batcher) -> np.ndarray:
    return (17.0 + (b.item % 5).double() + 2.0 * b.label.double()).numpy()


def _brute_auc(y: np.ndarray, z: np.ndarray) -> float:
    pos, neg = z[y == 1], z[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def _logloss64(y: np.ndarray, z: np.ndarray) -> float:
    # -log sigmoid(z) for a click, -log(1 - sigmoid(z)) otherwise, one row at a time in Python floats
    total = 0.0
    for yi, zi in zip(y.tolist(), z.tolist()):
        m = -zi if yi == 1 else zi
        total += max(m, 0.0) + math.log1p(math.exp(-abs(m)))
    return total / len(z)


def test_evaluation_ranks_confident_logits_without_ties(tiny_dataset):
    b = Batcher(tiny_dataset, "test", 64, 20)
    assert bool((torch.sigmoid(torch.tensor(_logits(b), dtype=torch.float32)) == 1.0).all())  # the float32 trap
    y, z = b.label.numpy().astype(np.int64), _logits(b)
    metrics, _ = evaluate(Confident(), b, torch.device("cpu"), "impressions")
    want_auc = _brute_auc(y, z)
    assert 0.6 < want_auc < 1.0
    assert metrics["auc"] == pytest.approx(want_auc, abs=1e-12)  # 0.5 from float32 probabilities: all tied
    assert metrics["gauc"] == pytest.approx(gauc(b.user.numpy(), y, z).gauc, abs=1e-12)
    assert metrics["gauc"] > 0.6
    # exact: a negative at z costs about z (17 ... 21), not the clipped -log(1e-7) = 16.1
    assert metrics["logloss"] == pytest.approx(_logloss64(y, z), rel=1e-12)


def test_predicted_probabilities_come_from_the_logits(tiny_dataset):
    b = Batcher(tiny_dataset, "test", 64, 20)
    p = predict(Confident(), b, torch.device("cpu"))
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-_logits(b))), rtol=0, atol=1e-15)
    assert (p < 1.0).all()  # float64: below 1 up to logits of about 36


def test_evaluate_logits_matches_rankings_and_a_float64_logloss():
    from ctrbench.metrics import evaluate_logits, evaluate_predictions, logloss, logloss_from_logits

    z = np.arange(17, 26, dtype=np.float32)  # sigmoid: all exactly 1.0 in float32
    y = np.array([0, 1, 0, 0, 1, 1, 0, 1, 1])
    users = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2])
    m = evaluate_logits(users, y, z)
    assert m["auc"] == pytest.approx(_brute_auc(y, z.astype(np.float64)), abs=1e-15) == pytest.approx(15 / 20)
    assert evaluate_predictions(users, y, torch.sigmoid(torch.from_numpy(z)).numpy())["auc"] == 0.5  # the float32 ties
    assert m["gauc"] == pytest.approx((4 * (1 / 3) + 5 * (2 / 4)) / 9, abs=1e-15)  # user 1: 1 of 3 pairs; user 2: 2 of 4
    assert m["logloss"] == pytest.approx(_logloss64(y, z.astype(np.float64)), rel=1e-14)
    assert set(m) == {"auc", "gauc", "logloss", "n", "gauc_users", "gauc_skipped_users", "gauc_weighting"}
    # large logits: finite and exact, either way round
    big = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0, 1000.0])
    yb = np.array([1, 0, 1, 1, 0, 1])
    assert logloss_from_logits(yb, big) == pytest.approx(_logloss64(yb, big), rel=1e-14)
    assert math.isfinite(logloss_from_logits(yb, big))
    assert logloss_from_logits([1, 0], [float("inf"), float("-inf")]) == 0.0
    # moderate logits: the probabilities' logloss, and the same AUC and GAUC
    rng = np.random.default_rng(0)
    zr = rng.normal(0, 3, 500).astype(np.float32)
    yr = rng.integers(0, 2, 500)
    ur = rng.integers(0, 20, 500)
    pr = 1.0 / (1.0 + np.exp(-zr.astype(np.float64)))
    assert logloss_from_logits(yr, zr) == pytest.approx(logloss(yr, pr), rel=1e-9)
    a, b = evaluate_logits(ur, yr, zr), evaluate_predictions(ur, yr, pr)
    assert (a["auc"], a["gauc"]) == pytest.approx((b["auc"], b["gauc"]), abs=1e-12)
    assert a["auc"] == pytest.approx(auc(yr, zr), abs=0)
