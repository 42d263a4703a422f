"""DIEN's bilinear attention in native calls (nn/csrc/attention.c, nn/native_attention.py): the
values and gradients of BilinearAttention's torch ops (scores, masked softmax) up to rounding."""

from __future__ import annotations

import pytest
import torch

from ctrbench.nn import native, native_attention
from ctrbench.nn.native_attention import NativeAttention
from ctrbench.nn.sequence import BilinearAttention

needs_library = pytest.mark.skipif(native.library() is None, reason=f"no native library here: {native.unavailable_reason()}")


def _inputs(dtype, B=7, L=6, H=5, D=4):
    torch.manual_seed(0)
    h, e = torch.randn(B, L, H, dtype=dtype) * 3, torch.randn(B, D, dtype=dtype)
    mask = torch.arange(L)[None] < torch.tensor([6, 0, 3, 1, 6, 2, 5])[:, None]  # an empty row, full rows
    mask[6, 1] = False  # a hole: any mask, not only post-padding
    return h, e, mask


@needs_library
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_native_attention_is_the_torch_ops(dtype, tol):
    h, e, mask = _inputs(dtype)
    att = BilinearAttention(h.shape[2], e.shape[1]).to(dtype)
    res = []
    for native_ in (False, True):
        hi, ei = h.clone().requires_grad_(), e.clone().requires_grad_()
        a = att(hi, ei, mask, native=native_)
        w = torch.randn(a.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        res.append((a, *torch.autograd.grad((a * w).sum(), (hi, ei, att.W))))
    for got, want in zip(res[1], res[0]):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    a = res[1][0]
    assert torch.all(a[~mask] == 0) and torch.all(a[1] == 0)  # padding and the empty row: 0
    torch.testing.assert_close(a.sum(1)[mask.any(1)], torch.ones(int(mask.any(1).sum()), dtype=dtype), rtol=tol, atol=tol)


@needs_library
def test_native_attention_gradcheck():
    h, _, mask = _inputs(torch.float64)
    q = torch.randn(h.shape[0], h.shape[2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: NativeAttention.apply(x, y, mask), (h.requires_grad_(), q))


def test_where_it_does_not_apply(monkeypatch):
    monkeypatch.setattr(NativeAttention, "apply", lambda *a: (_ for _ in ()).throw(AssertionError("native")))
    h, e, mask = _inputs(torch.float32)
    att = BilinearAttention(h.shape[2], e.shape[1])
    att(h, e, mask)  # not asked (a model built alone, evaluation)
    assert not native_attention.usable(h.double(), torch.randn(7, 5))  # mixed dtypes
    assert not native_attention.usable(h.half(), torch.randn(7, 5).half())
    if native.library() is not None:
        with pytest.raises(AssertionError, match="native"):
            att(h, e, mask, native=True)


@needs_library
def test_mismatched_inputs_are_refused():
    h, _, mask = _inputs(torch.float32)
    with pytest.raises(ValueError, match="NativeAttention"):
        NativeAttention.apply(h, torch.randn(7, 4), mask)  # q of the wrong width
    with pytest.raises(ValueError, match="NativeAttention"):
        NativeAttention.apply(h, torch.randn(7, 5), mask[:, :3])
