"""One-weight-per-id tables stepped natively under plain SGD (``trainer.native_step``).

The DIN paper's Table 3 trains every row with plain SGD at batches of 32 (learning rate 1, the
global gradient norm clipped at 5 by the official code). At that size a step's arithmetic on the
one-weight tables (LR's, and the first-order part of Wide&Deep and DeepFM: ``models/fields.py:
FirstOrder``) is a few hundred additions, and its time was the torch ops around it (3-10 us of
dispatch each), plus the whole-table gradient that the dense backward of a [63,001, 1] table builds
and the update reads. The kernels are ``nn/csrc/lr_step.c``, the buffers
``nn/native_first_order.py: FirstOrderRows``.

- **LR** (``models/lr.py``): the whole step is two native calls (``NativeLRStep``):
  1. ``gradients(batch)``: the logits, the mean binary cross-entropy, its gradient with respect to
     the bias and to every row the batch looked up (summed per row into zeroed scratch buffers, each
     row listed once), and the squared global gradient norm over those rows and the bias;
  2. the trainer checks the loss and the norm (a non-finite one stops training, ``discard()``
     leaving the weights as they were) and computes the clipping factor c = min(1, max_norm /
     (norm + 1e-6)) as ``FlatSGD.clip_grad_norm_`` does;
  3. ``apply(alpha)``: W <- W + alpha g on those rows and the bias, alpha = -lr c; the scratch cleared.
- **Wide&Deep, DeepFM**: Wide&Deep's whole wide part (its ``FirstOrder`` tables and its two cross
  tables) and DeepFM's ``FirstOrder`` part get a ``FirstOrderRows`` (``native_rows``): in training
  their logit is one native call forward and one backward, which adds the tables' rows to the
  scratch (the bias gets its gradient through autograd), and ``FlatSGD`` counts the scratch in the
  global norm, moves its rows in its step and clears it in ``zero_grad``.

The updates are autograd's with ``FlatSGD`` (train/flat_sgd.py, torch's SGD) up to float rounding:
norms and LR's loss are summed in double, rows a batch repeats in another order
(``tests/test_native_step.py`` trains both ways and compares losses and weights). The optimizer and
its state dict stay torch's SGD's and the weights the model's own, so checkpoints, evaluation and
resuming are unchanged; ``metrics.json`` records ``training_step``.

``trainer.native_step``: ``auto`` (on exactly where it gives those updates: LR, Wide&Deep or DeepFM
under plain SGD over flat buffers (``FlatSGD``: one process, uncompiled, no fp16 scaling), one param
group, float32 weights on CPU, no autocast, a regularizer without a loss penalty (``none``,
``dropout``, ``filter``: their batch transforms still apply), and the native library built), ``true``
(the same, or a one-line error saying why not), ``false`` (autograd and the optimizer).
"""

from __future__ import annotations

import ctypes
import logging

import torch

from ctrbench.data.schema import Batch
from ctrbench.errors import ConfigError
from ctrbench.models.fields import FirstOrder
from ctrbench.models.lr import LR
from ctrbench.models.wdl import WideDeep
from ctrbench.nn import native
from ctrbench.nn.native_first_order import FirstOrderRows
from ctrbench.train.build import auto_setting
from ctrbench.train.flat_sgd import FlatSGD
from ctrbench.train.regularizers import Regularizer

log = logging.getLogger("ctrbench")

_LR_TABLES = ("w_item", "w_cate", "u_item", "u_cate", "w_user")  # the kernel's order


def first_order_parts(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules whose one-weight tables step natively: a ``WideDeep`` (its wide part: first order
    and crosses) and the ``FirstOrder`` parts outside one (DeepFM's)."""
    wide = [m for m in model.modules() if type(m) is WideDeep]
    inside = {id(m.linear) for m in wide}
    return wide + [m for m in model.modules() if type(m) is FirstOrder and id(m) not in inside]


def why_not(model: torch.nn.Module, optimizer: torch.optim.Optimizer, reg: Regularizer, device: torch.device,
            amp_dtype: torch.dtype | None) -> str | None:
    """Why the run's one-weight tables cannot be stepped natively (None: they can); ``""`` where it
    does not apply at all (a model without such tables)."""
    if type(model) is not LR and not first_order_parts(model):
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
    """``trainer.native_step``: whether the run steps its one-weight tables natively (module
    docstring). ``auto`` falls back to autograd silently where the native step does not apply, with
    a warning where only the native library is missing; ``true`` raises a one-line error instead."""
    value = auto_setting(setting, "native_step")
    if value == "false":
        return False
    why = why_not(model, optimizer, reg, device, amp_dtype)
    if why is None:
        return True
    if value == "true":
        raise ConfigError(f"trainer.native_step=true cannot be used here: "
                          f"{why or 'the native step exists for model=lr, wdl and deepfm (their one-weight tables)'}; use auto or false")
    if why.startswith("the native kernels"):
        log.warning(f"{why}; the one-weight tables train with autograd and the optimizer (trainer.native_step=auto)")
    return False


def attach(model: torch.nn.Module, optimizer: FlatSGD) -> "NativeLRStep | None":
    """Switch a model that ``resolve`` accepted to native steps: LR's whole step (returned, for the
    trainer to call), or its ``FirstOrder`` parts' tables (handed to ``optimizer``; None returned)."""
    if type(model) is LR:
        return NativeLRStep(model)
    for part in first_order_parts(model):
        if type(part) is WideDeep:  # its first order and its crosses: the whole wide part
            part.native_rows = FirstOrderRows(part.linear.tables(), mean=True, crosses=(part.cross_cate, part.cross_item))
        else:
            part.native_rows = FirstOrderRows(part.tables(), mean=True)
        optimizer.native_rows.append(part.native_rows)
    return None


class NativeLRStep:
    """The training step of an ``LR`` model under ``FlatSGD`` in ``nn/csrc/lr_step.c`` (module
    docstring): ``gradients(batch)`` then ``apply(alpha)`` or ``discard()``."""

    def __init__(self, model: LR) -> None:
        self.model = model
        self.rows = FirstOrderRows([getattr(model, name) for name in _LR_TABLES], model.pooling == "mean")
        self.out = (ctypes.c_double * 3)()
        self.work = torch.empty(0, dtype=torch.float32)  # the kernel's per-sample buffer
        self._g_bias = 0.0

    def gradients(self, batch: Batch) -> tuple[float, float]:
        """The step's mean loss and squared global gradient norm; the gradients wait in the scratch
        buffers for ``apply`` or ``discard``."""
        rows = self.rows
        B, L, ld, ts = rows.prepare(batch)
        label = batch.label.to(torch.float32).contiguous()
        w, g, mark, row_lists = rows.pointers()
        if self.work.numel() < B:
            self.work = torch.empty(B, dtype=torch.float32)
        work = self.work
        status = rows.lib.ctr_lr_grad_f32(B, L, ld, *(t.data_ptr() for t in ts), label.data_ptr(), rows.mean, self.model.bias.data_ptr(),
                                          w, g, mark, row_lists, rows.n_rows, rows.count, work.data_ptr(), self.out)
        if status != 0:  # nothing was written
            raise ValueError("NativeLRStep: a batch holds an id outside its table")
        self._g_bias = self.out[2]
        return self.out[0], self.out[1]

    def apply(self, alpha: float) -> None:
        """W <- W + alpha g on the rows ``gradients`` found and on the bias; the scratch cleared."""
        self.rows.apply(alpha, self.model.bias, self._g_bias)

    def discard(self) -> None:
        """The scratch cleared, the weights left as they are."""
        self.rows.discard()
