"""Recurrent layers of DIEN (AAAI 2019): the interest extractor, the attention of Eq. (8), the
interest-evolving GRUs (AIGRU Eq. 9, AGRU Eq. 10, AUGRU Eqs. 11-12) and the auxiliary loss (Eq. 6).

Histories are post-padded (real positions first). Speed: the input-to-hidden projections of every
step are one matrix product, and the recurrence steps only to the longest real history of the batch
(the Batcher pads to it), updating each row only while it has real positions left.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ctrbench.nn import native_attention, native_aux
from ctrbench.nn.gru_scan import attentional_gru_scan, native_gru_scan, native_usable

EVOLUTIONS = ("augru", "agru", "aigru", "gru_att")
AUGRU_FORMULAS = ("paper", "code")


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, max_padding: float = 0.25, native: bool = False) -> torch.Tensor:
    """torch's fused GRU over post-padded sequences, [B, L, D] -> [B, L, H], 0 at padded positions.

    When at most ``max_padding`` of the [B, L] grid is padding (the Batcher pads to the batch's
    longest history and buckets by length, so this is the usual case) the GRU runs over the padded
    tensor and padded outputs are masked: the recurrence is causal, so real positions are exact,
    and the unpacked kernel is ~1.7x faster than the packed one here. Otherwise the batch is packed
    so that no step runs over padding. Rows with an empty history get all-zero outputs (packing
    needs length >= 1, so they run on one padding step, then are masked).

    ``native=True`` runs the recurrence in ``csrc/gru_scan.c`` instead (``native_gru``), where the
    library is built and the GRU is one plain layer: the same values up to float rounding."""
    B, L, _ = x.shape
    if B * L == 0:
        return x.new_zeros(B, L, gru.hidden_size)
    if native and _native_gru_ok(gru, x):
        return native_gru(gru, x, lengths)
    mask = torch.arange(L, device=x.device)[None, :] < lengths[:, None]
    if int(lengths.sum()) >= (1.0 - max_padding) * B * L:
        out, _ = gru(x)
    else:
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
    return out * mask.unsqueeze(-1).to(out.dtype)


def _native_gru_ok(gru: nn.GRU, x: torch.Tensor) -> bool:
    return gru.num_layers == 1 and not gru.bidirectional and gru.bias and gru.batch_first and gru.proj_size == 0 and native_usable(x)


def native_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``nn.GRU`` (one layer, batch first) over post-padded x [B, L, D] by ``NativeGRUScan``:
    [B, L, H], 0 past each row's length. torch's GRU computes, with gate rows (r, z, n),

        r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n    = tanh(W_in x + b_in + r * (W_hn h + b_hn));   h' = (1 - z) n + z h = h + (1 - z)(n - h)

    which is the scan's plain GRU (u' = u) with u = 1 - z = sigmoid(-(...)): its gate rows
    (u, r, c) are (-z rows, r rows, n rows) of torch's weights and biases, which the kernel reads
    (and writes the gradients back) in torch's layout (``torch_gates``)."""
    return native_gru_scan(x, gru.weight_ih_l0, gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0, None, None, lengths,
                           torch_gates=True)[0]


