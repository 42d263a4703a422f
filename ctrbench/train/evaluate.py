"""Scoring a split: predictions for every sample, then AUC, GAUC and logloss."""

from __future__ import annotations

import time

import numpy as np
import torch

from ctrbench.data.batches import Batcher
from ctrbench.metrics import evaluate_predictions
from ctrbench.models.base import CTRModel
from ctrbench.train.distributed import DistContext
from ctrbench.train.regularizers import Regularizer


@torch.inference_mode()
def predict(
    model: CTRModel, batcher: Batcher, device: torch.device, reg: Regularizer | None = None, dist: DistContext | None = None
) -> np.ndarray:
    """Click probabilities for every sample of the batcher's split, in the split's row order.

    With a distributed context, rank r scores the batches r, r + world, ... and the predictions of
    all ranks are gathered, so every rank returns the whole split's predictions."""
    was_training = model.training
    model.eval()
    world, rank = (dist.world, dist.rank) if dist is not None and dist.enabled else (1, 0)
    out = torch.empty(batcher.n, dtype=torch.float32)
    mine = []
    for i, idx in enumerate(batcher.batches()):
        if i % world != rank:
            continue
        batch = batcher.gather(idx)
        if reg is not None:
            batch = reg.transform(batch, training=False)
        logits = model(batch.to(device)).logits
        out[idx] = torch.sigmoid(logits.float()).cpu()
        mine.append(idx)
    model.train(was_training)
    if world == 1:
        return out.numpy()
    idx = torch.cat(mine) if mine else torch.empty(0, dtype=torch.int64)
    return dist.all_gather_predictions(idx, out[idx], batcher.n)


def evaluate(
    model: CTRModel, batcher: Batcher, device: torch.device, weighting: str, reg: Regularizer | None = None, dist: DistContext | None = None
) -> tuple[dict, float]:
    """(metrics, seconds) for the batcher's split."""
    t0 = time.perf_counter()
    probs = predict(model, batcher, device, reg, dist)
    metrics = evaluate_predictions(batcher.user.numpy(), batcher.label.numpy(), probs, weighting=weighting)
    return metrics, time.perf_counter() - t0
