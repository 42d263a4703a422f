"""Layers shared by the models: id embeddings, the MLP, masked pooling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.nn.activations import ActFactory


class MLP(nn.Module):
    """Linear -> activation for each hidden width, then a final Linear to ``out_dim`` (no activation)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], act: ActFactory, out_dim: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), act(width)]
            in_dim = width
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ItemEmbeddings(nn.Module):
    """Item and category tables shared by the target and the history (and an optional user table).

    An item is represented as [e_item; e_cate] (2 * dim wide), as in the DIN and DIEN code.
    Row 0 of every table is padding / unknown; padded history positions are also zeroed by the mask.
    """

    def __init__(self, vocab: Vocab, dim: int, use_user: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.item = nn.Embedding(vocab.n_items, dim, padding_idx=0)
        self.cate = nn.Embedding(vocab.n_cates, dim, padding_idx=0)
        self.user = nn.Embedding(vocab.n_users, dim, padding_idx=0) if use_user else None
        for table in self.tables():
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[0].zero_()

    def tables(self) -> list[nn.Embedding]:
        return [t for t in (self.item, self.cate, self.user) if t is not None]

    @property
    def item_dim(self) -> int:
        return 2 * self.dim

    def target(self, batch: Batch) -> torch.Tensor:
        return torch.cat([self.item(batch.item), self.cate(batch.cate)], dim=-1)

    def history(self, batch: Batch) -> torch.Tensor:
        e = torch.cat([self.item(batch.hist_item), self.cate(batch.hist_cate)], dim=-1)
        return e * batch.hist_mask.unsqueeze(-1).to(e.dtype)

    def profile(self, batch: Batch) -> list[torch.Tensor]:
        return [self.user(batch.user)] if self.user is not None else []


def masked_pool(x: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool [B, L, D] over real positions: ``sum`` or ``mean`` (an empty history pools to 0)."""
    x = x * mask.unsqueeze(-1).to(x.dtype)
    total = x.sum(dim=1)
    if mode == "sum":
        return total
    if mode == "mean":
        return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    raise ValueError(f"unknown pooling {mode!r}: expected 'sum' or 'mean'")