def masked_softmax(score: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the real positions of each row; an empty row gets all-zero weights."""
    w = torch.softmax(score.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.nan_to_num(w, nan=0.0)


class BilinearAttention(nn.Module):
    """DIEN Eq. (8): a_t = exp(h_t W e_a) / sum_j exp(h_j W e_a), over real positions."""

    def __init__(self, hidden: int, target_dim: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(hidden, target_dim))
        nn.init.xavier_uniform_(self.W)

    def forward(self, h: torch.Tensor, e_a: torch.Tensor, mask: torch.Tensor, native: bool = False) -> torch.Tensor:
        # h_t W e_a contracted as h_t . (W e_a): one [B, D] x [D, H] product, then an element-wise
        # product and sum over [B, L, H] (a left-to-right einsum took (h W) first, an [B, L, H] x
        # [H, D] product and a batched one; ~11% of a dien_table2 step, docs/performance.md);
        # native (DIEN's native_recurrence in training): the scores and the masked softmax in one
        # native call each way (nn/native_attention.py)
        q = e_a @ self.W.t()  # [B, H]
        if not torch.jit.is_scripting():  # (TorchScript, which the request path and export use, skips this block)
            if native and native_attention.usable(h, q):
                return self._native(h, q, mask)
        score = (h * q.unsqueeze(1)).sum(-1)  # [B, L]
        return masked_softmax(score, mask)

    @torch.jit.unused
    def _native(self, h: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return native_attention.NativeAttention.apply(h, q, mask)


class EvolvingGRU(nn.Module):
    """The interest-evolving layer's attentional GRUs. With the GRU of DIEN Eqs. (2)-(5),

        u_t = sigmoid(W^u i_t + U^u h_{t-1} + b^u)          update gate
        r_t = sigmoid(W^r i_t + U^r h_{t-1} + b^r)          reset gate
        c_t = tanh(W^h i_t + r_t * (U^h h_{t-1}) + b^h)     candidate
        h_t = (1 - u_t) * h_{t-1} + u_t * c_t               (plain GRU)

    the attention score a_t enters as:

    * ``aigru``  (Eq. 9):       the input is scaled, i'_t = a_t * i_t, then a plain GRU;
    * ``agru``   (Eq. 10):      h'_t = (1 - a_t) * h'_{t-1} + a_t * c_t;
    * ``augru``  (Eqs. 11-12):  u'_t = a_t * u_t;  h'_t = (1 - u'_t) * h'_{t-1} + u'_t * c_t;
      ``formula="code"`` is the official code's VecAttGRUCell: its keep gate (1 - u_t) is scaled by
      (1 - a_t), i.e. u'_t = 1 - (1 - a_t)(1 - u_t): a plain GRU step at a_t = 0 and h'_t = c_t at
      a_t = 1 (the paper's formula keeps h'_{t-1} at a_t = 0).

    Returns the state after each row's last real position (zeros for an empty history).
    """

    def __init__(self, input_dim: int, hidden: int, kind: str = "augru", formula: str = "paper") -> None:
        super().__init__()
        if kind not in ("augru", "agru", "aigru"):
            raise ValueError(f"model.evolution must be one of {EVOLUTIONS}, got {kind!r}")
        if formula not in AUGRU_FORMULAS:
            raise ValueError(f"model.augru_formula must be one of {AUGRU_FORMULAS}, got {formula!r}")
        self.kind, self.formula, self.hidden = kind, formula, hidden
        self.x2h = nn.Linear(input_dim, 3 * hidden)  # W^u, W^r, W^h and the biases
        self.h2h = nn.Linear(hidden, 3 * hidden, bias=False)  # U^u, U^r, U^h

    def gate_factors(self, a: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The effective update gate of every variant as u'_t = g0 + g1 * u_t, with the real-position
        mask m folded in (u'_t = 0 at padding, so h'_t = h'_{t-1} there exactly)."""
        am = a * m
        if self.kind == "aigru":
            return None, m
        if self.kind == "agru":
            return am, None
        if self.formula == "paper":
            return None, am
        return am, m - am  # code: 1 - (1 - a)(1 - u) = a + (1 - a) u, times the mask

    def step(self, xp: torch.Tensor, h: torch.Tensor, g0: torch.Tensor | None, g1: torch.Tensor | None) -> torch.Tensor:
        """One step from the input projection xp [B, 3H], state h [B, H] and gate factors [B, 1]."""
        H = self.hidden
        hp = self.h2h(h)
        ur = torch.sigmoid(xp[:, : 2 * H] + hp[:, : 2 * H])  # u_t and r_t in one op
        u, r = ur[:, :H], ur[:, H:]
        c = torch.tanh(torch.addcmul(xp[:, 2 * H :], r, hp[:, 2 * H :]))
        if g1 is None:
            u_eff = g0
        elif g0 is None:
            u_eff = g1 * u
        else:
            u_eff = torch.addcmul(g0, g1, u)
        return torch.addcmul(h, u_eff, c - h)  # (1 - u') h + u' c

    def forward(self, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor, reference: bool = False, native: bool = False) -> torch.Tensor:
        """h'_T from inputs x [B, L, I], attention a [B, L] and the real-position mask [B, L].
        The recurrence runs in ``gru_scan`` (hand-written backward); ``reference=True`` runs the
        same steps through ``step`` under autograd (the tests compare the two); ``native=True``
        runs it in ``csrc/gru_scan.c`` (``NativeGRUScan``, each row over its real positions), where
        that library is built."""
        B, L, _ = x.shape
        steps = int(mask.sum(dim=1).max()) if B else 0
        if steps == 0:
            return x.new_zeros(B, self.hidden)
        x, a, m = x[:, :steps], a[:, :steps], mask[:, :steps].to(x.dtype)
        if self.kind == "aigru":
            x = x * a.unsqueeze(-1)
        if native and not reference and native_usable(x):
            g0, g1 = self.gate_factors(a, m)
            lengths = mask[:, :steps].sum(dim=1)
            return native_gru_scan(x, self.x2h.weight, self.x2h.bias, self.h2h.weight, None, g0, g1, lengths)[1]
        # Every step's input projection in one matrix product, time-major so that each step reads
        # a contiguous [B, 3H] slice.
        xs = self.x2h(x.transpose(0, 1))
        g0, g1 = self.gate_factors(a.t().unsqueeze(-1), m.t().unsqueeze(-1))
        if not reference:
            return attentional_gru_scan(xs, self.h2h.weight, g0, g1)
        h = x.new_zeros(B, self.hidden)
        for t in range(steps):
            h = self.step(xs[t], h, None if g0 is None else g0[t], None if g1 is None else g1[t])
        return h


def auxiliary_loss(
    h: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    mask: torch.Tensor,
    net: nn.Module | None = None,
    reduction: str = "paper",
    native: bool = False,
) -> torch.Tensor:
    """DIEN Eq. (6): hidden state h_t against the next behaviour e_{t+1} (label 1) and a sampled
    negative ê_{t+1} (label 0), for every t whose next position is real (padding never counts).

        L_aux = -(1/N) sum_i sum_t [ log s(h_t, e_{t+1}) + log(1 - s(h_t, ê_{t+1})) ]

    s is sigmoid of the inner product (the paper) or of ``net([h_t; e])`` (the official code's MLP).
    ``reduction="paper"`` sums over t and averages over the N samples, as Eq. (6);
    ``"mean"`` averages over all real (t, sample) pairs, as the official code (which also counts
    padded pairs in its denominator; we do not).

    ``native``: the inner-product form as one native call each way (nn/native_aux.py; the same value
    up to float rounding) where it can run (CPU, float32 or float64).
    """
    if native and net is None and native_aux.usable(h):
        return native_aux.NativeAuxLoss.apply(h, pos, neg, mask, reduction)
    h_t, e_pos, e_neg = h[:, :-1], pos[:, 1:], neg[:, 1:]
    valid = (mask[:, 1:] & mask[:, :-1]).to(h.dtype)
    if net is None:
        s_pos, s_neg = (h_t * e_pos).sum(-1), (h_t * e_neg).sum(-1)
    else:
        s_pos = net(torch.cat([h_t, e_pos], dim=-1)).squeeze(-1)
        s_neg = net(torch.cat([h_t, e_neg], dim=-1)).squeeze(-1)
    per_pair = F.softplus(-s_pos) + F.softplus(s_neg)  # -log sigmoid(s_pos) - log(1 - sigmoid(s_neg))
    total = (per_pair * valid).sum()
    if reduction == "paper":
        return total / max(h.shape[0], 1)
    if reduction == "mean":
        return total / valid.sum().clamp(min=1.0)
    raise ValueError(f"model.aux_reduction must be 'paper' or 'mean', got {reduction!r}")
