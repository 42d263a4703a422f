"""DIN's local activation unit (DIN paper §4.3, Eq. 3).

    v_U(A) = sum_j a(e_j, v_A) * e_j = sum_j w_j * e_j

a(.) is a feed-forward network on the candidate v_A (the query q) and each behaviour e_j (a key k).
Its input is, by config:

* ``qk_diff_prod`` (default): [q, k, q - k, q * k] -- what the authors' code and every peer use;
* ``outer``: [q, k, vec(q k^T)] -- the paper's "out product" of the two embeddings.

The first layer is computed without materialising the concatenation. For ``qk_diff_prod``,
W [q, k, q-k, q*k] = (W_q + W_d) q + (W_k - W_d + W_p diag(q)) k: the query part is computed once
per sample instead of once per history position, and the key part is one [D, H] map per sample. For ``outer``, W_o vec(q k^T) = (W_o q) k, a
[H, D] matrix per sample applied to every key.

Weights: by default **no softmax** (the paper relaxes sum_j w_j = 1 so that the magnitude of v_U
keeps the intensity of the user's interest); ``softmax=true`` is the official code's normalisation,
masked so that padding receives no weight. Padded positions always get weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.nn.activations import ActFactory
from ctrbench.nn.layers import MLP

ATTENTION_INPUTS = ("qk_diff_prod", "outer")


class LocalActivationUnit(nn.Module):
    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        act: ActFactory,
        inputs: str = "qk_diff_prod",
        softmax: bool = False,
    ) -> None:
        super().__init__()
        if inputs not in ATTENTION_INPUTS:
            raise ValueError(f"unknown attention inputs {inputs!r}: expected one of {ATTENTION_INPUTS}")
        if not hidden:
            raise ValueError("the attention MLP needs at least one hidden layer")
        self.dim, self.inputs, self.softmax = dim, inputs, softmax
        in_dim = 4 * dim if inputs == "qk_diff_prod" else 2 * dim + dim * dim
        self.first = nn.Linear(in_dim, hidden[0])
        self.first_act = act(hidden[0])
        self.rest = MLP(hidden[0], hidden[1:], act, out_dim=1)

    def qk_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's blocks for ``qk_diff_prod``: W = [W_q, W_k, W_d, W_p], each [H, D]."""
        D, W = self.dim, self.first.weight
        return W[:, :D], W[:, D : 2 * D], W[:, 2 * D : 3 * D], W[:, 3 * D :]

    def row_scores(self, q: torch.Tensor, kp: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """The unit's score [P] of each packed key kp [P, D] (the real positions of a batch's histories,
        ``nn.layers.packed_positions``) for its sample's query q[row] (``qk_diff_prod``): the same first
        layer as ``first_layer``, W [q, k, q-k, q*k] + b = ((W_q + W_d) q + b) + (W_k - W_d) k
        + W_p (q * k), as two [P, D] x [D, H] products instead of a [D, H] map per sample applied to
        all B x L positions; then the activations (Dice's statistics over exactly the real rows, as
        the padded form's mask gives) and the rest of the MLP on P rows."""
        b = self.first.bias
        Wq, Wk, Wd, Wp = self.qk_weights()
        qp = q.index_select(0, row)
        per_sample = torch.addmm(b, q, (Wq + Wd).T)  # [B, H]
        first = torch.addmm(per_sample.index_select(0, row), kp, (Wk - Wd).T)
        first = torch.addmm(first, qp * kp, Wp.T)  # [P, H]
        return self.rest(self.first_act(first)).squeeze(-1)  # [P]

    def forward_packed(self, q: torch.Tensor, kp: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The weights [P] of the packed keys kp (real positions ``pos`` of a [B, L] grid of ``shape``,
        samples ``row``): ``forward``'s weights at those positions, without the padding."""
        score = self.row_scores(q, kp, row)
        if not self.softmax:
            return score
        B, L = shape
        full = score.new_full((B * L,), float("-inf")).index_put((pos,), score).view(B, L)
        return torch.nan_to_num(torch.softmax(full, dim=-1), nan=0.0).reshape(-1).index_select(0, pos)

    def first_layer(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """W . input(q, k) + b for every position: [B, D], [B, L, D] -> [B, L, H]."""
        D, W, b = self.dim, self.first.weight, self.first.bias
        if self.inputs == "qk_diff_prod":
            Wq, Wk, Wd, Wp = self.qk_weights()
            per_sample = torch.addmm(b, q, (Wq + Wd).T)  # [B, H]
            # (W_k - W_d) k + W_p (q * k) = M_b k with M_b = (W_k - W_d) + W_p diag(q_b): one [D, H]
            # map per sample, applied to every key by a batched product (half the multiply-adds of
            # [k, q * k] @ [W_k - W_d, W_p]^T, and no [B, L, 2D] concatenation).
            M = (q.unsqueeze(2) * Wp.T.unsqueeze(0)).add_((Wk - Wd).T.unsqueeze(0))  # [B, D, H], added in place
            return torch.baddbmm(per_sample.unsqueeze(1), k, M)
        Wq, Wk, Wo = W[:, :D], W[:, D : 2 * D], W[:, 2 * D :].reshape(-1, D, D)  # Wo[h, d, e] for q_d k_e
        per_sample = q @ Wq.T + b
        Mq = torch.einsum("bd,hde->bhe", q, Wo)  # [B, H, D]
        return k @ Wk.T + torch.einsum("ble,bhe->blh", k, Mq) + per_sample.unsqueeze(1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights w_j [B, L] (0 at padded positions)."""
        hidden = self.first_act(self.first_layer(q, k), mask)
        score = self.rest(hidden, mask).squeeze(-1)
        if self.softmax:
            score = score.masked_fill(~mask, float("-inf"))
            w = torch.softmax(score, dim=-1)
            return torch.nan_to_num(w, nan=0.0)  # an empty history has no weights
        return score * mask.to(score.dtype)
