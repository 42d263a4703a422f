"""BaseModel (Embedding&MLP), DIN paper §4.2 and Fig. 2 (left).

Embedding layer -> pooling of the behaviour embeddings -> concat with the candidate -> MLP.

    e_t = [E_item(t); E_cate(t)]
    u   = sum_j e_j                       (sum pooling over real history positions; ``mean`` optional)
    logit = MLP([e_t, u (, e_user)])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.layers import MLP, ItemEmbeddings, PackedHistory, masked_pool, packed_history, pool_rows


class BaseModel(CTRModel):
    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        mlp: Sequence[int] = (200, 80),
        pooling: str = "sum",
        use_user: bool = False,
        use_item: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("sum", "mean"):
            raise ValueError(f"model.pooling must be 'sum' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.use_item = use_item
        self.emb = ItemEmbeddings(vocab, embedding_dim, use_user, use_item)
        in_dim = 2 * self.emb.item_dim + (embedding_dim if use_user else 0)
        self.mlp = MLP(in_dim, list(mlp), act)

    def forward(self, batch: Batch) -> ModelOutput:
        return self.forward_packed(batch, packed_history(batch, self.pack_histories))

    def forward_packed(self, batch: Batch, packed: PackedHistory | None) -> ModelOutput:
        """``forward`` with the batch's ``packed_history`` found by the caller (Wide&Deep shares it)."""
        if packed is not None:  # a mostly padded batch on CPU: the real positions only (nn/layers.py)
            e_t, e_p = self.emb.target_and_packed_history(batch, packed)
            u = pool_rows(e_p, packed.row, len(e_t))
            if self.pooling == "mean":
                u = u / batch.hist_len.clamp(min=1).unsqueeze(1).to(u.dtype)
        else:
            e_t = self.emb.target(batch)
            u = masked_pool(self.emb.history(batch), batch.hist_mask, self.pooling)
        x = torch.cat([e_t, u, *self.emb.profile(batch)], dim=-1)
        return ModelOutput(logits=self.mlp(x).squeeze(-1))

    def variant(self) -> dict:
        return {"pooling": self.pooling, "use_item": self.use_item}
