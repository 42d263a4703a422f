"""DIEN's auxiliary loss (Eq. 6, the inner-product form) in training as one native call forward and
one backward (``csrc/aux_loss.c``), the same value as ``sequence.auxiliary_loss``'s torch ops up to
float rounding: the sum over pairs is taken in double and each inner product in eight partial sums.
Used by ``auxiliary_loss(..., native=True)`` (DIEN sets it with its native recurrences,
``trainer.native_recurrence``) for CPU tensors of float32 or float64; ``tests/test_native_aux.py``
compares it with the torch ops in float64 and by ``gradcheck``."""

from __future__ import annotations

import ctypes

import torch

from ctrbench.nn import native


def usable(h: torch.Tensor) -> bool:
    """Whether the native loss can take ``h`` (and the embeddings beside it)."""
    return h.device.type == "cpu" and h.dtype in (torch.float32, torch.float64) and h.dim() == 3 and native.library() is not None


class NativeAuxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, pos, neg, mask, reduction: str):
        if not (h.shape == pos.shape == neg.shape and h.dtype == pos.dtype == neg.dtype and mask.shape == h.shape[:2]):
            raise ValueError(f"NativeAuxLoss: h, e, ê must be [B, L, H] of one dtype and the mask [B, L], got "
                             f"{list(h.shape)}, {list(pos.shape)}, {list(neg.shape)}, {list(mask.shape)}")
        h, pos, neg, mask = h.contiguous(), pos.contiguous(), neg.contiguous(), mask.to(torch.bool).contiguous()
        B, L, H = h.shape
        out = (ctypes.c_double * 2)()
        sig = h.new_empty(B, L, 2)  # sigmoid of each counted pair's two scores, for the backward
        native.kernel("aux_fwd", h.dtype)(B, L, H, h.data_ptr(), pos.data_ptr(), neg.data_ptr(), mask.data_ptr(),
                                                        sig.data_ptr(), out)
        if reduction == "paper":  # Eq. 6: the sum over t, the mean over the N samples
            denom = float(max(B, 1))
        elif reduction == "mean":  # the mean over the pairs counted
            denom = max(out[1], 1.0)
        else:
            raise ValueError(f"model.aux_reduction must be 'paper' or 'mean', got {reduction!r}")
        ctx.save_for_backward(h, pos, neg, mask, sig)
        ctx.denom = denom
        return h.new_tensor(out[0] / denom)

    @staticmethod
    def backward(ctx, grad):
        h, pos, neg, mask, sig = ctx.saved_tensors
        B, L, H = h.shape
        dh, dpos, dneg = torch.empty_like(h), torch.empty_like(pos), torch.empty_like(neg)
        native.kernel("aux_bwd", h.dtype)(B, L, H, h.data_ptr(), pos.data_ptr(), neg.data_ptr(), mask.data_ptr(),
                                                        sig.data_ptr(), float(grad) / ctx.denom, dh.data_ptr(), dpos.data_ptr(), dneg.data_ptr())
        return dh, dpos, dneg, None, None
