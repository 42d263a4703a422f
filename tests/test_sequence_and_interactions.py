"""DIEN's recurrent math and the interaction layers, pinned against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctrbench.nn.interactions import fm_second_order, inner_products, outer_products
from ctrbench.nn.sequence import BilinearAttention, EvolvingGRU, auxiliary_loss, masked_softmax, run_gru


def sig(x):
    return 1 / (1 + math.exp(-x))


def one_unit_gru(kind, formula="paper"):
    """A 1-d GRU with hand-set weights: x2h = [wu, wr, wh] x + [bu, br, bh], h2h = [uu, ur, uh] h."""
    g = EvolvingGRU(1, 1, kind, formula)
    with torch.no_grad():
        g.x2h.weight.copy_(torch.tensor([[0.5], [-0.3], [0.8]]))
        g.x2h.bias.copy_(torch.tensor([0.1, 0.2, -0.1]))
        g.h2h.weight.copy_(torch.tensor([[0.4], [0.6], [-0.5]]))
    return g


def hand_step(x, h, a, kind, formula="paper"):
    u = sig(0.5 * x + 0.1 + 0.4 * h)
    r = sig(-0.3 * x + 0.2 + 0.6 * h)
    c = math.tanh(0.8 * x - 0.1 + r * (-0.5 * h))
    if kind == "agru":
        u = a
    elif kind == "augru":
        u = a * u if formula == "paper" else 1 - (1 - a) * (1 - u)
    return (1 - u) * h + u * c


def one_step(g, x, h, a):
    """One step of g's recurrence from state h (x already scaled by a for AIGRU)."""
    g0, g1 = g.gate_factors(torch.tensor([[a]]), torch.ones(1, 1))
    return g.step(g.x2h(torch.tensor([[x]])), torch.tensor([[h]]), g0, g1).item()


KINDS = [("augru", "paper"), ("augru", "code"), ("agru", "paper"), ("aigru", "paper")]


@pytest.mark.parametrize("kind, formula", KINDS)
def test_one_step_of_each_attentional_gru(kind, formula):
    g = one_unit_gru(kind, formula)
    x, h, a = 0.7, 0.3, 0.4
    xin = x * a if kind == "aigru" else x
    assert one_step(g, xin, h, a) == pytest.approx(hand_step(xin, h, a, kind, formula), rel=1e-6)


@pytest.mark.parametrize("kind, formula", KINDS)
@pytest.mark.parametrize("reference", [False, True])
def test_two_steps_through_forward_match_the_hand_recurrence(kind, formula, reference):
    g = one_unit_gru(kind, formula)
    xs, att = [0.7, -1.2], [0.4, 0.9]
    h = 0.0
    for x, a in zip(xs, att):
        h = hand_step(x * a if kind == "aigru" else x, h, a, kind, formula)
    out = g(torch.tensor([[[xs[0]], [xs[1]], [5.0]]]), torch.tensor([[att[0], att[1], 0.3]]), torch.tensor([[True, True, False]]), reference=reference)
    assert out.item() == pytest.approx(h, rel=1e-6)


@pytest.mark.parametrize("kind, formula", KINDS)
def test_hand_written_backward_matches_autograd(kind, formula):
    torch.manual_seed(1)
    g = EvolvingGRU(3, 4, kind, formula).double()
    x = torch.randn(5, 6, 3, dtype=torch.double, requires_grad=True)
    a = torch.rand(5, 6, dtype=torch.double, requires_grad=True)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 1, 0, 5])[:, None]
    w = torch.randn(5, 4, dtype=torch.double)
    grads = []
    for reference in (False, True):
        g.zero_grad()
        x.grad = a.grad = None
        out = g(x, a, mask, reference=reference)
        (out * w).sum().backward()
        grads.append((out.detach(), x.grad.clone(), a.grad.clone(), *(p.grad.clone() for p in g.parameters())))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


def test_scan_gradcheck():
    from torch.autograd import gradcheck

    from ctrbench.nn.gru_scan import attentional_gru_scan

    torch.manual_seed(0)
    T, B, H = 4, 3, 2
    xs = torch.randn(T, B, 3 * H, dtype=torch.double, requires_grad=True)
    U = torch.randn(3 * H, H, dtype=torch.double, requires_grad=True)
    for g0, g1 in ((None, True), (True, None), (True, True)):
        f0 = torch.rand(T, B, 1, dtype=torch.double, requires_grad=True) if g0 else None
        f1 = torch.rand(T, B, 1, dtype=torch.double, requires_grad=True) if g1 else None
        assert gradcheck(attentional_gru_scan, (xs, U, f0, f1))


def test_plain_gru_step_matches_aigru_without_attention():
    g = one_unit_gru("aigru")
    assert one_step(g, 0.7, 0.3, 1.0) == pytest.approx(hand_step(0.7, 0.3, 1.0, "gru"), rel=1e-6)


