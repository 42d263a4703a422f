"""Plain SGD and gradient-norm clipping over one flat buffer of the dense parameters.

The papers' tables train with plain SGD at mini-batches of 32 (DIN paper §6.3), clipping the global
gradient norm at 5 (the official code). At that batch size a step's arithmetic is small and the
number of torch ops decides its time (each costs 3–10 us whatever its size). On CPU,
``torch.optim.SGD`` updates one parameter at a time in Python (its ``foreach`` path is for GPUs,
and it loops anyway when a gradient is sparse), and ``clip_grad_norm_`` measures and scales each
gradient with its own op: with ~20 parameters that is ~60 small ops and ~15% of a DIN step.

Here the dense-gradient parameters of each param group share one storage, and their gradients
another: every parameter and its ``.grad`` are views into them, which the backward pass accumulates
into in place (``AccumulateGrad`` adds into a defined gradient; into zeros that is exact). Zeroing,
measuring and updating are then one op each per group, and the clipping factor is folded into
the update instead of scaling every gradient first:

    zero:    G <- 0                                       (instead of setting every .grad to None)
    clip:    n <- ||(||G||_2, ||g_sparse||_2, ...)||_2;  c <- min(1, max_norm / (n + 1e-6))
    update:  W <- W - (lr c) G                            (c = 1 without clipping: torch's SGD update)

The norm is ``sparse_grads.grad_norm`` (torch's formula, in one ``_foreach_norm``), with the squared
norm of the tables that ``native_rows`` step (train/native_step.py) added; ``FlatSGD`` is a
``torch.optim.SGD`` whose ``step`` is that update. Embedding tables with row-wise (sparse) gradients
(``sparse_grads.py``) or of ``MIN_OWN_TABLE`` weights or more keep their own gradients (and one
norm and one update op each). The updates are torch's up to float rounding: the global norm sums
the same squares in another order, and a clipped step multiplies lr by c rather than the gradient
by c; a step that clipping leaves alone (c = 1) is torch's exactly. Only plain SGD (no momentum,
no weight decay, not ``maximize``), on one process, uncompiled, without fp16 loss scaling;
``trainer.flat_sgd``: ``auto`` (exactly then), ``false`` (torch's optimizer step and clipping).
"""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.train import sparse_grads

SETTINGS = ("auto", "false")

# Embedding tables of at least this many weights keep their own gradients: the backward builds a
# table's dense gradient as a new whole-table buffer, so adding it into the flat one would cost a
# pass over the table, more than the ops saved (Wide&Deep's 100,003 x 1 cross tables); row-wise
# (sparse) gradients always stay outside.
MIN_OWN_TABLE = 1 << 15


def resolve(setting, optimizer: torch.optim.Optimizer, distributed: bool, compiled: bool, scaled: bool) -> bool:
    """Whether the trainer runs ``optimizer``'s steps over flat buffers (``FlatSGD``)."""
    value = str(setting).lower() if setting is not None else "auto"
    if value not in SETTINGS:
        raise ConfigError(f"trainer.flat_sgd={setting!r} is invalid: expected auto or false")
    if value == "false" or distributed or compiled or scaled or not sparse_grads.sgd_without_state(optimizer):
        return False
    return not any(g.get("maximize", False) or g.get("nesterov", False) for g in optimizer.param_groups)


class FlatSGD(torch.optim.SGD):
    """Plain SGD over flat buffers (see the module docstring), built from a plain ``optimizer``
    (``resolve`` says when): the same param groups and settings, whose dense parameters become one
    flat parameter per group (and dtype and device). Its state dict, learning rates (which a
    scheduler changes between steps) and hooks are torch's SGD's, its ``step`` plain SGD with the
    clipping factor folded in (see the module docstring); ``zero_grad`` zeroes the
    flat gradients in place (dropping them, as ``set_to_none`` does, would drop the buffers the
    model's gradients are views of).

    The model's parameters keep their identity: their ``.data`` becomes a view into the flat
    parameter and their ``.grad`` a view into its gradient, so ``load_state_dict`` (which copies into
    them) keeps them there. Embedding tables with row-wise gradients (``sparse=True``) or of
    ``MIN_OWN_TABLE`` weights or more stay as they are (``tables``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.SGD) -> None:
        tables = {id(m.weight) for m in model.modules()
                  if isinstance(m, nn.Embedding) and (m.sparse or m.weight.numel() >= MIN_OWN_TABLE)}
        self.flat: list[nn.Parameter] = []
        self.tables: list[nn.Parameter] = []
        groups = []
        for group in optimizer.param_groups:
            dense = [p for p in group["params"] if id(p) not in tables]
            rows = [p for p in group["params"] if id(p) in tables]
            kinds = dict.fromkeys((p.dtype, p.device) for p in dense)  # first-seen order
            flat = [_flatten([p for p in dense if (p.dtype, p.device) == kind]) for kind in kinds]
            self.flat += flat
            self.tables += rows
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": flat + rows})
        super().__init__(groups)
        self.clip_coef = 1.0  # the factor clip_grad_norm_ found, which the next step applies
        # one-weight tables whose gradient a native backward keeps outside autograd (train/native_step.py:
        # Wide&Deep's and DeepFM's first-order parts; one param group): counted in the norm, moved by step
        self.native_rows: list = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.flat:
            p.grad.zero_()
        for p in self.tables:
            p.grad = None
        for rows in self.native_rows:
            rows.discard()
        self.clip_coef = 1.0

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """The global norm of the flat parameters' and the tables' gradients, as torch's
        ``clip_grad_norm_`` measures it (``sparse_grads.grad_norm``); returns it. Its factor
        c = min(1, max_norm / (norm + 1e-6)) is applied by the next ``step`` rather than to the
        gradients, which are left as they are."""
        total, _ = sparse_grads.grad_norm([*self.flat, *self.tables])
        if self.native_rows:
            total = torch.sqrt(total.double() ** 2 + sum(rows.sumsq() for rows in self.native_rows)).float()
        self.clip_coef = min(1.0, max_norm / (float(total) + 1e-6))
        return total

    @torch.no_grad()
    def step(self, closure=None):
        """Plain SGD with the clipping factor c of ``clip_grad_norm_`` (1 without clipping): W <- W -
        (lr c) g, one op per flat buffer and per table (torch's clip would first scale every gradient
        by c, one more pass over each). Without clipping, or when c = 1, exactly torch's SGD update."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha = -float(group["lr"]) * self.clip_coef
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=alpha)
        for rows in self.native_rows:  # (only with one param group: native_step.why_not)
            rows.apply(-float(self.param_groups[0]["lr"]) * self.clip_coef)
        self.clip_coef = 1.0
        return loss


def _flatten(params: list[nn.Parameter]) -> nn.Parameter:
    """One flat parameter holding ``params`` and a zeroed gradient; each parameter's ``.data`` and
    ``.grad`` become views into them."""
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset:offset + n].view_as(p)
        p.grad = flat.grad[offset:offset + n].view_as(p)
        offset += n
    return flat
