"""Regularizers: the hook through which a regularizer sees the model, the dataset and every batch.

The loop calls ``setup(model, dataset)`` once (a regularizer can count id frequencies there: MBA's
n_j, DiFacto's frequencies), then ``penalty(model, batch)`` each training step; the returned scalar
is added to the loss. ``transform(batch, training)`` may rewrite a batch before the model sees it
(feature-id dropout, frequency filtering). The regularizers of the paper's Table 4 build on this.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.data.schema import Batch, ProcessedDataset


class Regularizer:
    name = "base"

    def setup(self, model: nn.Module, dataset: ProcessedDataset) -> None:
        """Called once before training."""

    def transform(self, batch: Batch, training: bool) -> Batch:
        """Rewrite a batch before the model sees it (identity by default)."""
        return batch

    def penalty(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """A scalar added to the training loss for this batch, or None."""
        return None

    def describe(self) -> dict:
        """The regularizer and its parameters, as recorded in metrics.json."""
        return {"name": self.name}


class NoRegularizer(Regularizer):
    name = "none"
