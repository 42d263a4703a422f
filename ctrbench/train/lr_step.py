"""Logistic regression's whole training step as two native calls (``nn/csrc/lr_step.c``).

The DIN paper's Table 3 trains every row with plain SGD at batches of 32 (learning rate 1, the
global gradient norm clipped at 5 by the official code). For the LR row (``models/lr.py``) a step's
arithmetic is a few hundred additions, and its time was the ~30 torch ops of the forward and
backward passes, the norm and the update (3-10 us of dispatch each): ~0.6 ms of a ~0.85 ms step.
``NativeLRStep`` computes the same step in C:

1. ``gradients(batch)``: the logits, the mean binary cross-entropy, its gradient with respect to
   the bias and to every row the batch looked up (summed per row into zeroed scratch buffers, each
   row listed once), and the squared global gradient norm over those rows and the bias;
2. the trainer checks the loss and the norm (a non-finite one stops training, with ``discard()``
   leaving the weights as they were), and computes the clipping factor c = min(1, max_norm /
   (norm + 1e-6)) as ``FlatSGD.clip_grad_norm_`` does;
3. ``apply(alpha)``: W <- W + alpha g on those rows and the bias, alpha = -lr c, and the scratch
   rows cleared.

The updates are ``FlatSGD``'s (train/flat_sgd.py, torch's SGD) up to float rounding: the loss and the
norm are summed in double, and rows a batch repeats in another order (``tests/test_lr_step.py``
trains both ways and compares losses and weights). The optimizer and its state dict stay torch's
SGD's, and the weights the model's own, so checkpoints, evaluation and resuming are unchanged.

``trainer.native_step``: ``auto`` (on exactly where it gives those updates: ``model=lr``, plain SGD
over flat buffers (``FlatSGD``: one process, uncompiled, no fp16 scaling), one param group, float32
weights on CPU, no autocast, a regularizer without a loss penalty (``none``, ``dropout``, ``filter``:
their batch transforms still apply), and the native library built), ``true`` (the same, or a
one-line error saying why not), ``false`` (autograd and the optimizer, as for every other model).
"""

from __future__ import annotations

import ctypes
import logging

import torch

from ctrbench.data.schema import Batch
from ctrbench.errors import ConfigError
from ctrbench.models.lr import LR
from ctrbench.nn import native
from ctrbench.train.build import auto_setting
from ctrbench.train.flat_sgd import FlatSGD
from ctrbench.train.regularizers import Regularizer

log = logging.getLogger("ctrbench")

_TABLES = ("w_item", "w_cate", "u_item", "u_cate", "w_user")  # the kernel's order


def why_not(model: torch.nn.Module, optimizer: torch.optim.Optimizer, reg: Regularizer, device: torch.device,
            amp_dtype: torch.dtype | None) -> str | None:
    """Why the run's step cannot be ``NativeLRStep``'s (None: it can); ``""`` where it does not
    apply at all (another model)."""
    if type(model) is not LR:
        return ""
    if not isinstance(optimizer, FlatSGD):
        return ("the native step is plain SGD's (optim=sgd without momentum, weight decay, maximize or nesterov, "
                "trainer.flat_sgd=auto, one process, uncompiled, no fp16 loss scaling)")
    if len(optimizer.param_groups) != 1:
        return "the native step takes one learning rate for every weight (one param group)"
    if type(reg).penalty is not Regularizer.penalty:
        return f"reg={reg.name} adds a penalty to the loss, which the native step does not compute"
    if device.type != "cpu" or amp_dtype is not None:
        return f"the native step runs on CPU in float32 (device {device.type}, autocast {amp_dtype})"
    if any(p.dtype != torch.float32 or p.device.type != "cpu" or not p.requires_grad for p in model.parameters()):
        return "the native step updates float32 CPU weights that all train"
    if native.library() is None:
        return f"the native kernels are unavailable: {native.unavailable_reason()}"
    return None