def test_augru_paper_vs_code_at_the_extremes():
    x, h = 0.7, 0.3
    assert hand_step(x, h, 0.0, "augru", "paper") == pytest.approx(h)  # a=0 keeps the state
    assert hand_step(x, h, 0.0, "augru", "code") == pytest.approx(hand_step(x, h, 1.0, "gru"))  # a=0: plain GRU
    g = one_unit_gru("augru", "code")
    out = one_step(g, x, h, 1.0)
    r = sig(-0.3 * x + 0.2 + 0.6 * h)
    assert out == pytest.approx(math.tanh(0.8 * x - 0.1 + r * (-0.5 * h)))  # a=1: h' = candidate


def test_evolution_stops_at_each_rows_last_real_position():
    torch.manual_seed(0)
    g = EvolvingGRU(3, 4, "augru")
    x, a = torch.randn(2, 5, 3), torch.rand(2, 5)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    full = g(x, a, mask)
    short = g(x[:1, :3], a[:1, :3], mask[:1, :3])
    torch.testing.assert_close(full[:1], short)
    assert (g(x, a, torch.zeros(2, 5, dtype=torch.bool)) == 0).all()  # empty history: zero state


def test_run_gru_masks_padding_and_handles_empty_rows():
    torch.manual_seed(0)
    gru = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(3, 4, 3)
    lengths = torch.tensor([2, 4, 0])
    out = run_gru(gru, x, lengths)
    ref, _ = gru(x[1:2])
    torch.testing.assert_close(out[1], ref[0])
    assert (out[0, 2:] == 0).all() and (out[2] == 0).all()
    # the unpacked path (little padding) and the packed path (much padding) agree
    torch.testing.assert_close(run_gru(gru, x, lengths, max_padding=1.0), out)
    torch.testing.assert_close(run_gru(gru, x, lengths, max_padding=0.0), out)
    assert run_gru(gru, x[:, :0], torch.zeros(3, dtype=torch.long)).shape == (3, 0, 4)


def test_auxiliary_loss_hand_value_and_padding():
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    pos = torch.tensor([[[9.0, 9.0], [2.0, 0.0], [0.0, 3.0]]])
    neg = torch.tensor([[[9.0, 9.0], [0.0, 1.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, True, True]])
    # pairs: t=0 (h=[1,0]; pos [2,0] -> 2; neg [0,1] -> 0), t=1 (h=[0,1]; pos [0,3] -> 3; neg [1,0] -> 0)
    nll = lambda s_pos, s_neg: -math.log(sig(s_pos)) - math.log(1 - sig(s_neg))
    expected = nll(2, 0) + nll(3, 0)
    assert auxiliary_loss(h, pos, neg, mask).item() == pytest.approx(expected, rel=1e-6)
    assert auxiliary_loss(h, pos, neg, mask, reduction="mean").item() == pytest.approx(expected / 2, rel=1e-6)
    # a padded position (and whatever sits there) changes nothing
    h2 = torch.cat([h, torch.full((1, 1, 2), 7.0)], dim=1)
    pos2 = torch.cat([pos, torch.full((1, 1, 2), -3.0)], dim=1)
    neg2 = torch.cat([neg, torch.full((1, 1, 2), 4.0)], dim=1)
    mask2 = torch.tensor([[True, True, True, False]])
    assert auxiliary_loss(h2, pos2, neg2, mask2).item() == pytest.approx(expected, rel=1e-6)


def test_bilinear_attention_is_a_masked_softmax():
    att = BilinearAttention(2, 2)
    with torch.no_grad():
        att.W.copy_(torch.eye(2))
    h = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    e = torch.tensor([[1.0, 1.0]])
    w = att(h, e, torch.tensor([[True, True, False]]))
    z = math.exp(1) + math.exp(2)
    assert w[0].tolist() == pytest.approx([math.exp(1) / z, math.exp(2) / z, 0.0])
    assert (masked_softmax(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool)) == 0).all()


def test_bilinear_attention_score_is_h_w_e_with_a_rectangular_w():
    """Eq. (8)'s score h_t W e_a, W [H, D] (H != D pins its orientation), against a naive loop."""
    torch.manual_seed(0)
    att = BilinearAttention(3, 2).double()
    h, e = torch.randn(2, 4, 3, dtype=torch.double), torch.randn(2, 2, dtype=torch.double)
    mask = torch.ones(2, 4, dtype=torch.bool)
    W = att.W.detach()
    score = torch.tensor([[sum(h[b, t, i] * W[i, j] * e[b, j] for i in range(3) for j in range(2)) for t in range(4)] for b in range(2)])
    torch.testing.assert_close(att(h, e, mask), torch.softmax(score, dim=-1), rtol=1e-12, atol=1e-14)


def test_fm_inner_and_outer_products():
    f = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [0.0, -1.0]]])
    # pairs: (0,1) 3, (0,2) -2, (1,2) 0
    assert fm_second_order(f).item() == pytest.approx(1.0)
    assert inner_products(f)[0].tolist() == [3.0, -2.0, 0.0]
    outer = outer_products(f)[0].reshape(3, 2, 2)
    assert outer[0].tolist() == [[3.0, 0.0], [6.0, 0.0]]
    assert outer[2].tolist() == [[0.0, -3.0], [0.0, 0.0]]
