"""Layers shared by the models: id embeddings, the MLP, masked pooling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.data.schema import Batch, Vocab
from ctrbench.nn import native_lookup
from ctrbench.nn.activations import ActFactory


class MLP(nn.Module):
    """Linear -> activation (-> dropout) for each hidden width, then a final Linear to ``out_dim``.

    ``forward(x, mask)`` hands ``mask`` (the real rows of x[..., :]) to every activation, so that
    data-dependent activations (Dice) never see padded rows. ``dropout`` (0 by default) is set by
    a regularizer (``reg=dropout``), not by the model config.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], act: ActFactory, out_dim: int = 1) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.acts = nn.ModuleList()
        for width in hidden:
            self.linears.append(nn.Linear(in_dim, width))
            self.acts.append(act(width))
            in_dim = width
        self.out = nn.Linear(in_dim, out_dim)
        self.dropout = 0.0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for linear, act in zip(self.linears, self.acts):
            x = act(linear(x), mask)
            if self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
        return self.out(x)


FIELDS = ("item", "cate", "user")


def field_embedding(n: int, dim: int, field: str) -> nn.Embedding:
    """An embedding table (row 0 = padding) tagged with the id field it embeds, so regularizers
    know which ids of a batch index it (``item``: target and history items; ``cate``: target and
    history categories; ``user``)."""
    if field not in FIELDS:
        raise ValueError(f"unknown id field {field!r}: expected one of {FIELDS}")
    table = nn.Embedding(n, dim, padding_idx=0)
    table.field = field
    return table