def resolve(setting, model: torch.nn.Module, optimizer: torch.optim.Optimizer, reg: Regularizer, device: torch.device,
            amp_dtype: torch.dtype | None) -> bool:
    """``trainer.native_step``: whether the run trains with ``NativeLRStep`` (module docstring).
    ``auto`` falls back to the autograd step silently where the native one does not apply, with a
    warning where only the native library is missing; ``true`` raises a one-line error instead."""
    value = auto_setting(setting, "native_step")
    if value == "false":
        return False
    why = why_not(model, optimizer, reg, device, amp_dtype)
    if why is None:
        return True
    if value == "true":
        raise ConfigError(f"trainer.native_step=true cannot be used here: {why or 'the native step exists for model=lr only'}; "
                          "use auto or false")
    if why.startswith("the native kernels"):
        log.warning(f"{why}; LR trains with autograd and the optimizer (trainer.native_step=auto)")
    return False


class NativeLRStep:
    """The training step of an ``LR`` model under ``FlatSGD`` in ``nn/csrc/lr_step.c`` (module
    docstring): ``gradients(batch)`` then ``apply(alpha)`` or ``discard()``."""

    def __init__(self, model: LR) -> None:
        self.model = model
        self.lib = native.library()
        tables = [getattr(model, name) for name in _TABLES]
        self.tables = [t.weight if t is not None else None for t in tables]
        present = [w for w in self.tables if w is not None]
        # per table: the gradient scratch (zero between steps), a mark per row, the rows touched
        self.grads = [torch.zeros_like(w) if w is not None else None for w in self.tables]
        self.marks = [torch.zeros(w.shape[0], dtype=torch.uint8) if w is not None else None for w in self.tables]
        self.rows = [torch.empty(w.shape[0], dtype=torch.int64) if w is not None else None for w in self.tables]
        self.n_rows = (ctypes.c_int64 * 5)(*[w.shape[0] if w is not None else 0 for w in self.tables])
        self.count = (ctypes.c_int64 * 5)()
        self.out = (ctypes.c_double * 3)()
        self._ptrs: tuple | None = None
        self._weights: tuple = ()
        self.mean = int(model.pooling == "mean")
        if any(w.dim() != 2 or w.shape[1] != 1 or not w.is_contiguous() for w in present):
            raise ValueError("NativeLRStep: LR's tables must be contiguous [n, 1] tensors")

    def _pointers(self) -> tuple:
        """The kernel's pointer arrays, rebuilt if a weight moved (they are views that stay put)."""
        weights = tuple(w.data_ptr() if w is not None else 0 for w in self.tables)
        if weights != self._weights:
            def arr(ts):
                return (ctypes.c_void_p * 5)(*[t.data_ptr() if t is not None else None for t in ts])

            self._weights = weights
            self._ptrs = ((ctypes.c_void_p * 5)(*[p or None for p in weights]), arr(self.grads), arr(self.marks), arr(self.rows))
        return self._ptrs

    def gradients(self, batch: Batch) -> tuple[float, float]:
        """The step's mean loss and squared global gradient norm; the gradients wait in the scratch
        buffers for ``apply`` or ``discard``."""
        w, g, mark, rows = self._pointers()
        B, L = batch.hist_item.shape
        ids = [t.contiguous() for t in (batch.item, batch.cate, batch.user, batch.hist_item, batch.hist_cate)]
        mask, label = batch.hist_mask.contiguous(), batch.label.to(torch.float32).contiguous()
        if any(t.dtype != torch.int64 for t in ids) or mask.dtype != torch.bool:
            raise ValueError("NativeLRStep: a batch's ids must be int64 and its mask bool")
        status = self.lib.ctr_lr_grad_f32(
            B, L, ids[0].data_ptr(), ids[1].data_ptr(), ids[2].data_ptr(), ids[3].data_ptr(), ids[4].data_ptr(),
            mask.data_ptr(), label.data_ptr(), self.mean, self.model.bias.data_ptr(), w, g, mark, rows, self.n_rows, self.count,
            self.out,
        )
        if status != 0:  # nothing was written
            raise ValueError("NativeLRStep: a batch holds an id outside its table")
        self._g_bias = self.out[2]
        return self.out[0], self.out[1]

    def apply(self, alpha: float) -> None:
        """W <- W + alpha g on the rows ``gradients`` found and on the bias; the scratch cleared."""
        self._finish(1, alpha)

    def discard(self) -> None:
        """The scratch cleared, the weights left as they are."""
        self._finish(0, 0.0)

    def _finish(self, update: int, alpha: float) -> None:
        w, g, mark, rows = self._pointers()
        self.lib.ctr_lr_apply_f32(update, alpha, self._g_bias, self.model.bias.data_ptr(), w, g, mark, rows, self.count)
