"""LR: logistic regression, one learned weight per id of every field (DIN paper Table 3's LR row).

    logit = b + w_item[t] + w_cate[t] + pool_j (u_item[h_j] + u_cate[h_j])  (+ w_user[u])

The history is its own field (separate weights from the target's), pooled over real positions
(``mean`` by default so that long histories do not dominate; ``sum`` available). LR has no hidden
layers, so the ``act`` config does not apply to it.
"""

from __future__ import annotations

import torch
from torch import nn  # noqa: F401

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.layers import field_embedding, masked_pool, mean_rows, packed_history, pool_rows


class LR(CTRModel):
    def __init__(self, vocab: Vocab, act: ActFactory | None = None, pooling: str = "mean", use_user: bool = False) -> None:
        super().__init__()
        if pooling not in ("sum", "mean"):
            raise ValueError(f"model.pooling must be 'sum' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.w_item = field_embedding(vocab.n_items, 1, "item")
        self.w_cate = field_embedding(vocab.n_cates, 1, "cate")
        self.u_item = field_embedding(vocab.n_items, 1, "item")
        self.u_cate = field_embedding(vocab.n_cates, 1, "cate")
        self.w_user = field_embedding(vocab.n_users, 1, "user") if use_user else None
        for t in self.embedding_tables():
            nn.init.zeros_(t.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> ModelOutput:
        z = self.bias + self.w_item(batch.item).squeeze(-1) + self.w_cate(batch.cate).squeeze(-1)
        packed = packed_history(batch, self.pack_histories)
        if packed is not None:  # a mostly padded batch on CPU: the history's real positions only (nn/layers.py)
            row = packed.row
            hist = self.u_item(packed.item) + self.u_cate(packed.cate)  # [P, 1]
            pooled = mean_rows(hist, row, batch.hist_len) if self.pooling == "mean" else pool_rows(hist, row, len(z))
        else:
            hist = self.u_item(batch.hist_item) + self.u_cate(batch.hist_cate)  # [B, L, 1]
            pooled = masked_pool(hist, batch.hist_mask, self.pooling)
        z = z + pooled.squeeze(-1)
        if self.w_user is not None:
            z = z + self.w_user(batch.user).squeeze(-1)
        return ModelOutput(logits=z)

    def variant(self) -> dict:
        return {"pooling": self.pooling}
