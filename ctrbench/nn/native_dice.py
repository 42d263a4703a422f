"""Dice in training as one native call forward and one backward (``csrc/dice.c``), for rows that are
all real (no mask): the same formula as ``activations.Dice`` in training, equal up to float rounding.

``NativeDice.apply(x, alpha, eps, c) -> (out, mean, var)``: x [N, H] (N >= 1), alpha [H], CPU,
float32 or float64; out = x (alpha + (1 - alpha) p) with p = sigmoid((x - mean) / (sqrt(var + eps)
+ c)), and the batch statistics mean and (biased) var [H] for the moving averages (no gradient flows
through those two outputs; it flows through out to x and alpha, as batch normalisation's). ``c`` is
0 for the paper's Dice and eps for the official code's."""

from __future__ import annotations

import torch

from ctrbench.nn import native


def usable(x: torch.Tensor) -> bool:
    """Whether ``NativeDice`` can run on rows like ``x``: CPU, float32 or float64, at least one row,
    not under torch.compile's tracing, and the library built."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 2 and x.shape[0] > 0
            and not torch.compiler.is_compiling() and native.library() is not None)


class NativeDice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, eps: float, c: float):
        if x.dtype != alpha.dtype or x.device.type != "cpu" or alpha.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            raise TypeError("NativeDice takes CPU tensors of one dtype, float32 or float64")
        if x.dim() != 2 or alpha.shape != (x.shape[1],) or x.shape[0] == 0:
            raise ValueError(f"NativeDice: x must be [N >= 1, H] and alpha [H], got {list(x.shape)} and {list(alpha.shape)}")
        x, alpha = x.contiguous(), alpha.contiguous()
        N, H = x.shape
        out, p = torch.empty_like(x), torch.empty_like(x)
        mean, var, rstd = x.new_empty(H), x.new_empty(H), x.new_empty(H)
        native.check(native.kernel("dice_fwd", x.dtype)(N, H, x.data_ptr(), alpha.data_ptr(), float(eps), float(c), out.data_ptr(),
                                                         p.data_ptr(), mean.data_ptr(), var.data_ptr(), rstd.data_ptr()), "Dice")
        ctx.save_for_backward(x, alpha, p, mean, var, rstd)
        ctx.eps = float(eps)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        x, alpha, p, mean, var, rstd = ctx.saved_tensors
        g = grad_out.contiguous()
        N, H = x.shape
        dx, dalpha = torch.empty_like(x), torch.empty_like(alpha)
        native.check(native.kernel("dice_bwd", x.dtype)(
            N, H, x.data_ptr(), alpha.data_ptr(), p.data_ptr(), mean.data_ptr(), var.data_ptr(), rstd.data_ptr(), ctx.eps,
            g.data_ptr(), dx.data_ptr(), dalpha.data_ptr()), "Dice")
        return dx, dalpha, None, None