class ItemEmbeddings(nn.Module):
    """Item and category tables shared by the target and the history (and an optional user table).

    An item is represented as [e_item; e_cate] (2 * dim wide), as in the DIN and DIEN code, or by
    [e_cate] alone with ``use_item=False`` (the DIN paper's Table 4 row "without goods_ids feature").
    Row 0 of every table is padding / unknown; padded history positions are also zeroed by the mask.
    """

    def __init__(self, vocab: Vocab, dim: int, use_user: bool = False, use_item: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.item = field_embedding(vocab.n_items, dim, "item") if use_item else None
        self.cate = field_embedding(vocab.n_cates, dim, "cate")
        self.user = field_embedding(vocab.n_users, dim, "user") if use_user else None
        for table in self.tables():
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[0].zero_()

    def tables(self) -> list[nn.Embedding]:
        return [t for t in (self.item, self.cate, self.user) if t is not None]

    @property
    def item_dim(self) -> int:
        return (2 if self.item is not None else 1) * self.dim

    def embed(self, item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        if self.item is None:
            return self.cate(cate)
        return torch.cat([self.item(item), self.cate(cate)], dim=-1)

    def target(self, batch: Batch) -> torch.Tensor:
        return self.embed(batch.item, batch.cate)

    def embed_together(self, *pairs: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """``[embed(item, cate) for item, cate in pairs]`` with one lookup per table for all of them.
        The values are the same; the backward pass then scatters into each table's gradient once per
        step instead of once per lookup (a dense gradient is a whole-table buffer, zeroed and
        accumulated per lookup: most of a step's time with large tables and dense optimizers)."""
        shapes = [item.shape for item, _ in pairs]
        sizes = [item.numel() for item, _ in pairs]
        e = self.embed(torch.cat([i.reshape(-1) for i, _ in pairs]), torch.cat([c.reshape(-1) for _, c in pairs]))
        return [x.view(*shape, e.shape[-1]) for x, shape in zip(e.split(sizes), shapes)]

    def target_and_packed_history(self, batch: Batch, packed: PackedHistory) -> list[torch.Tensor]:
        """``[target(batch), the history's real positions (packed_history) [P, D]]``, one lookup per table."""
        return self.embed_together((batch.item, batch.cate), (packed.item, packed.cate))

    def target_history_negatives(self, batch: Batch, native: bool = False) -> list[torch.Tensor]:
        """``[target(batch), history(batch), the negative behaviours' embeddings]`` (DIEN's auxiliary
        loss), one lookup per table. ``native`` (DIEN's ``native_recurrence`` in training): where the
        tables have row-wise gradients, one native call each way (``nn/native_lookup.py``: the same
        outputs and gradient rows)."""
        if not torch.jit.is_scripting():  # (TorchScript, which the request path and export use, skips this block)
            if native and native_lookup.usable(self.item, self.cate):
                return self._native_target_history_negatives(batch)
        e_a, e_h, e_neg = self.embed_together(
            (batch.item, batch.cate), (batch.hist_item, batch.hist_cate), (batch.neg_hist_item, batch.neg_hist_cate)
        )
        return [e_a, _zero_padding(e_h, batch.hist_mask), e_neg]

    @torch.jit.unused
    def _native_target_history_negatives(self, batch: Batch) -> list[torch.Tensor]:
        segments = ((batch.item, batch.cate), (batch.hist_item, batch.hist_cate), (batch.neg_hist_item, batch.neg_hist_cate))
        return native_lookup.pair_lookup(self.item, self.cate, segments, batch.hist_mask)

    def history(self, batch: Batch) -> torch.Tensor:
        return _zero_padding(self.embed(batch.hist_item, batch.hist_cate), batch.hist_mask)

    def profile(self, batch: Batch) -> list[torch.Tensor]:
        return [self.user(batch.user)] if self.user is not None else []


def _zero_padding(e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """History embeddings [B, L, D] with the padded positions (mask False) set to 0."""
    return e * mask.unsqueeze(-1).to(e.dtype)


# On CPU, a batch whose histories are mostly padding runs the history part of a model on its real
# positions only. Uniformly shuffled batches (the papers' training setup) are padded to their longest
# history: at batch 32 on Amazon Electronics (histories cut at 100) about one position in six is
# real, and the lookups, sparse gradients and attention MLP over the padding were most of a step.
# Length-sorted evaluation batches have little padding and stay padded; so does a GPU, where a padded
# batch costs no more and finding the real positions would wait for the device.
PACK_BELOW = 0.6


def packed_positions(batch: Batch, enabled: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(pos, row)`` of a batch worth packing: the real positions of the flattened [B, L] history
    grid, in order, and the sample each belongs to; None when the batch stays padded (and always when
    not ``enabled``: a model's ``pack_histories``, set by the trainer from ``trainer.pack_histories``)."""
    mask = batch.hist_mask
    if not enabled or mask.device.type != "cpu" or mask.dim() != 2:
        return None
    B, L = mask.shape
    n_real = int(batch.hist_len.sum())
    if n_real == 0 or n_real >= PACK_BELOW * B * L:
        return None
    pos = mask.reshape(-1).nonzero().squeeze(1)
    return pos, torch.div(pos, L, rounding_mode="floor")


@dataclass
class PackedHistory:
    """A packed batch's history (``packed_history``): the real positions ``pos`` of the flattened
    [B, L] grid, in order, the sample ``row`` each belongs to, and the ids there (``item``,
    ``cate``: [P]). Found once per batch and handed to every part of a model that reads the history
    (Wide&Deep's and DeepFM's wide and deep parts share one)."""

    pos: torch.Tensor
    row: torch.Tensor
    item: torch.Tensor
    cate: torch.Tensor


def packed_history(batch: Batch, enabled: bool = True) -> PackedHistory | None:
    """``packed_positions`` with the history's ids at those positions; None when the batch stays padded."""
    packed = packed_positions(batch, enabled)
    if packed is None:
        return None
    pos, row = packed
    item, cate = (ids.reshape(-1).index_select(0, pos) for ids in (batch.hist_item, batch.hist_cate))
    return PackedHistory(pos, row, item, cate)


def pool_rows(x: torch.Tensor, row: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The sum of the packed rows ``x`` [P, D] of each sample: [n_rows, D] (0 for a sample without any)."""
    return x.new_zeros(n_rows, x.shape[-1]).index_add(0, row, x)


def mean_rows(x: torch.Tensor, row: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    """The mean of the packed rows ``x`` [P, D] of each sample over its ``hist_len`` real positions:
    [B, D] (0 for a sample without any), as ``masked_pool(..., "mean")`` of the padded grid."""
    return pool_rows(x, row, len(hist_len)) / hist_len.clamp(min=1).unsqueeze(1).to(x.dtype)


def masked_pool(x: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool [B, L, D] over real positions: ``sum`` or ``mean`` (an empty history pools to 0)."""
    x = x * mask.unsqueeze(-1).to(x.dtype)
    total = x.sum(dim=1)
    if mode == "sum":
        return total
    if mode == "mean":
        return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    raise ValueError(f"unknown pooling {mode!r}: expected 'sum' or 'mean'")
