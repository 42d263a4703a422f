"""Regularizers: the hook through which a regularizer sees the model, the dataset and every batch,
and the regularizers of the DIN paper's Table 4 (§5.1, §6.5).

The loop calls ``setup(model, dataset, max_len)`` once (MBA and the filter count id frequencies
there), then, every training step, ``transform(batch, training=True)`` before the model and
``penalty(model, batch)`` after it; the penalty is added to the (mean) loss. Evaluation calls
``transform(batch, training=False)``.

Convention: the training loss is the *mean* BCE over the batch, so a penalty's gradient is on the
same per-step scale as Eq. (7)'s ``1/|B_m| sum dL/dw_j`` term.

=============  ===================================================================  ==========================
reg            penalty (or transform) each step                                      gradient on row w_j
=============  ===================================================================  ==========================
``none``       —                                                                     0
``l2``         λ · Σ_tables ||W||² (every row, every step; + dense weights if asked)  2λ·w_j, all rows
``mba``        (λ/2) · Σ_{j in batch} ||w_j||² / n_j              (Eqs. 6-7)          λ·w_j/n_j if j in batch, else 0
``difacto``    (λ/2) · Σ_{j in batch} (c_mj / |B_m|) · ||w_j||²                       λ·c_mj·w_j/|B_m| if j in batch
``dropout``    history ids dropped with probability ``rate`` (train only)            —
``filter``     item ids outside the kept set mapped to 0 (train and eval)            —
=============  ===================================================================  ==========================
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ctrbench.data.schema import Batch, ProcessedDataset
from ctrbench.errors import ConfigError
from ctrbench.nn.layers import MLP
from ctrbench.train.frequencies import id_frequencies


class Regularizer:
    name = "base"

    def setup(self, model: nn.Module, dataset: ProcessedDataset, max_len: int) -> None:
        """Called once before training (and before evaluating a saved run)."""

    def transform(self, batch: Batch, training: bool) -> Batch:
        """Rewrite a batch before the model sees it (identity by default)."""
        return batch

    def penalty(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """A scalar added to the training loss for this batch, or None."""
        return None

    def describe(self) -> dict:
        """The regularizer and its parameters, as recorded in metrics.json."""
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"name": self.name, **params}


class NoRegularizer(Regularizer):
    name = "none"


def field_tables(model: nn.Module) -> list[tuple[nn.Embedding, str]]:
    """Every embedding table of the model with the id field it embeds (see ``field_embedding``)."""
    return [(m, m.field) for m in model.modules() if isinstance(m, nn.Embedding) and hasattr(m, "field")]


def batch_ids(batch: Batch, field: str) -> torch.Tensor:
    """All ids of ``field`` in the batch, with repetitions: targets and real history positions."""
    if field == "item":
        return torch.cat([batch.item, batch.hist_item[batch.hist_mask]])
    if field == "cate":
        return torch.cat([batch.cate, batch.hist_cate[batch.hist_mask]])
    if field == "user":
        return batch.user
    raise ValueError(f"unknown id field {field!r}")


def _check_lambda(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise ConfigError(f"reg.lam={lam!r} is invalid: expected a number >= 0")
    return float(lam)


class L2(Regularizer):
    """λ·||W||² over all embedding tables every step (as FuxiCTR, DeepCTR-Torch and torch-rechub do),
    plus λ·||W||² over the dense weight matrices when ``include_dense``. Touches every row of every
    table every step: the O(vocabulary) cost MBA avoids."""

    name = "l2"

    def __init__(self, lam: float = 1e-5, include_dense: bool = False) -> None:
        self.lam = _check_lambda(lam)
        self.include_dense = bool(include_dense)

    def setup(self, model, dataset, max_len) -> None:
        tables = {id(t) for t, _ in field_tables(model)}
        self._params = [t.weight for t, _ in field_tables(model)]
        if self.include_dense:
            self._params += [p for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in tables for p in [m.weight]]

    def penalty(self, model, batch) -> torch.Tensor:
        return self.lam * sum(p.pow(2).sum() for p in self._params)


class MBA(Regularizer):
    """Mini-batch-aware regularization, DIN paper §5.1, Eqs. (4)-(7).

    For each embedding table and mini-batch m, only the rows j of ids present in the batch
    (α_mj = 1) are penalised, each by 1/n_j, n_j = occurrences of id j in the training samples
    (targets and histories; ``ctrbench.train.frequencies``):

        penalty_m = (λ/2) · Σ_j α_mj ||w_j||² / n_j      =>  ∂penalty_m/∂w_j = λ · α_mj · w_j / n_j

    which is exactly Eq. (7)'s regularization term (the λ/2 convention makes the gradient match it).
    Rows absent from the batch get no regularization gradient. Cost: one ``unique`` over the batch's
    ids and a gather of those rows per table; never a pass over a whole table. λ = 0.01 by default
    (the paper's value for MBA and DiFacto, §6.5).
    """

    name = "mba"

    def __init__(self, lam: float = 0.01) -> None:
        self.lam = _check_lambda(lam)

    def setup(self, model, dataset, max_len) -> None:
        freq = id_frequencies(dataset, max_len)
        self._inv_n = {f: torch.from_numpy(1.0 / np.maximum(c, 1)).float() for f, c in freq.items()}
        self._tables = field_tables(model)

    def penalty(self, model, batch) -> torch.Tensor | None:
        total = None
        ids = {}
        for table, field in self._tables:
            if field not in ids:
                u = torch.unique(batch_ids(batch, field))
                ids[field] = u[u != 0]
            j = ids[field]
            inv_n = self._inv_n[field].to(table.weight.device)[j]
            term = 0.5 * self.lam * (table.weight[j].pow(2).sum(dim=1) * inv_n).sum()
            total = term if total is None else total + term
        return total


class DiFacto(Regularizer):
    """The frequency-adaptive regularization of DiFacto (M. Li, Z. Liu, A. Smola, Y.-X. Wang,
    "DiFacto: Distributed Factorization Machines", WSDM 2016), which the DIN paper compares against
    (Table 4).

    DiFacto's objective regularizes each feature's parameters with its own weight,
    ½ Σ_j μ_j ||w_j||², with μ_j growing with the feature's frequency, and it applies that term in
    its minibatch updates only to the features present. We implement the minibatch form with
    μ_j ∝ n_j: every occurrence of id j in the batch adds the same penalty,

        penalty_m = (λ/2) · Σ_j (c_mj / |B_m|) · ||w_j||²    =>  ∂penalty_m/∂w_j = λ · c_mj · w_j / |B_m|

    where c_mj is the number of occurrences of id j in mini-batch m (targets and histories) and
    |B_m| the batch size. Over an epoch a feature is penalised in proportion to its frequency, so its
    penalty stays in a fixed ratio to its data gradient; MBA instead divides by n_j, so frequent
    features are regularized *less* relative to their data. (DiFacto's own documentation describes
    its regularizer as placing larger penalties on more frequent features; the one-line summary
    "frequent features regularized less" in our notes refers to the per-occurrence view, which is
    constant here.) λ = 0.01 by default, the paper's value (§6.5).
    """

    name = "difacto"

    def __init__(self, lam: float = 0.01) -> None:
        self.lam = _check_lambda(lam)

    def setup(self, model, dataset, max_len) -> None:
        self._tables = field_tables(model)

    def penalty(self, model, batch) -> torch.Tensor | None:
        total = None
        seen = {}
        for table, field in self._tables:
            if field not in seen:
                j, c = torch.unique(batch_ids(batch, field), return_counts=True)
                keep = j != 0
                seen[field] = (j[keep], c[keep].float())
            j, c = seen[field]
            term = 0.5 * self.lam * (table.weight[j].pow(2).sum(dim=1) * c).sum() / len(batch)
            total = term if total is None else total + term
        return total


class FeatureDropout(Regularizer):
    """The paper's dropout (§6.5): "randomly discard 50% of the feature ids in each sample".

    In training, each real history position (its item and category ids together) is dropped with
    probability ``rate``; the kept positions are moved to the front so histories stay post-padded.
    Evaluation sees every id. ``mlp_dropout`` > 0 also applies standard dropout after every hidden
    layer of the model's main MLP.
    """

    name = "dropout"

    def __init__(self, rate: float = 0.5, mlp_dropout: float = 0.0) -> None:
        for key, v in (("rate", rate), ("mlp_dropout", mlp_dropout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError(f"reg.{key}={v!r} is invalid: expected a probability in [0, 1)")
        self.rate, self.mlp_dropout = float(rate), float(mlp_dropout)

    def setup(self, model, dataset, max_len) -> None:
        for name, m in model.named_modules():
            if isinstance(m, MLP) and name.split(".")[-1] == "mlp":
                m.dropout = self.mlp_dropout

    def transform(self, batch: Batch, training: bool) -> Batch:
        if not training or self.rate == 0.0:
            return batch
        keep = batch.hist_mask & (torch.rand(batch.hist_mask.shape) >= self.rate)
        # stable sort: kept positions first, in their original (time) order
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        hist_len = keep.sum(dim=1)
        mask = torch.arange(keep.shape[1])[None, :] < hist_len[:, None]
        return Batch(
            user=batch.user, item=batch.item, cate=batch.cate, label=batch.label,
            hist_item=torch.gather(batch.hist_item, 1, order) * mask,
            hist_cate=torch.gather(batch.hist_cate, 1, order) * mask,
            hist_mask=mask, hist_len=hist_len,
            neg_hist_item=None if batch.neg_hist_item is None else torch.gather(batch.neg_hist_item, 1, order) * mask,
            neg_hist_cate=None if batch.neg_hist_cate is None else torch.gather(batch.neg_hist_cate, 1, order) * mask,
        )


class Filter(Regularizer):
    """The paper's filter (§6.5: "keep only the top 20 million goods_ids by frequency"): item ids
    outside the kept set map to the unknown id 0, in targets and histories, train and evaluation
    alike. Keep the ``top_k`` most frequent items (ties broken by id), or, when ``top_k`` is null,
    every item with at least ``min_count`` occurrences in the training samples (targets and
    histories). A filtered history position stays a real behaviour (mask true) of unknown item; its
    category is kept."""

    name = "filter"

    def __init__(self, top_k: int | None = None, min_count: int = 10) -> None:
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"reg.top_k={top_k!r} is invalid: expected an integer >= 1 or null")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
            raise ConfigError(f"reg.min_count={min_count!r} is invalid: expected an integer >= 0")
        self.top_k, self.min_count = top_k, min_count

    def setup(self, model, dataset, max_len) -> None:
        n = id_frequencies(dataset, max_len)["item"]
        if self.top_k is not None:
            order = np.lexsort((np.arange(len(n)), -n))  # most frequent first, ties by id
            kept = order[n[order] > 0][: self.top_k]
        else:
            kept = np.flatnonzero(n >= max(self.min_count, 1))
        lookup = np.zeros(len(n), dtype=np.int64)
        lookup[kept] = kept
        self._lookup = torch.from_numpy(lookup)
        self.kept_items = int(len(kept))

    def transform(self, batch: Batch, training: bool) -> Batch:
        lk = self._lookup
        return Batch(
            user=batch.user, item=lk[batch.item], cate=batch.cate, label=batch.label,
            hist_item=lk[batch.hist_item], hist_cate=batch.hist_cate, hist_mask=batch.hist_mask, hist_len=batch.hist_len,
            neg_hist_item=None if batch.neg_hist_item is None else lk[batch.neg_hist_item],
            neg_hist_cate=batch.neg_hist_cate,
        )
