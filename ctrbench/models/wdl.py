"""Wide&Deep (Cheng et al., DLRS 2016) as a DIN-paper baseline (Table 3).

    logit = wide(x) + deep(x)

* deep: the BaseModel network (embeddings, sum-pooled history, MLP);
* wide: a linear model over the sparse ids (first-order weights of the target item, target
  category and the mean of the history's item and category weights) plus two hand-designed
  **cross-product** features, each hashed into ``n_buckets`` buckets and averaged over the real
  history positions:
    - target category x history category: "has the user engaged with this category before?",
      the memorisation Wide&Deep's wide part exists for;
    - target item x history item: "has the user engaged with this very item before?" (repeat
      behaviour), which a sum-pooled embedding blurs.
  A cross (a, b) goes to bucket hash(a, b) = (a * 1_000_003 + b) mod n_buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.models.embedding_mlp import BaseModel
from ctrbench.models.fields import FirstOrder
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.layers import masked_pool, mean_rows, packed_history
from ctrbench.nn.native_first_order import HoldsNativeRows, first_order_logits


class WideDeep(HoldsNativeRows, CTRModel):
    """``native_rows`` (set per run by the trainer, ``trainer.native_step``, under plain SGD on CPU):
    in training the whole wide part, first order and crosses, is one native call forward and one
    backward (nn/native_first_order.py), the same values up to float rounding; None otherwise."""

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        mlp: Sequence[int] = (200, 80),
        n_buckets: int = 100_003,
        use_user: bool = False,
    ) -> None:
        super().__init__()
        if n_buckets < 1:
            raise ValueError(f"model.n_buckets must be >= 1, got {n_buckets}")
        self.deep = BaseModel(vocab, act, embedding_dim, mlp, "sum", use_user)
        self.linear = FirstOrder(vocab, use_user)
        self.n_buckets = n_buckets
        self.cross_cate = nn.Embedding(n_buckets, 1)
        self.cross_item = nn.Embedding(n_buckets, 1)
        nn.init.zeros_(self.cross_cate.weight)
        nn.init.zeros_(self.cross_item.weight)

    def bucket(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """hash(a, b) of same-shaped id tensors."""
        return (a * 1_000_003 + b) % self.n_buckets

    def forward(self, batch: Batch) -> ModelOutput:
        packed = packed_history(batch, self.pack_histories)  # one for the wide and the deep part
        if self.native_rows is not None and self.training:  # the wide part in native calls
            wide = first_order_logits(self.native_rows, self.linear.bias, batch)
            return ModelOutput(logits=wide + self.deep.forward_packed(batch, packed).logits)
        if packed is not None:  # a mostly padded batch on CPU: the history's real positions only (nn/layers.py)
            row = packed.row
            cc = self.cross_cate(self.bucket(batch.cate[row], packed.cate))  # [P, 1]
            ci = self.cross_item(self.bucket(batch.item[row], packed.item))
            crosses = mean_rows(cc + ci, row, batch.hist_len)
        else:
            cc = self.cross_cate(self.bucket(batch.cate.unsqueeze(1), batch.hist_cate))  # [B, L, 1]
            ci = self.cross_item(self.bucket(batch.item.unsqueeze(1), batch.hist_item))
            crosses = masked_pool(cc + ci, batch.hist_mask, "mean")
        wide = self.linear(batch, packed) + crosses.squeeze(-1)
        return ModelOutput(logits=wide + self.deep.forward_packed(batch, packed).logits)

    def variant(self) -> dict:
        return {"n_buckets": self.n_buckets, "crosses": ["target_cate x hist_cate", "target_item x hist_item"]}
