"""DeepFM (Guo et al., IJCAI 2017) as a DIN-paper baseline (Table 3).

    logit = first_order(x) + FM(f) + MLP([f_1, ..., f_n])

with f the field embeddings [target item, target cate, pooled history items, pooled history cates
(, user)], shared by the FM and the deep part, and FM(f) = sum_{i<j} <f_i, f_j>.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.models.fields import FieldEmbeddings, FirstOrder
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.interactions import fm_second_order
from ctrbench.nn.layers import MLP, packed_history


class DeepFM(CTRModel):
    packed_head = True

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        mlp: Sequence[int] = (200, 80),
        use_user: bool = False,
    ) -> None:
        super().__init__()
        self.fields = FieldEmbeddings(vocab, embedding_dim, use_user)
        self.linear = FirstOrder(vocab, use_user)
        self.mlp = MLP(self.fields.n_fields * embedding_dim, list(mlp), act)

    def forward(self, batch: Batch) -> ModelOutput:
        packed = packed_history(batch, self.pack_histories)  # one for the fields and the first-order part
        if packed is not None:  # a mostly padded batch on CPU: the real positions only (nn/layers.py)
            e_t, e_p, profile = self.fields.lookup_packed(batch, packed)
            first = self.linear(batch, packed)
            return ModelOutput(logits=self.packed_layers(self.combine_packed, first, e_t, e_p, packed.row, *profile))
        f = self.fields(batch)
        logit = self.linear(batch) + fm_second_order(f) + self.mlp(f.flatten(1)).squeeze(-1)
        return ModelOutput(logits=logit)

    def combine_packed(self, first: torch.Tensor, e_t: torch.Tensor, e_p: torch.Tensor, row: torch.Tensor,
                       *profile: torch.Tensor) -> torch.Tensor:
        """The layers after the lookups of a packed batch (the first-order logits, and
        ``FieldEmbeddings.lookup_packed``'s outputs) -> logits [B]: first order + FM + MLP, as
        ``forward``; what ``trainer.compile_packed`` compiles."""
        f = self.fields.pool_packed(e_t, e_p, list(profile), row)
        return first + fm_second_order(f) + self.mlp(f.flatten(1)).squeeze(-1)
