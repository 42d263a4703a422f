"""Dice (DIN paper Eq. 9) and PReLU (Eq. 8) pinned against hand-computed values."""

from __future__ import annotations

import io
import math

import pytest
import torch

from ctrbench.nn.activations import Dice, PReLU


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_dice_training_output_is_eq9_by_hand():
    d = Dice(1, alpha_init=0.5, eps=1e-8)
    s = torch.tensor([[1.0], [3.0]])  # batch mean 2, biased variance 1
    out = d.train()(s)
    expected = []
    for v in (1.0, 3.0):
        p = sigmoid((v - 2.0) / math.sqrt(1.0 + 1e-8))
        expected.append(p * v + (1 - p) * 0.5 * v)
    assert out.squeeze(1).tolist() == pytest.approx(expected, rel=1e-6)
    # moving averages took one step of momentum 0.1 from (0, 1)
    assert d.running_mean.item() == pytest.approx(0.2) and d.running_var.item() == pytest.approx(1.0)


def test_dice_reduces_to_prelu_with_zero_statistics():
    d = Dice(3, alpha_init=0.25).eval()
    d.running_mean.zero_()
    d.running_var.zero_()
    s = torch.tensor([[-2.0, 0.5, 3.0], [1.0, -0.1, -4.0]])
    prelu = PReLU(3, init=0.25)
    torch.testing.assert_close(d(s), prelu(s))


def test_padded_positions_do_not_change_the_statistics():
    torch.manual_seed(0)
    d = Dice(4).train()
    real = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    junk = real.clone()
    junk[~mask] = 1000.0  # whatever sits at padded positions
    a, b = d(real, mask), d(junk, mask)
    torch.testing.assert_close(a[mask], b[mask])
    # and the statistics equal those of the real rows alone
    rows = real[mask]
    mean, var = d.statistics(real.reshape(-1, 4), mask)
    torch.testing.assert_close(mean, rows.mean(0))
    torch.testing.assert_close(var, rows.var(0, unbiased=False))


def test_eval_outputs_are_batch_invariant_and_survive_a_checkpoint():
    torch.manual_seed(0)
    d = Dice(5).train()
    for _ in range(20):
        d(torch.randn(64, 5) * 3 + 1)
    d.eval()
    x = torch.randn(10, 5)
    full = d(x)
    alone = torch.cat([d(x[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(full, alone)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    e = Dice(5)
    e.load_state_dict(torch.load(buf))
    torch.testing.assert_close(e.eval()(x), full)


def test_code_mode_uses_batch_statistics_at_inference():
    d = Dice(1, mode="code", eps=1e-9).eval()
    s = torch.tensor([[1.0], [3.0]])
    p = sigmoid((1.0 - 2.0) / (math.sqrt(1.0 + 1e-9) + 1e-9))
    assert d(s)[0, 0].item() == pytest.approx(p * 1.0, rel=1e-6)


def test_bad_dice_settings():
    with pytest.raises(ValueError, match="act.mode"):
        Dice(2, mode="magic")
    with pytest.raises(ValueError, match="momentum"):
        Dice(2, momentum=0.0)
