"""DIN: Deep Interest Network, DIN paper §4.3 and Fig. 2 (right).

BaseModel with the sum pooling replaced by the local activation unit (Eq. 3): the user's interest
representation is computed *for the candidate*, as a weighted sum of the behaviours, each weighted
by its relevance to the candidate:

    e_t   = [E_item(t); E_cate(t)]                           candidate (query)
    e_j   = [E_item(h_j); E_cate(h_j)]                       behaviours (keys = values)
    w_j   = a(e_j, e_t)                                      activation unit, Eq. (3)
    v_U   = sum_j w_j e_j                                    no softmax by default (§4.3)
    logit = MLP([e_t, v_U (, e_user)])

Switches (recorded in metrics.json): ``attention_inputs`` (``qk_diff_prod`` as the authors' code,
or ``outer``, the paper's out product) and ``attention_softmax`` (false as the paper; true as the code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.attention import LocalActivationUnit
from ctrbench.nn.layers import MLP, ItemEmbeddings, packed_history, pool_rows


class DIN(CTRModel):
    # evaluation on CPU: the attention MLP's activations grow with rows x history positions, so
    # batches of 384 rows (the other models prefer 2,048) and at most 8,192 positions, which keeps a
    # batch's [positions, 80] activations near the size of a core's L2 (docs/performance.md)
    eval_rows_cpu = 384
    eval_positions_cpu = 8192
    packed_head = True

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        mlp: Sequence[int] = (200, 80),
        attention_hidden: Sequence[int] = (80, 40),
        attention_inputs: str = "qk_diff_prod",
        attention_softmax: bool = False,
        use_user: bool = False,
        attention_act: ActFactory | None = None,
    ) -> None:
        super().__init__()
        self.emb = ItemEmbeddings(vocab, embedding_dim, use_user)
        D = self.emb.item_dim
        self.attention = LocalActivationUnit(
            D, list(attention_hidden), attention_act or act, attention_inputs, attention_softmax
        )
        self.mlp = MLP(2 * D + (embedding_dim if use_user else 0), list(mlp), act)

    def forward(self, batch: Batch) -> ModelOutput:
        packed = packed_history(batch, self.pack_histories and self.attention.inputs == "qk_diff_prod")
        if packed is not None:  # a mostly padded batch on CPU: the real positions only (nn/layers.py)
            e_t, e_p = self.emb.target_and_packed_history(batch, packed)  # [B, D], [P, D]
            L = batch.hist_mask.shape[1]
            logits = self.packed_layers(self.attend_packed, e_t, e_p, packed.row, packed.pos, L, *self.emb.profile(batch))
            return ModelOutput(logits=logits)
        e_t = self.emb.target(batch)  # [B, D]
        e_h = self.emb.history(batch)  # [B, L, D], zero at padding
        w = self.attention(e_t, e_h, batch.hist_mask)  # [B, L], Eq. (3)
        v_u = torch.einsum("bl,bld->bd", w, e_h)
        x = torch.cat([e_t, v_u, *self.emb.profile(batch)], dim=-1)
        return ModelOutput(logits=self.mlp(x).squeeze(-1))

    def attend_packed(self, e_t: torch.Tensor, e_p: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, L: int,
                      *profile: torch.Tensor) -> torch.Tensor:
        """The layers after the lookups of a packed batch: the candidates e_t [B, D], the real history
        positions e_p [P, D] (samples ``row``, places ``pos`` of the [B, L] grid) -> logits [B].
        ``forward``'s padded form up to float rounding; what ``trainer.compile_packed`` compiles."""
        w = self.attention.forward_packed(e_t, e_p, row, pos, (len(e_t), L))  # [P], Eq. (3)
        v_u = pool_rows(w.unsqueeze(1) * e_p, row, len(e_t))
        x = torch.cat([e_t, v_u, *profile], dim=-1)
        return self.mlp(x).squeeze(-1)

    def variant(self) -> dict:
        return {"attention_inputs": self.attention.inputs, "attention_softmax": self.attention.softmax}
