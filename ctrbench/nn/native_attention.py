"""DIEN's bilinear attention (Eq. 8) over the history in one native call forward and one backward
(``csrc/attention.c``): ``a = softmax over the real positions of h_t . q``, 0 at padding and for a
row without real positions, as ``sequence.BilinearAttention``'s torch ops give it up to float
rounding. ``q = W e_a`` stays a torch product (its gradient reaches W and e_a through autograd).

``NativeAttention.apply(h, q, mask) -> a``: h [B, L, H], q [B, H], mask [B, L] (bool); CPU,
float32 or float64."""

from __future__ import annotations

import torch

from ctrbench.nn import native


def usable(h: torch.Tensor, q: torch.Tensor) -> bool:
    """Whether ``NativeAttention`` takes ``h`` and ``q``: CPU, one dtype of float32 or float64,
    [B, L, H] and [B, H], not under torch.compile's tracing, and the library built."""
    return (h.device.type == "cpu" and q.device.type == "cpu" and h.dtype == q.dtype and h.dtype in (torch.float32, torch.float64)
            and h.dim() == 3 and q.dim() == 2 and not torch.compiler.is_compiling() and native.library() is not None)


class NativeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, H = h.shape
        if q.shape != (B, H) or mask.shape != (B, L) or not usable(h, q):
            raise ValueError(f"NativeAttention: h [B, L, H], q [B, H] and the mask [B, L] on CPU, one float dtype; got "
                             f"{list(h.shape)}, {list(q.shape)}, {list(mask.shape)}")
        h, q, mask = h.contiguous(), q.contiguous(), mask.to(torch.bool).contiguous()
        a = h.new_empty(B, L)
        native.kernel("attn_fwd", h.dtype)(B, L, H, h.data_ptr(), q.data_ptr(), mask.data_ptr(), a.data_ptr())
        ctx.save_for_backward(h, q, mask, a)
        return a

    @staticmethod
    def backward(ctx, da: torch.Tensor):
        h, q, mask, a = ctx.saved_tensors
        B, L, H = h.shape
        da = da.contiguous()
        dh, dq = torch.empty_like(h), torch.empty_like(q)
        native.kernel("attn_bwd", h.dtype)(B, L, H, h.data_ptr(), q.data_ptr(), mask.data_ptr(), a.data_ptr(),
                                                         da.data_ptr(), dh.data_ptr(), dq.data_ptr())
        return dh, dq, None
