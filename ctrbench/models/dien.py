"""DIEN: Deep Interest Evolution Network (Zhou et al., AAAI 2019), §4.

    e_j      = [E_item(h_j); E_cate(h_j)]                     behaviour embeddings
    h_t      = GRU(e_1..e_t)                                  interest extractor, Eqs. (2)-(5)
    L_aux    = Eq. (6) on (h_t, e_{t+1}, ê_{t+1})              ê: the Batcher's negative behaviours
    a_t      = softmax_t(h_t W e_a)                           attention to the target e_a, Eq. (8)
    h'_T     = AUGRU(h_1..h_T; a)                             interest evolving layer, Eqs. (11)-(12)
    logit    = MLP([e_a, sum_j e_j, h'_T (, e_user)])            (mlp_inputs=code adds e_a * sum_j e_j)
    L        = L_target + alpha * L_aux                       Eq. (7)

Switches (recorded in metrics.json): ``evolution`` = augru (default) | agru (Eq. 10) | aigru (Eq. 9) |
gru_att (a second plain GRU over h_t, then attention on the second GRU's states and attention
pooling of them: the paper's "two layer GRU attention", as in the official code);
``attention`` = bilinear (Eq. 8) | mlp (the official code's [q, k, q-k, q*k] MLP with softmax);
``augru_formula`` = paper | code; ``aux_net`` = inner (Eq. 6's sigmoid of the inner product) | mlp
(the official code's 100-50 network); ``aux_reduction`` = paper (Eq. 6: sum over t, mean over
samples) | mean; ``aux_alpha`` (α of Eq. 7; 0 switches the auxiliary loss off); ``mlp_inputs`` =
paper ([e_a, Σe_j, h'_T]) | code (adds the official code's e_a ⊙ Σe_j).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.attention import LocalActivationUnit
from ctrbench.nn.layers import MLP, ItemEmbeddings
from ctrbench.nn.sequence import EVOLUTIONS, BilinearAttention, EvolvingGRU, auxiliary_loss, run_gru


class DIEN(CTRModel):
    needs_negative_history = True
    # the recurrences step over the real positions of each length group (packing, a Python loop
    # whose trip count is data): torch.compile breaks the graph at every step and was slower
    compilable = False
    # evaluation batches on CPU hold at most 2,048 rows x 100 positions (what histories cut at the
    # protocol's 100 gave): the DIEN protocol leaves evaluation histories uncut (dataset.eval_max_len),
    # and a Books-size stream of 35,000 behaviours would otherwise pad a 2,048-row batch to 10 GB
    eval_positions_cpu = 2048 * 100
    has_recurrence = True

    @property
    def has_unused_parameters(self) -> bool:
        """The official code's auxiliary network (``aux_net=mlp``) is idle when ``aux_alpha=0``."""
        return self.aux_net is not None and self.aux_alpha == 0

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        hidden: int = 36,
        mlp: Sequence[int] = (200, 80),
        evolution: str = "augru",
        attention: str = "bilinear",
        attention_hidden: Sequence[int] = (80, 40),
        augru_formula: str = "paper",
        aux_alpha: float = 1.0,
        aux_net: str = "inner",
        aux_hidden: Sequence[int] = (100, 50),
        aux_reduction: str = "paper",
        use_user: bool = False,
        mlp_inputs: str = "paper",
        attention_act: ActFactory | None = None,
    ) -> None:
        super().__init__()
        if evolution not in EVOLUTIONS:
            raise ValueError(f"model.evolution must be one of {EVOLUTIONS}, got {evolution!r}")
        if attention not in ("bilinear", "mlp"):
            raise ValueError(f"model.attention must be 'bilinear' or 'mlp', got {attention!r}")
        if aux_net not in ("inner", "mlp"):
            raise ValueError(f"model.aux_net must be 'inner' or 'mlp', got {aux_net!r}")
        if mlp_inputs not in ("paper", "code"):
            raise ValueError(f"model.mlp_inputs must be 'paper' or 'code', got {mlp_inputs!r}")
        if aux_alpha < 0:
            raise ValueError(f"model.aux_alpha must be >= 0, got {aux_alpha!r}")
        self.emb = ItemEmbeddings(vocab, embedding_dim, use_user)
        D = self.emb.item_dim
        if aux_net == "inner" and hidden != D:
            raise ValueError(f"model.aux_net=inner needs model.hidden == 2 * model.embedding_dim ({D}), got model.hidden={hidden}")
        self.evolution, self.attention_kind, self.augru_formula = evolution, attention, augru_formula
        self.aux_alpha, self.aux_net_kind, self.aux_reduction = float(aux_alpha), aux_net, aux_reduction
        self.mlp_inputs = mlp_inputs
        self.extractor = nn.GRU(D, hidden, batch_first=True)
        if attention == "bilinear":
            self.attention = BilinearAttention(hidden, D)
        else:
            self.query = nn.Linear(D, hidden)
            self.attention = LocalActivationUnit(hidden, list(attention_hidden), attention_act or act, softmax=True)
        if evolution == "gru_att":
            self.evolver = nn.GRU(hidden, hidden, batch_first=True)
        else:
            self.evolver = EvolvingGRU(hidden, hidden, evolution, augru_formula)
        self.aux_net = MLP(hidden + D, list(aux_hidden), lambda n: nn.Sigmoid()) if aux_net == "mlp" else None
        if self.aux_net is not None:  # the code's aux net uses sigmoid hidden units
            self.aux_net.acts = nn.ModuleList(_Sigmoid() for _ in self.aux_net.acts)
        n_in = (3 if mlp_inputs == "code" else 2) * D + hidden + (embedding_dim if use_user else 0)
        self.mlp = MLP(n_in, list(mlp), act)

    def attend(self, h: torch.Tensor, e_a: torch.Tensor, mask: torch.Tensor, native: bool = False) -> torch.Tensor:
        if self.attention_kind == "bilinear":
            return self.attention(h, e_a, mask, native=native)
        return self.attention(self.query(e_a), h, mask)

    def forward(self, batch: Batch) -> ModelOutput:
        mask = batch.hist_mask
        with_aux = self.training and self.aux_alpha > 0 and batch.neg_hist_item is not None
        native = self.native_recurrence and self.training  # the recurrences in csrc/gru_scan.c (same values up to rounding)
        if with_aux:
            # one lookup per table: with a dense optimizer (Adam, the DIEN table's) the backward then
            # builds one whole-table gradient per table instead of three; with row-wise gradients and
            # native (trainer.native_recurrence), one native call each way (nn/native_lookup.py)
            e_a, e_h, e_neg = self.emb.target_history_negatives(batch, native=native)
        else:
            e_a, e_h = self.emb.target(batch), self.emb.history(batch)
        h = run_gru(self.extractor, e_h, batch.hist_len, native=native)  # [B, L, H], Eqs. (2)-(5)
        if self.evolution == "gru_att":
            # two-layer GRU attention: a second GRU over h, attention on *its* states, then pooling
            h2 = run_gru(self.evolver, h, batch.hist_len, native=native)
            a2 = self.attend(h2, e_a, mask, native=native)  # [B, L], Eq. (8) on the second GRU's states
            interest = torch.einsum("bl,blh->bh", a2, h2)
        else:
            a = self.attend(h, e_a, mask, native=native)  # [B, L], Eq. (8)
            interest = self.evolver(h, a, mask, native=native)  # h'_T
        pooled = e_h.sum(dim=1)
        extra = [e_a * pooled] if self.mlp_inputs == "code" else []  # the official code's e_a ⊙ Σe_h
        x = torch.cat([e_a, pooled, *extra, interest, *self.emb.profile(batch)], dim=-1)
        logits = self.mlp(x).squeeze(-1)
        aux = None
        if with_aux:
            aux = self.aux_alpha * auxiliary_loss(h, e_h, e_neg, mask, self.aux_net, self.aux_reduction, native=native)
        return ModelOutput(logits=logits, aux_loss=aux)

    def variant(self) -> dict:
        return {
            "evolution": self.evolution, "attention": self.attention_kind, "augru_formula": self.augru_formula,
            "aux_alpha": self.aux_alpha, "aux_net": self.aux_net_kind, "aux_reduction": self.aux_reduction,
            "mlp_inputs": self.mlp_inputs,
        }


class _Sigmoid(nn.Module):
    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(s)
