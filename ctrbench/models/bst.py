"""BST: Behavior Sequence Transformer (Chen et al., "Behavior Sequence Transformer for E-commerce
Recommendation in Alibaba", DLP-KDD 2019, arXiv 1905.06874), §2 and Fig. 1.

The user's behaviour sequence *and the target item* go through a Transformer encoder block together,
so each behaviour is represented in the context of the others and of the candidate; the block's
output at the target joins the other features in the MLP:

    e_j   = [E_item(v_j); E_cate(v_j); E_pos(p_j)]                 j = 1..n behaviours, and the target t
    p_j   = n - j + 1 for behaviour j (1 = the most recent), p_t = 0   (position index; see below)
    S     = MH(E) = Concat(head_1..head_h) W^H                       Eq. (2)
    head_i = softmax((E W_i^Q)(E W_i^K)^T / sqrt(d_h)) (E W_i^V)       Eqs. (1), (3); padding masked
    S'    = LayerNorm(E + Dropout(S))                                 Eq. (4)
    F     = LayerNorm(S' + Dropout(LeakyReLU(S' W1 + b1) W2 + b2))    Eq. (5)
    F^b   = FFN(SA(F^(b-1)))  for b blocks                           Eq. (6)
    logit = MLP([F_t (, e_user)])                                     the block's output at the target

**Where this follows the paper**

- Item features are the item id and the category id (the embedding layer's "Sequence Item
  Features"), here ``[E_item; E_cate]`` as every ctrbench model; the target item is embedded the
  same way and enters the sequence (Fig. 1).
- Each item's positional embedding is *concatenated* to its item features (Fig. 1 draws the two
  side by side), not added as in Vaswani et al.
- Self-attention, multi-head attention, the point-wise feed-forward network with LeakyReLU, residual
  connections, dropout on each sub-layer's output (not on the attention weights) and layer
  normalisation after each sub-layer are Eqs. (1)-(5); stacking is Eq. (6). The attention
  projections carry no bias (Eqs. 2-3 write none); the FFN has b1, b2 (Eq. 5).
- One block (``blocks: 1``): the paper's experiments found b = 1 best of 1-3 blocks (offline AUC
  0.7894 for b = 1). 8 heads and dropout 0.2 are the settings its configuration table gives.
- The MLP reads the Transformer output at the target item (the paper's MLP section: "the output of
  the Transformer layer applied to the target item") concatenated with the other features. The
  paper's other features (user profile, item, context and cross features) are, in ctrbench's data,
  the user embedding alone, when ``use_user``. Its loss, binary cross-entropy, is the trainer's.
- Since only the target's output is read, the last block computes its query, its feed-forward
  network and its layer norms for the target position only, and its attention without projecting
  the other positions to keys and values (``TransformerBlock.target_attention``): the same values as
  the full block's target row up to float rounding (tests check values and gradients), at a
  fraction of the cost (docs/performance.md).

**Where this deviates, and why**

- *Positions.* The paper's position of behaviour v_i is the time difference to the recommendation,
  pos(v_i) = t(v_t) - t(v_i) (it beat sin/cos encodings there). ctrbench's ``Batch`` carries no
  times: the processed streams store each behaviour's time (``Streams.time``), but a sample is
  ``(user, item, cate, label, hist_end)`` with no time of its own, and the Batcher gathers items and
  categories only. Carrying times would add ``Batch`` fields, the Batcher's gather of them and a
  per-protocol definition of the target's time (BARS files carry no times: their streams' times are
  positions), a data-pipeline change beyond this model. So the position is the *index* counted back
  from the target, the discrete analogue of t(v_t) - t(v_i) in behaviours: 1 for the most recent
  behaviour, 0 for the target itself. Positions from ``n_positions - 1`` back share the last row, so
  histories longer than the table still work. ``model.position`` has the one value ``index``
  (recorded in ``metrics.json``); another is refused with the reason.
- *Training and data.* The paper's optimiser settings (learning rate 0.01, batches of 256, one
  epoch) and its sequence length of 20 are not pinned: ``model=bst`` trains with ctrbench's defaults
  like every model, on the dataset's ``max_len`` behaviours, and ``+experiment=din_vs_bst`` under
  the DIN paper's Table 3 setup.

**Where the paper is silent or ambiguous, and what this chooses**

- Head width: Eq. (3) writes W^Q, W^K, W^V in R^{d x d} (with no head index) and W^H in
  R^{hd x d}; read here as each head with its own d x d projections, i.e. each head as wide as the
  input (d = 2 x embedding_dim + position_dim = 54 by default). ``head_dim`` sets it; the default
  null takes d. (Vaswani et al. split d over the heads: ``head_dim`` = d / heads.)
- The scaling of Eq. (1): the square root of the head width (the paper's sqrt(d), as d_h = d).
- Positional embedding width (``position_dim``): the paper's embedding sizes range over 4-64;
  default ``embedding_dim`` (18).
- FFN inner width (``ffn_hidden``): not given; default null = 4d, Vaswani et al.'s ratio, whom the
  paper follows for the FFN. LeakyReLU's negative slope: not given; ``leaky_slope`` 0.01 (torch's).
- Layer-norm epsilon (torch's 1e-5), initialisation (torch's defaults for the block; ctrbench's
  N(0, 0.05) for every embedding table, the position table included).
- The MLP: the paper's is 1024-512-256 (its configuration table) with no activation named; here
  ``mlp`` defaults to the 200-80 of every other ctrbench model with the ``act`` factory's activation
  (PReLU), so that BST and DIN differ in the behaviour part only. ``model.mlp=[1024,512,256]`` gives
  the paper's widths.

Padding: padded history positions are masked out of every attention (weight exactly 0) and their
outputs are never read; the target is always in the sequence, so no row is fully masked, not even
with an empty history. Nothing normalises across the batch, so evaluation scores do not depend on
the rest of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.nn.activations import ActFactory
from ctrbench.nn.layers import MLP, ItemEmbeddings

POSITIONS = ("index",)


class TransformerBlock(nn.Module):
    """One encoder block of Eqs. (1)-(5), post-norm. ``forward(x, key_mask, target_only)``:
    ``x`` [B, N, d], ``key_mask`` [B, N] (True: a real position); with ``target_only`` only the
    last position (the target) is a query, giving [B, 1, d].

    With one query the attention is computed without projecting every position: a head's score
    q_i . (W_i^K x_j) equals (W_i^K^T q_i) . x_j, and its output sum_j a_ij W_i^V x_j equals
    W_i^V (sum_j a_ij x_j). So the keys and values are never materialised, and the work per history
    position is two products with d-wide vectors per head instead of two d x (h d_h) projections
    (the same values up to float rounding; ``tests/test_bst.py`` checks both forms against Eqs. 1-5
    written out)."""

    def __init__(self, d: int, heads: int, head_dim: int, ffn_hidden: int, dropout: float, leaky_slope: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.w_q = nn.Linear(d, heads * head_dim, bias=False)  # W_i^Q of every head, stacked, Eq. (3)
        self.w_k = nn.Linear(d, heads * head_dim, bias=False)  # W_i^K
        self.w_v = nn.Linear(d, heads * head_dim, bias=False)  # W_i^V
        self.w_h = nn.Linear(heads * head_dim, d, bias=False)  # W^H, Eq. (2)
        self.norm1 = nn.LayerNorm(d)
        self.ffn1 = nn.Linear(d, ffn_hidden)  # W(1), b(1), Eq. (5)
        self.ffn2 = nn.Linear(ffn_hidden, d)  # W(2), b(2)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = dropout
        self.leaky_slope = leaky_slope

    def attention(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """MH(x) of Eqs. (1)-(3) with every position a query: [B, N, d]."""
        B, N, _ = x.shape
        h, dh = self.heads, self.head_dim
        q, k, v = (w(x).view(B, N, h, dh).transpose(1, 2) for w in (self.w_q, self.w_k, self.w_v))  # [B, h, N, dh]
        # softmax(QK^T / sqrt(dh)) V, Eq. (1); a padded key gets weight exactly 0 (-inf before the softmax)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :], scale=1.0 / math.sqrt(dh))
        return self.w_h(o.transpose(1, 2).reshape(B, N, h * dh))  # Concat(head_1..head_h) W^H, Eq. (2)

    def target_attention(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """MH(x) of Eqs. (1)-(3) at the last position only: [B, 1, d] (see the class docstring)."""
        B, _, d = x.shape
        h, dh = self.heads, self.head_dim
        q = self.w_q(x[:, -1]).view(B, h, dh).transpose(0, 1)  # [h, B, dh]
        q_x = torch.bmm(q, self.w_k.weight.view(h, dh, d)).transpose(0, 1)  # W_i^K^T q_i: [B, h, d]
        scores = torch.bmm(q_x, x.transpose(1, 2)) / math.sqrt(dh)  # q_i . k_ij: [B, h, N], Eq. (1)
        scores = scores.masked_fill(~key_mask.unsqueeze(1), float("-inf"))  # padding: weight exactly 0
        pooled = torch.bmm(torch.softmax(scores, dim=-1), x)  # sum_j a_ij x_j: [B, h, d]
        o = torch.bmm(pooled.transpose(0, 1), self.w_v.weight.view(h, dh, d).transpose(1, 2))  # W_i^V (...): [h, B, dh]
        return self.w_h(o.transpose(0, 1).reshape(B, 1, h * dh))  # Concat(head_1..head_h) W^H, Eq. (2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, target_only: bool = False) -> torch.Tensor:
        s = self.target_attention(x, key_mask) if target_only else self.attention(x, key_mask)
        s1 = self.norm1((x[:, -1:] if target_only else x) + F.dropout(s, self.dropout, self.training))  # Eq. (4)
        f = self.ffn2(F.leaky_relu(self.ffn1(s1), self.leaky_slope))
        return self.norm2(s1 + F.dropout(f, self.dropout, self.training))  # Eq. (5)


class BST(CTRModel):
    # evaluation on CPU: with model.blocks >= 2 the blocks before the last attend from every position,
    # [rows, heads, L, L] scores; 1,024 rows and at most 65,536 history positions keep them small with
    # uncut evaluation histories (the DIEN protocol's dataset.eval_max_len=null)
    eval_rows_cpu = 1024
    eval_positions_cpu = 1024 * 64

    def __init__(
        self,
        vocab: Vocab,
        act: ActFactory,
        embedding_dim: int = 18,
        position_dim: int | None = None,
        n_positions: int = 128,
        position: str = "index",
        blocks: int = 1,
        heads: int = 8,
        head_dim: int | None = None,
        ffn_hidden: int | None = None,
        dropout: float = 0.2,
        leaky_slope: float = 0.01,
        mlp: Sequence[int] = (200, 80),
        use_user: bool = False,
    ) -> None:
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(
                f"model.position must be one of {POSITIONS}, got {position!r} (the paper's time differences need "
                "behaviour times, which ctrbench's Batch does not carry; see ctrbench/models/bst.py)"
            )
        for key, value, low in (("blocks", blocks, 1), ("heads", heads, 1), ("n_positions", n_positions, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"model.{key} must be an integer >= {low}, got {value!r}")
        for key, value in (("position_dim", position_dim), ("head_dim", head_dim), ("ffn_hidden", ffn_hidden)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"model.{key} must be null or an integer >= 1, got {value!r}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout!r}")
        self.emb = ItemEmbeddings(vocab, embedding_dim, use_user)
        position_dim = embedding_dim if position_dim is None else position_dim
        self.positions = nn.Embedding(n_positions, position_dim)  # row 0: the target; no padding row
        nn.init.normal_(self.positions.weight, std=0.05)
        d = self.emb.item_dim + position_dim
        self.d_model = d
        self.blocks = nn.ModuleList(
            TransformerBlock(d, heads, head_dim or d, ffn_hidden or 4 * d, float(dropout), float(leaky_slope))
            for _ in range(blocks)
        )
        self.position = position
        self.mlp = MLP(d + (embedding_dim if use_user else 0), list(mlp), act)

    def sequence(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's input E [B, L + 1, d] and its key mask [B, L + 1]: the (post-padded) history,
        then the target in the last slot. Where the target sits in the tensor does not matter to
        attention; the positional embedding says where it is in time."""
        e_t = self.emb.target(batch)  # [B, 2E]
        e_h = self.emb.history(batch)  # [B, L, 2E], zero at padding
        B = e_t.shape[0]
        items = torch.cat([e_h, e_t.unsqueeze(1)], 1)  # [B, L + 1, 2E]
        x = torch.cat([items, self.positions(self.position_ids(batch))], -1)  # [item features; positional features], Fig. 1
        key_mask = torch.cat([batch.hist_mask, batch.hist_mask.new_ones(B, 1)], 1)
        return x, key_mask

    def position_ids(self, batch: Batch) -> torch.Tensor:
        """[B, L + 1]: p_j = n - j + 1 behaviours back from the target for history position j = 1..n
        (oldest first), clamped to the table, and 0 for the target in the last slot. Padding gets 0
        too; it is never read (masked keys, and only the target's output is used)."""
        B, L = batch.hist_mask.shape
        back = batch.hist_len.unsqueeze(1) - torch.arange(L, device=batch.hist_len.device).unsqueeze(0)  # [B, L]
        return torch.cat([back.clamp(0, self.positions.num_embeddings - 1), back.new_zeros(B, 1)], 1)

    def encode(self, batch: Batch, target_only: bool = True) -> torch.Tensor:
        """F^b, Eq. (6): [B, d] at the target with ``target_only`` (what the model reads), else
        every position's output [B, L + 1, d]."""
        x, key_mask = self.sequence(batch)
        for block in self.blocks[:-1]:
            x = block(x, key_mask)
        x = self.blocks[-1](x, key_mask, target_only=target_only)
        return x[:, -1] if target_only else x

    def forward(self, batch: Batch) -> ModelOutput:
        z = self.encode(batch)
        x = torch.cat([z, *self.emb.profile(batch)], dim=-1)
        return ModelOutput(logits=self.mlp(x).squeeze(-1))

    def variant(self) -> dict:
        b = self.blocks[0]
        return {
            "position": self.position, "blocks": len(self.blocks), "heads": b.heads, "head_dim": b.head_dim,
            "ffn_hidden": b.ffn1.out_features, "dropout": b.dropout, "d_model": self.d_model,
        }
