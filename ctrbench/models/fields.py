"""Field embeddings shared by the feature-interaction baselines (Wide&Deep, PNN, DeepFM): the target
item, the target category, the sum-pooled history items, the sum-pooled history categories (and the
user when used), each [B, embedding_dim]; plus first-order (one weight per id) terms."""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.nn.native_first_order import HoldsNativeRows, first_order_logits
from ctrbench.nn.layers import ItemEmbeddings, PackedHistory, field_embedding, masked_pool, mean_rows, packed_history, pool_rows


class FieldEmbeddings(nn.Module):
    def __init__(self, vocab: Vocab, dim: int, use_user: bool = False) -> None:
        super().__init__()
        self.emb = ItemEmbeddings(vocab, dim, use_user)
        self.n_fields = 4 + (1 if use_user else 0)

    def forward(self, batch: Batch, packed: PackedHistory | bool | None = None) -> torch.Tensor:
        """[B, n_fields, dim]; ``packed``: the batch's ``packed_history`` (nn/layers.py), to look up
        and pool the history's real positions only (the same values up to rounding), or None (the
        padded grid); a bool (a model's ``pack_histories``, as this argument once was) finds it here."""
        if isinstance(packed, bool):
            packed = packed_history(batch, packed)
        if packed is not None:  # a mostly padded batch on CPU: the real positions only (nn/layers.py)
            return self.pool_packed(*self.lookup_packed(batch, packed), packed.row)
        m = batch.hist_mask
        f = [
            self.emb.item(batch.item),
            self.emb.cate(batch.cate),
            masked_pool(self.emb.item(batch.hist_item), m, "sum"),
            masked_pool(self.emb.cate(batch.hist_cate), m, "sum"),
            *self.emb.profile(batch),
        ]
        return torch.stack(f, dim=1)

    def lookup_packed(self, batch: Batch, packed: PackedHistory) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """A packed batch's lookups: the targets' [item; cate] [B, 2 dim], the real history positions'
        [P, 2 dim] (one lookup per table) and the profile fields ([user] [B, dim], or none)."""
        e_t, e_p = self.emb.target_and_packed_history(batch, packed)
        return e_t, e_p, self.emb.profile(batch)

    def pool_packed(self, e_t: torch.Tensor, e_p: torch.Tensor, profile: list[torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        """``lookup_packed``'s outputs -> the fields [B, n_fields, dim], the history sum-pooled."""
        pooled = pool_rows(e_p, row, len(e_t))
        d = self.emb.dim
        return torch.stack([e_t[:, :d], e_t[:, d:], pooled[:, :d], pooled[:, d:], *profile], dim=1)


class FirstOrder(HoldsNativeRows, nn.Module):
    """sum of one weight per id: target item, target category, and the mean over real history
    positions of history-item and history-category weights (+ user), plus a bias.

    ``native_rows``: set per run by the trainer (``trainer.native_step``, under plain SGD on CPU) to
    a ``FirstOrderRows``: in training the logit is then one native call forward and one backward,
    whose table gradients go to that object's scratch for the optimizer (nn/native_first_order.py);
    the same values up to float rounding. None for a module built alone and in evaluation."""

    def __init__(self, vocab: Vocab, use_user: bool = False) -> None:
        super().__init__()
        self.item = field_embedding(vocab.n_items, 1, "item")
        self.cate = field_embedding(vocab.n_cates, 1, "cate")
        self.h_item = field_embedding(vocab.n_items, 1, "item")
        self.h_cate = field_embedding(vocab.n_cates, 1, "cate")
        self.user = field_embedding(vocab.n_users, 1, "user") if use_user else None
        for t in (self.item, self.cate, self.h_item, self.h_cate, self.user):
            if t is not None:
                nn.init.zeros_(t.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def tables(self) -> list[nn.Embedding | None]:
        """target item, target category, history items, history categories, user (or None)."""
        return [self.item, self.cate, self.h_item, self.h_cate, self.user]

    def forward(self, batch: Batch, packed: PackedHistory | None = None) -> torch.Tensor:
        """[B]; ``packed``: the batch's ``packed_history`` (nn/layers.py), to look up and pool the
        history's real positions only (the same values up to rounding), or None (the padded grid)."""
        if self.native_rows is not None and self.training:
            return first_order_logits(self.native_rows, self.bias, batch)
        if packed is not None:
            return self.pool_packed(*self.lookup_packed(batch, packed), packed.row, batch.hist_len)
        z = self.bias + self.item(batch.item).squeeze(-1) + self.cate(batch.cate).squeeze(-1)
        hist = self.h_item(batch.hist_item) + self.h_cate(batch.hist_cate)
        z = z + masked_pool(hist, batch.hist_mask, "mean").squeeze(-1)
        if self.user is not None:
            z = z + self.user(batch.user).squeeze(-1)
        return z

    def lookup_packed(self, batch: Batch, packed: PackedHistory) -> tuple[torch.Tensor, torch.Tensor]:
        """A packed batch's lookups: the targets' weights, item + category (+ user) [B, 1], and the
        real history positions' item + category weights [P, 1]."""
        target = self.item(batch.item) + self.cate(batch.cate)
        if self.user is not None:
            target = target + self.user(batch.user)
        return target, self.h_item(packed.item) + self.h_cate(packed.cate)

    def pool_packed(self, target: torch.Tensor, hist: torch.Tensor, row: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
        """``lookup_packed``'s outputs -> the first-order logit [B]: bias + the targets' weights + the
        mean of the history's over its real positions."""
        return self.bias + (target + mean_rows(hist, row, hist_len)).squeeze(-1)
