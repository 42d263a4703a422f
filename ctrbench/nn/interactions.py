"""Feature-interaction layers over field embeddings f_1..f_n (each [B, d]): the FM second-order
term (DeepFM) and the inner / outer product layers (PNN)."""

from __future__ import annotations

import torch


def fm_second_order(fields: torch.Tensor) -> torch.Tensor:
    """FM's pairwise term, sum_{i<j} <f_i, f_j> = 1/2 * sum_k [(sum_i f_ik)^2 - sum_i f_ik^2].
    fields [B, n, d] -> [B]."""
    s = fields.sum(dim=1)
    return 0.5 * (s.pow(2) - fields.pow(2).sum(dim=1)).sum(dim=-1)


def _pairs(fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, n(n-1)/2, d] twice: f_i and f_j of every pair i < j, by ``index_select`` (whose backward
    is one ``index_add_``; an advanced index ``fields[:, i]`` backpropagates through an accumulating
    ``index_put_``, which sorts its indices first: ~5% of a batch-32 PNN step)."""
    n = fields.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=fields.device)
    return fields.index_select(1, i), fields.index_select(1, j)


def inner_products(fields: torch.Tensor) -> torch.Tensor:
    """IPNN: <f_i, f_j> for every pair i < j, [B, n, d] -> [B, n(n-1)/2]."""
    f_i, f_j = _pairs(fields)
    return (f_i * f_j).sum(dim=-1)


def outer_products(fields: torch.Tensor) -> torch.Tensor:
    """OPNN: the outer product of every pair i < j, flattened, [B, n, d] -> [B, n(n-1)/2 * d * d]."""
    f_i, f_j = _pairs(fields)
    return torch.einsum("bpd,bpe->bpde", f_i, f_j).flatten(1)
