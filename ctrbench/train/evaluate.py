"""Scoring a split: predictions for every sample, then AUC, GAUC and logloss."""

from __future__ import annotations

import time

import numpy as np
import torch

from ctrbench.data.batches import Batcher
from ctrbench.metrics import evaluate_predictions
from ctrbench.models.base import CTRModel
from ctrbench.train.regularizers import Regularizer


@torch.inference_mode()
def predict(model: CTRModel, batcher: Batcher, device: torch.device, reg: Regularizer | None = None) -> np.ndarray:
    """Click probabilities for every sample of the batcher's split, in the split's row order."""
    was_training = model.training
    model.eval()
    out = torch.empty(batcher.n, dtype=torch.float32)
    for idx, batch in batcher:
        if reg is not None:
            batch = reg.transform(batch, training=False)
        logits = model(batch.to(device)).logits
        out[idx] = torch.sigmoid(logits.float()).cpu()
    model.train(was_training)
    return out.numpy()


def evaluate(model: CTRModel, batcher: Batcher, device: torch.device, weighting: str, reg: Regularizer | None = None) -> tuple[dict, float]:
    """(metrics, seconds) for the batcher's split."""
    t0 = time.perf_counter()
    probs = predict(model, batcher, device, reg)
    metrics = evaluate_predictions(batcher.user.numpy(), batcher.label.numpy(), probs, weighting=weighting)
    return metrics, time.perf_counter() - t0
