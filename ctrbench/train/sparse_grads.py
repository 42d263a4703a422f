"""Row-wise embedding gradients where they give the same updates as dense ones: plain SGD.

The papers' tables train with plain SGD at mini-batches of 32 (DIN paper §6.3: learning rate 1,
batch 32; the official code clips the global gradient norm at 5). With dense gradients every step
touches every row of every embedding table three times or more (the zeroed gradient the backward
pass scatters into, the norm that clipping reads, the scaling it writes and the update), although
a batch of 32 uses a few hundred rows: on Amazon Electronics' 63,001 x 18 item table that is most of
a step's time. With ``nn.Embedding(sparse=True)`` the backward pass yields only the batch's rows.

For plain SGD (no momentum, no weight decay) this changes no result beyond float rounding: a row
whose gradient is zero does not move under SGD, and the global norm of a gradient does not count
zero rows. The rows a batch repeats are summed by ``coalesce`` instead of by the dense backward's
accumulation, which can round differently in the last bit. Adam moves rows with a zero gradient too
(their moments decay, their momentum moves them): its tables go row-wise only with
``row_adam.RowAdam``, whose native CPU step moves every row as torch's dense update does, and only
on request (``true``; ``+experiment=dien_table2`` and ``dien_table4`` ask), so that the default run (Adam) keeps its
numbers to the bit: where a model looks a table up more than once a step, the rows are summed in
another order than the dense backward's. Other optimizers with state (momentum) or weight decay keep
dense gradients (``optim=lazy_adam`` is the lazy row-wise Adam, with its own semantics).

``trainer.sparse_embeddings``: ``auto`` (row-wise for plain SGD, on one process), ``true`` (the
same, and Adam with ``RowAdam``; refused with a one-line error where it would change the updates or
cannot run), ``false`` (dense).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.train import row_adam

SETTINGS = ("auto", "true", "false")


def sgd_without_state(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is plain SGD: every group without momentum and weight decay, so that a
    zero gradient leaves a row exactly where it is."""
    if type(optimizer) is not torch.optim.SGD:
        return False
    return all(float(g.get("momentum", 0) or 0) == 0 and float(g.get("weight_decay", 0) or 0) == 0 for g in optimizer.param_groups)


def resolve(setting, optimizer: torch.optim.Optimizer, distributed: bool, compiled: bool, device: torch.device | None = None) -> bool:
    """Whether the trainer switches the model's embedding tables to row-wise gradients (with
    ``torch.optim.Adam`` it then steps them with ``row_adam.RowAdam``)."""
    value = str(setting).lower() if setting is not None else "auto"
    if value not in SETTINGS:
        raise ConfigError(f"trainer.sparse_embeddings={setting!r} is invalid: expected auto, true or false")
    if value == "false":
        return False
    if distributed:
        why_not = "DDP all-reduces dense gradients (trainer.distributed=ddp)"
    elif compiled:
        why_not = "device.compile=true traces dense embedding gradients"
    elif sgd_without_state(optimizer):
        why_not = None
    elif value == "auto":  # Adam goes row-wise only on request (below)
        return False
    else:
        why_not = row_adam.why_not(optimizer, device or torch.device("cpu"))
    if why_not is None:
        return True
    if value == "true":
        raise ConfigError(f"trainer.sparse_embeddings=true cannot be used here: {why_not}; use auto or false")
    return False


# Tables smaller than this many weights keep dense gradients: their whole-table passes cost less than
# the sort that sums a sparse gradient's repeated rows (LR's 63,001 x 1 item weights trained 12-30%
# slower row-wise on Electronics, DeepFM's first-order ones 1% slower; DIN's 63,001 x 18 item table
# 2x faster; Wide&Deep's two 100,003 x 1 cross tables 1-4% faster row-wise, in-process A/Bs on
# 2026-12-05, so the bound sits between 63,001 and 100,003).
MIN_ROW_TABLE = 1 << 16


def use_row_gradients(model: nn.Module, min_weights: int | None = None) -> int:
    """Switch the ``nn.Embedding`` tables of ``model`` with at least ``min_weights`` weights (default
    ``MIN_ROW_TABLE``) to sparse (row-wise) gradients; returns how many."""
    min_weights = MIN_ROW_TABLE if min_weights is None else min_weights
    n = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.weight.numel() >= min_weights:
            module.sparse = True
            n += 1
    return n


@torch.no_grad()
def grad_norm(parameters: Iterable[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The global 2-norm of the gradients of ``parameters`` (``torch.nn.utils.clip_grad_norm_``'s),
    for gradients that may be sparse, and the gradient tensors it measured. The total is the 2-norm
    of the per-parameter norms, in parameter order; a sparse gradient is coalesced first (repeated
    rows summed, in place of ``p.grad``), so its norm is that of the dense gradient it stands for, and
    its values are what is listed. One ``_foreach`` op measures them all."""
    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.tensor(0.0), grads
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0), grads


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) for gradients that may be sparse: the total norm
    (``grad_norm``), then every gradient (a sparse one's values, in place) scaled by
    min(1, max_norm / (total + 1e-6)), as torch does, in one ``_foreach`` op. Returns the total norm
    (a 0-d tensor)."""
    total, grads = grad_norm(parameters)
    if grads:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total
