"""Adam with lazy (row-wise) updates of the embedding tables: ``optim=lazy_adam``.

Dense Adam (``optim=adam``) updates *every* row of every embedding table at every step: rows that
the batch did not touch have a zero gradient but their moments decay and they keep moving. Lazy
Adam -- the semantics of TensorFlow's ``LazyAdamOptimizer`` and of torch's ``SparseAdam`` --
updates only the rows that occur in the batch, with the usual Adam formulas applied to those rows:

    m_j <- b1 m_j + (1 - b1) g_j,   v_j <- b2 v_j + (1 - b2) g_j^2          (rows j of the batch)
    w_j <- w_j - lr * (m_j / (1 - b1^t)) / (sqrt(v_j / (1 - b2^t)) + eps)

with t the global step. Its cost per step is proportional to the batch's distinct ids instead of
the table sizes, which is most of the optimizer's time on CPU with large vocabularies. Every other
parameter (the MLPs, attention, activations) gets plain Adam: torch's own (``torch.optim.adam.adam``, what
``torch.optim.Adam`` runs), so those parameters follow ``torch.optim.Adam`` bit for bit.

Which parameters are lazy: every ``nn.Embedding`` weight of the model, whose module the trainer
switches to sparse gradients (``sparse_embeddings``). A dense gradient on such a table (a
regularizer's penalty on gathered rows, or L2 over the whole table) is treated row-wise too: the
rows with a non-zero gradient are the batch's rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.adam import adam


class LazyAdam(torch.optim.Optimizer):
    sparse_embeddings = True  # the trainer turns the model's nn.Embedding modules to sparse gradients

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"optim: invalid lazy Adam settings lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @staticmethod
    def mark_lazy(model: nn.Module) -> int:
        """Switch the model's embedding tables to sparse gradients and mark them row-wise; returns how many."""
        n = 0
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.sparse = True
                module.weight._lazy_rows = True
                n += 1
        return n

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            dense: tuple[list, list, list, list, list] = ([], [], [], [], [])  # params, grads, exp_avgs, exp_avg_sqs, steps
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad
                if not (g.is_sparse or getattr(p, "_lazy_rows", False)):
                    for lst, x in zip(dense, (p, g, m, v, state["step"])):
                        lst.append(x)
                    continue
                state["step"] += 1
                t = float(state["step"])
                bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
                step_size = lr / bc1
                rows, vals = _rows_of(g)
                if rows.numel() == 0:
                    continue
                w = p[rows]
                if wd:
                    vals = vals + wd * w
                m_r = m[rows].mul_(b1).add_(vals, alpha=1 - b1)
                v_r = v[rows].mul_(b2).addcmul_(vals, vals, value=1 - b2)
                m[rows] = m_r
                v[rows] = v_r
                denom = (v_r / bc2).sqrt_().add_(eps)
                p[rows] = w.addcdiv_(m_r, denom, value=-step_size)
            if dense[0]:  # every other parameter: torch's own Adam (it advances the steps), as torch.optim.Adam runs it
                params, grads, exp_avgs, exp_avg_sqs, steps = dense
                adam(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps,
                    amsgrad=False, beta1=b1, beta2=b2, lr=lr, weight_decay=wd, eps=eps, maximize=False,
                )
        return loss


def _rows_of(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row indices, their gradient rows) of a 2-D gradient: the coalesced rows of a sparse one, the
    non-zero rows of a dense one."""
    if g.is_sparse:
        g = g.coalesce()
        rows, vals = g.indices()[0], g.values()
        return rows, vals
    nz = g.ne(0).any(dim=1)
    rows = nz.nonzero().squeeze(1)
    return rows, g[rows]
