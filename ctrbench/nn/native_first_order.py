"""One-weight-per-id tables trained under plain SGD in native calls (``csrc/lr_step.c``).

LR's weights and the first-order part of Wide&Deep and DeepFM (``models/fields.py: FirstOrder``) are
five ``[n, 1]`` tables (target item, target category, history items, history categories, and the user
when used) whose terms add up to one logit per sample, and Wide&Deep's wide part adds its two cross
tables (``models/wdl.py``):

    z_b = bias + w_item[i_b] + w_cate[c_b] + pool_j (u_item[h_bj] + u_cate[k_bj]) (+ w_user[u_b])
               (+ mean_j (x_cate[hash(c_b, k_bj)] + x_item[hash(i_b, h_bj)]))

``FirstOrderRows`` holds what the kernels need for one such set of tables: per table a gradient
scratch of the table's size (zero between steps), a mark per row and the list of rows a step touched.
Its gradient never goes through autograd's ``.grad``: the backward adds the batch's rows into the
scratch (``backward``), ``FlatSGD`` (train/flat_sgd.py) adds their squared norm to the global norm it
clips with (``sumsq``) and moves them with its step (``apply``), and ``discard`` clears them.

``first_order_logits`` is the autograd side for a model's first-order (wide) part: the forward in one native
call, and a backward that hands the bias its gradient (``sum_b dz_b``, through autograd: the bias is an
ordinary dense parameter) and adds the tables' rows to the scratch. ``train/native_step.py`` runs LR's
whole step on the same buffers without autograd.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from ctrbench.data.schema import Batch
from ctrbench.nn import native


_BATCH_DTYPES = [torch.int64] * 5 + [torch.bool]
_TABLES = 7  # the kernels' table slots: item, category, history item, history category, user, cross category, cross item


class FirstOrderRows:
    """The native gradient of five one-weight tables (``None`` for an absent user table), in the
    kernel's order: target item, target category, history items, history categories, user; and of
    Wide&Deep's two cross tables when given."""

    def __init__(self, tables: list[nn.Embedding | None], mean: bool, crosses: tuple[nn.Embedding, nn.Embedding] | None = None) -> None:
        """``crosses``: Wide&Deep's (category, item) cross tables (models/wdl.py), whose mean over the
        history's real positions the logit then includes."""
        if len(tables) != 5 or any(t is None for t in tables[:4]):
            raise ValueError("FirstOrderRows: expected the item, category, history item and history category tables (and the user's or None)")
        if crosses is not None and crosses[0].num_embeddings != crosses[1].num_embeddings:
            raise ValueError("FirstOrderRows: the two cross tables must have the same number of buckets")
        weights = [t.weight if t is not None else None for t in [*tables, *(crosses or (None, None))]]
        for w in weights:
            if w is not None and (w.dim() != 2 or w.shape[1] != 1 or w.dtype != torch.float32 or not w.is_contiguous()):
                raise ValueError(f"FirstOrderRows: a table must be a contiguous float32 [n, 1] tensor, got {w.dtype} {tuple(w.shape)}")
        self.lib = native.library()
        self.weights = weights
        self.mean = int(mean)
        self.grads = [torch.zeros_like(w) if w is not None else None for w in weights]
        self.marks = [torch.zeros(w.shape[0], dtype=torch.uint8) if w is not None else None for w in weights]
        self.rows = [torch.empty(w.shape[0], dtype=torch.int64) if w is not None else None for w in weights]
        self.n_rows = (ctypes.c_int64 * _TABLES)(*[w.shape[0] if w is not None else 0 for w in weights])
        self.count = (ctypes.c_int64 * _TABLES)()
        self.out = (ctypes.c_double * 1)()  # the backward's squared norm
        self._sumsq = 0.0
        self._key: tuple = ()
        self._ptrs: tuple = ()

    def pointers(self) -> tuple:
        """The kernels' pointer arrays (weights, gradients, marks, rows), rebuilt if a weight moved
        (they are views that stay put: ``load_state_dict`` copies into them)."""
        key = tuple(w.data_ptr() if w is not None else 0 for w in self.weights)
        if key != self._key:
            def arr(ts):
                return (ctypes.c_void_p * _TABLES)(*[t.data_ptr() if t is not None else None for t in ts])

            self._key = key
            self._ptrs = (arr(self.weights), arr(self.grads), arr(self.marks), arr(self.rows))
        return self._ptrs

    @staticmethod
    def prepare(batch: Batch) -> tuple:
        """The kernels' batch arguments ``(B, L, ld, [item, cate, user, hist_item, hist_cate,
        hist_mask])``, checked once per step: ``ld``, the history rows' stride. The Batcher's batches
        are views into a group's wider gather (``Batcher.gather_each``), whose history rows lie
        ``ld`` apart: taken as they are; anything else is made contiguous."""
        B, L = batch.hist_item.shape
        ts = [batch.item, batch.cate, batch.user, batch.hist_item, batch.hist_cate, batch.hist_mask]
        if [t.dtype for t in ts] != _BATCH_DTYPES or batch.hist_mask.is_cuda:
            raise ValueError("FirstOrderRows: a batch's ids must be int64 and its mask bool, on CPU")
        strides = {t.stride() for t in ts[3:]}
        if len(strides) != 1 or next(iter(strides))[1] != 1 or not all(t.is_contiguous() for t in ts[:3]):
            ts = [t.contiguous() for t in ts]
            return B, L, L, ts
        return B, L, ts[3].stride(0), ts

    def forward(self, args: tuple, bias: torch.Tensor) -> torch.Tensor:
        """z [B] (float32, no autograd) of the batch ``prepare`` gave ``args`` of."""
        B, L, ld, ts = args
        z = torch.empty(B, dtype=torch.float32)
        status = self.lib.ctr_fo_forward_f32(B, L, ld, *(t.data_ptr() for t in ts), self.mean, bias.data_ptr(), self.pointers()[0],
                                             self.n_rows, z.data_ptr())
        if status != 0:
            raise ValueError("FirstOrderRows: a batch holds an id outside its table")
        return z

    def backward(self, args: tuple, dz: torch.Tensor) -> None:
        """Adds the tables' gradient for ``dz`` [B] into the scratch."""
        B, L, ld, ts = args
        dz = dz.to(torch.float32).contiguous()
        w, g, mark, rows = self.pointers()
        status = self.lib.ctr_fo_backward_f32(B, L, ld, *(t.data_ptr() for t in ts), self.mean, dz.data_ptr(), w, g, mark, rows,
                                              self.n_rows, self.count, self.out)
        if status != 0:
            raise ValueError("FirstOrderRows: a batch holds an id outside its table")
        self._sumsq = self.out[0]

    def sumsq(self) -> float:
        """The squared norm of the gradient in the scratch (0 when empty)."""
        return self._sumsq

    def apply(self, alpha: float, bias: torch.Tensor | None = None, g_bias: float = 0.0) -> None:
        """W <- W + alpha g over the scratch's rows (and ``bias`` by alpha ``g_bias``); the scratch cleared."""
        self._finish(1, alpha, bias, g_bias)

    def discard(self) -> None:
        """The scratch cleared, the weights left as they are."""
        self._finish(0, 0.0, None, 0.0)

    def _finish(self, update: int, alpha: float, bias: torch.Tensor | None, g_bias: float) -> None:
        w, g, mark, rows = self.pointers()
        self.lib.ctr_fo_apply_f32(update, alpha, w, g, mark, rows, self.count, bias.data_ptr() if bias is not None else None, g_bias)
        self._sumsq = 0.0


class HoldsNativeRows:
    """A module mixin: ``native_rows``, a ``FirstOrderRows`` that the trainer sets per run (None
    otherwise), which a copy or a pickle of the module leaves behind (its buffers belong to the run;
    the copy computes with torch ops, the same values)."""

    native_rows: FirstOrderRows | None = None

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("native_rows", None)
        return state


class _FirstOrderLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, bias, rows: FirstOrderRows, batch: Batch):
        ctx.rows, ctx.args = rows, rows.prepare(batch)
        return rows.forward(ctx.args, bias)

    @staticmethod
    def backward(ctx, dz):
        ctx.rows.backward(ctx.args, dz)
        return dz.sum().reshape(1), None, None


def first_order_logits(rows: FirstOrderRows, bias: torch.Tensor, batch: Batch) -> torch.Tensor:
    """bias + the first-order terms of ``batch`` [B]; the backward gives ``bias`` its gradient through
    autograd and the tables theirs in ``rows``' scratch."""
    return _FirstOrderLogits.apply(bias, rows, batch)
