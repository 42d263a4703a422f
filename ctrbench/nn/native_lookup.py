"""DIEN's behaviour embeddings in one native call forward and one backward (``csrc/pair_lookup.c``):
``[E_item(i); E_cate(c)]`` for the target, the history (padded positions zeroed) and the negative
behaviours, with row-wise (sparse) gradients for both tables, as ``ItemEmbeddings.target_history_negatives``
computes them with torch's ops: the same outputs, and the same gradient rows in the same order
(so RowAdam's step is the same to the bit).

``pair_lookup(item, cate, segments, keep) -> [out per segment]``: ``item`` and ``cate`` are
``nn.Embedding`` tables with ``sparse=True`` and ``padding_idx=0``; ``segments`` three (item ids,
category ids) pairs of one shape each; ``keep`` (bool, the history's shape) zeroes the second
segment's padded positions."""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.nn import native


def usable(item: nn.Embedding | None, cate: nn.Embedding) -> bool:
    """Whether ``pair_lookup`` computes what torch's ops would for these tables: both present, with
    row-wise gradients, padding row 0 and no max_norm or frequency scaling, CPU float32 or float64
    of one dtype, not under torch.compile's tracing, and the library built."""
    if item is None or torch.compiler.is_compiling():
        return False
    w, v = item.weight, cate.weight
    return (all(t.sparse and t.padding_idx == 0 and t.max_norm is None and not t.scale_grad_by_freq for t in (item, cate))
            and w.device.type == "cpu" and v.device.type == "cpu" and w.dtype == v.dtype and w.dtype in (torch.float32, torch.float64)
            and w.shape[1] == v.shape[1] and native.library() is not None)


def _pointers(tensors) -> torch.Tensor:
    return torch.tensor([0 if t is None else t.data_ptr() for t in tensors], dtype=torch.int64)


class NativePairLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, item_w, cate_w, i0, c0, i1, c1, keep1, i2, c2):
        d = item_w.shape[1]
        ids = [t.contiguous() for t in (i0, c0, i1, c1, i2, c2)]
        keep1 = keep1.contiguous()
        if keep1.dtype != torch.bool or keep1.shape != ids[2].shape or any(ids[2 * s].shape != ids[2 * s + 1].shape for s in range(3)):
            raise ValueError("NativePairLookup: each segment's item and category ids must have one shape, and keep the history's (bool)")
        outs = [item_w.new_empty(*ids[2 * s].shape, 2 * d) for s in range(3)]
        n = torch.tensor([ids[2 * s].numel() for s in range(3)], dtype=torch.int64)
        items, cates, out_ptrs = _pointers(ids[0::2]), _pointers(ids[1::2]), _pointers(outs)  # alive through the call
        status = native.kernel("pair_lookup_fwd", item_w.dtype)(
            d, item_w.shape[0], cate_w.shape[0], item_w.data_ptr(), cate_w.data_ptr(), n.data_ptr(), items.data_ptr(),
            cates.data_ptr(), keep1.data_ptr(), out_ptrs.data_ptr())
        if status != 0:
            raise IndexError(f"index out of range in self: an item id outside [0, {item_w.shape[0]}) or a category id outside [0, {cate_w.shape[0]})")
        ctx.save_for_backward(*ids, keep1)
        ctx.n, ctx.shapes = n, (item_w.shape, cate_w.shape)
        return tuple(outs)

    @staticmethod
    def backward(ctx, g0, g1, g2):
        *ids, keep1 = ctx.saved_tensors
        item_shape, cate_shape = ctx.shapes
        d = item_shape[1]
        grads = [None if g is None else g.contiguous() for g in (g0, g1, g2)]
        dtype = next(g.dtype for g in grads if g is not None)
        total = int(ctx.n.sum())
        item_idx, cate_idx = torch.empty(total, dtype=torch.int64), torch.empty(total, dtype=torch.int64)
        item_val, cate_val = torch.empty(total, d, dtype=dtype), torch.empty(total, d, dtype=dtype)
        counts = torch.empty(2, dtype=torch.int64)
        items, cates, grad_ptrs = _pointers(ids[0::2]), _pointers(ids[1::2]), _pointers(grads)  # alive through the call
        native.kernel("pair_lookup_bwd", dtype)(
            d, ctx.n.data_ptr(), items.data_ptr(), cates.data_ptr(), keep1.data_ptr(), grad_ptrs.data_ptr(), item_idx.data_ptr(),
            item_val.data_ptr(), cate_idx.data_ptr(), cate_val.data_ptr(), counts.data_ptr())
        ki, kc = counts.tolist()
        d_item = torch.sparse_coo_tensor(item_idx[:ki].unsqueeze(0), item_val[:ki], item_shape, check_invariants=False) \
            if ctx.needs_input_grad[0] else None
        d_cate = torch.sparse_coo_tensor(cate_idx[:kc].unsqueeze(0), cate_val[:kc], cate_shape, check_invariants=False) \
            if ctx.needs_input_grad[1] else None
        return d_item, d_cate, None, None, None, None, None, None, None


def pair_lookup(item: nn.Embedding, cate: nn.Embedding, segments, keep: torch.Tensor) -> list[torch.Tensor]:
    """The three segments' ``[E_item(i); E_cate(c)]`` (see the module docstring)."""
    (i0, c0), (i1, c1), (i2, c2) = segments
    return list(NativePairLookup.apply(item.weight, cate.weight, i0, c0, i1, c1, keep, i2, c2))
