"""DIEN's auxiliary loss as native calls (nn/native_aux.py, nn/csrc/aux_loss.c): the value and the
gradients of ``auxiliary_loss``'s torch ops (float64), ``gradcheck``, both reductions, padding and
empty histories, and a DIEN run that trains as with the torch ops."""

from __future__ import annotations

import pytest
import torch

from ctrbench.nn import native_aux
from ctrbench.nn.sequence import auxiliary_loss
from conftest import assert_native_trains_the_same

pytestmark = pytest.mark.skipif(not native_aux.usable(torch.zeros(1, 1, 1)), reason="the native kernels did not build")


def _inputs(B=6, L=7, H=11, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, pos, neg = (torch.randn(B, L, H, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    lens = torch.tensor([L, 0, 1, 3, L - 1, 2][:B])
    mask = torch.arange(L)[None] < lens[:, None]
    return h, pos, neg, mask


@pytest.mark.parametrize("reduction", ["paper", "mean"])
@pytest.mark.parametrize("H", [11, 16, 36])  # below, at and above the kernel's eight partial sums
def test_value_and_gradients_are_the_torch_ops(reduction, H):
    h, pos, neg, mask = _inputs(H=H)
    with torch.no_grad():  # large inner products reach softplus's threshold on both sides
        h[0, :2] *= 12
    ref = auxiliary_loss(h, pos, neg, mask, reduction=reduction)
    got = auxiliary_loss(h, pos, neg, mask, reduction=reduction, native=True)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    g_ref = torch.autograd.grad(ref, (h, pos, neg))
    g_got = torch.autograd.grad(got, (h, pos, neg))
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert float(g_got[0][:, -1].abs().sum()) == 0 and float(g_got[1][:, 0].abs().sum()) == 0  # no pair reaches them
    assert float(g_got[0][1].abs().sum()) == 0  # an empty history: no pair


def test_gradcheck_and_float32():
    h, pos, neg, mask = _inputs(B=4, L=5, H=9)
    assert torch.autograd.gradcheck(lambda a, b, c: auxiliary_loss(a, b, c, mask, native=True), (h, pos, neg))
    h32, pos32, neg32 = (t.detach().float().requires_grad_() for t in (h, pos, neg))
    ref = auxiliary_loss(h32, pos32, neg32, mask)
    got = auxiliary_loss(h32, pos32, neg32, mask, native=True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_no_history_positions_at_all():
    h, pos, neg = (torch.randn(3, 0, 4, requires_grad=True) for _ in range(3))
    mask = torch.zeros(3, 0, dtype=torch.bool)
    loss = auxiliary_loss(h, pos, neg, mask, native=True)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert h.grad.shape == (3, 0, 4)


def test_a_dien_run_trains_as_with_the_torch_ops(tiny_dataset, tmp_path):
    """trainer.native_recurrence switches the recurrences and the auxiliary loss together."""
    calls, current = [], [None]
    real = native_aux.NativeAuxLoss.apply

    def check(t, native_on):
        current[0] = native_on

    def spy(*args):
        calls.append(current[0])
        return real(*args)

    native_aux.NativeAuxLoss.apply = spy
    try:
        assert_native_trains_the_same(tiny_dataset, tmp_path, "native_recurrence", "+experiment=dien_table2", "+row=dien_table2/dien",
                                      check=check)
    finally:
        native_aux.NativeAuxLoss.apply = real
    assert calls and set(calls) == {True}  # only the native run used it, at every step
