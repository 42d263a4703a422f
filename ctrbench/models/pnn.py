"""PNN: Product-based Neural Network (Qu et al., ICDM 2016) as a DIN-paper baseline (Table 3).

    f     = field embeddings [target item, target cate, pooled history items, pooled history cates (, user)]
    p     = inner products <f_i, f_j> (IPNN) | flattened outer products f_i f_j^T (OPNN) | both, i < j
    logit = MLP([f_1, ..., f_n, p])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.models.fields import FieldEmbeddings
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.interactions import inner_products, outer_products
from ctrbench.nn.layers import MLP, packed_history

PRODUCTS = ("inner", "outer", "both")


class PNN(CTRModel):
    packed_head = True

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        mlp: Sequence[int] = (200, 80),
        product: str = "inner",
        use_user: bool = False,
    ) -> None:
        super().__init__()
        if product not in PRODUCTS:
            raise ValueError(f"model.product must be one of {PRODUCTS}, got {product!r}")
        self.product = product
        self.fields = FieldEmbeddings(vocab, embedding_dim, use_user)
        n, d = self.fields.n_fields, embedding_dim
        pairs = n * (n - 1) // 2
        width = {"inner": pairs, "outer": pairs * d * d, "both": pairs + pairs * d * d}[product]
        self.mlp = MLP(n * d + width, list(mlp), act)

    def forward(self, batch: Batch) -> ModelOutput:
        packed = packed_history(batch, self.pack_histories)
        if packed is not None:  # a mostly padded batch on CPU: the real positions only (nn/layers.py)
            e_t, e_p, profile = self.fields.lookup_packed(batch, packed)
            return ModelOutput(logits=self.packed_layers(self.combine_packed, e_t, e_p, packed.row, *profile))
        return ModelOutput(logits=self.products_mlp(self.fields(batch)))

    def combine_packed(self, e_t: torch.Tensor, e_p: torch.Tensor, row: torch.Tensor, *profile: torch.Tensor) -> torch.Tensor:
        """The layers after the lookups of a packed batch (``FieldEmbeddings.lookup_packed``'s outputs)
        -> logits [B]; what ``trainer.compile_packed`` compiles."""
        return self.products_mlp(self.fields.pool_packed(e_t, e_p, list(profile), row))

    def products_mlp(self, f: torch.Tensor) -> torch.Tensor:
        """The fields [B, n, d] -> logits [B]: the product layer and the MLP."""
        parts = [f.flatten(1)]
        if self.product in ("inner", "both"):
            parts.append(inner_products(f))
        if self.product in ("outer", "both"):
            parts.append(outer_products(f))
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)

    def variant(self) -> dict:
        return {"product": self.product}
