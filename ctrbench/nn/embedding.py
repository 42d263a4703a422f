"""An ``nn.Embedding`` whose dense gradient on CPU is built by one ``index_add_``.

torch's CPU ``embedding_dense_backward`` adds the looked-up rows' gradients into a zeroed table one
index at a time, each through a BLAS ``axpy`` call: about 70 ns an index whatever the row width
(229 us for 3,200 indices into a 62,977 x 1 table, measured on 2 cores of an AMD EPYC, torch 2.13),
where zeroing the table and one ``index_add_`` take 7 + 20 us. At the papers' batch of 32 the
lookups of a padded history grid are thousands of indices, and Wide&Deep's six one-weight tables
spent 22% of a step there.

The gradient is the same sum, in the same order (each row's gradients are added in index order,
as torch's loop does), so the values are bit-identical; the padding row's gradient is zero, as
torch's backward leaves it. This path is taken only where it is that: on CPU, for a dense gradient
(``sparse=False``), without ``max_norm`` or ``scale_grad_by_freq``, under autograd (not when
tracing, exporting or compiling); everywhere else the module is torch's ``nn.Embedding``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Lookup(torch.autograd.Function):
    """weight[ids] forward; the weight's gradient is zeros.index_add_(0, ids, grad) backward."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
        flat = ids.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.rows, ctx.dim, ctx.padding_idx = weight.shape[0], weight.shape[1], padding_idx
        return weight.index_select(0, flat).view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat, = ctx.saved_tensors
        g = grad.reshape(len(flat), ctx.dim)
        table = g.new_zeros(ctx.rows, ctx.dim).index_add_(0, flat, g)
        if ctx.padding_idx is not None:
            table[ctx.padding_idx] = 0  # torch's backward leaves the padding row's gradient at zero
        return table, None, None


class Embedding(nn.Embedding):
    """``nn.Embedding`` (same parameters, state dict and forward values) with the CPU dense
    backward described in the module docstring."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            w.device.type == "cpu" and not self.sparse and self.max_norm is None and not self.scale_grad_by_freq
            and torch.is_grad_enabled() and w.requires_grad and w.dim() == 2
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
        ):
            return _Lookup.apply(w, ids, self.padding_idx)
        return F.embedding(ids, w, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)
