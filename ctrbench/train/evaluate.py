"""Scoring a split: predictions for every sample, then AUC, GAUC and logloss."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ctrbench.data.batches import Batcher
from ctrbench.data.schema import Batch, ProcessedDataset
from ctrbench.metrics import evaluate_logits
from ctrbench.models.base import CTRModel
from ctrbench.train.distributed import DistContext
from ctrbench.train.regularizers import Regularizer


#: evaluation batch size on a GPU when trainer.eval_batch_size is null (not measured: no GPU was lent)
EVAL_ROWS_GPU = 4096
#: evaluation batches are gathered a group at a time, consecutive batches up to at least this many
#: rows (``Batcher.gather_each``: one gather, then a slice per batch); 16 batches of DIN's 384 rows
#: measured fastest on the peers' bench data (docs/performance.md). Scores do not depend on it
GATHER_ROWS = 6144


def default_eval_batch_size(model: CTRModel, device: torch.device) -> int:
    """``trainer.eval_batch_size=null`` (auto). On CPU the model's ``eval_rows_cpu``: 2,048 rows,
    or 384 for DIN, whose attention MLP runs over every history position (at or near the fastest
    size measured on both the default data and the peers' bench data; docs/performance.md). On a
    GPU, ``EVAL_ROWS_GPU``. Scores do not depend on it (evaluation-mode outputs are per sample),
    except under ``act.mode=code``, whose Dice uses the evaluation batch's statistics by design."""
    return int(model.eval_rows_cpu) if device.type == "cpu" else EVAL_ROWS_GPU


def resolve_eval_batch_size(setting, model: CTRModel, device: torch.device) -> int:
    """The evaluation batch size to use: ``setting`` (a config value) when set, else the automatic one."""
    return int(setting) if setting is not None else default_eval_batch_size(model, device)


def resolve_eval_positions(setting, model: CTRModel, device: torch.device) -> int | None:
    """The cap on an evaluation batch's rows x longest history (``Batcher(max_positions=)``): the
    model's ``eval_positions_cpu`` when the batch size is automatic (``setting`` null) on CPU, else
    None (batches of exactly the rows asked for). For DIN, 8,192 positions: batches of long
    histories get fewer than 384 rows, so the attention MLP's activations stay in the cores'
    caches (docs/performance.md)."""
    if setting is not None or device.type != "cpu":
        return None
    cap = getattr(model, "eval_positions_cpu", None)
    return int(cap) if cap else None


def eval_batcher(dataset: ProcessedDataset, split: str, setting, model: CTRModel, device: torch.device, max_len: int) -> Batcher:
    """The evaluation Batcher of ``split`` for ``trainer.eval_batch_size=setting`` (null: automatic)."""
    return Batcher(dataset, split, resolve_eval_batch_size(setting, model, device), max_len,
                   max_positions=resolve_eval_positions(setting, model, device))


def default_eval_workers(device: torch.device) -> int:
    """``trainer.eval_workers=0`` (auto): on CPU one worker per torch thread, each running its
    batches single-threaded; on a GPU one."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def gathered_groups(batcher: Batcher, batches: Iterable[torch.Tensor], reg: Regularizer | None = None) -> Iterator[tuple[torch.Tensor, list[Batch]]]:
    """Evaluation's input side: ``batches`` (index tensors) in groups of consecutive batches of about
    ``GATHER_ROWS`` rows, each group gathered at once (``Batcher.gather_each``) and passed through the
    regularizer's evaluation transform. Yields (the group's sample indices, its batches). Lazy: a
    group is gathered when it is asked for (``predict`` gathers a chunk's groups in its I/O thread)."""
    group: list[torch.Tensor] = []
    rows = 0
    for idx in batches:
        group.append(idx)
        rows += len(idx)
        if rows >= GATHER_ROWS:
            yield _gathered(batcher, group, reg)
            group, rows = [], 0
    if group:
        yield _gathered(batcher, group, reg)


def _gathered(batcher: Batcher, group: list[torch.Tensor], reg: Regularizer | None) -> tuple[torch.Tensor, list[Batch]]:
    batches = batcher.gather_each(group)
    if reg is not None:
        batches = [reg.transform(b, training=False) for b in batches]
    return torch.cat(group), batches


def score_groups(model: CTRModel, groups: Iterable[tuple[torch.Tensor, list[Batch]]], out: torch.Tensor, device: torch.device) -> None:
    """Evaluation's model side: the logits (float32) of every group's batches written to ``out`` at the
    group's sample indices, one copy back per group (on a GPU, one wait). The caller sets the model's
    mode and ``torch.inference_mode``."""
    for idx, batches in groups:
        out[idx] = torch.cat([model(b.to_device(device)).logits.float() for b in batches]).cpu()


def predict_logits(
    model: CTRModel, batcher: Batcher, device: torch.device, reg: Regularizer | None = None, dist: DistContext | None = None,
    workers: int = 1,
) -> np.ndarray:
    """The model's logits (float32) for every sample of the batcher's split, in the split's row order.

    Logits, not sigmoid outputs: a float32 sigmoid is exactly 1.0 for every logit above about 16.7,
    so ranking probabilities would tie a confident model's predictions (ctrbench.metrics). The
    metrics rank these logits and compute logloss from them; :func:`predict` turns them into
    probabilities.

    With a distributed context, rank r scores the batches r, r + world, ... and the predictions of
    all ranks are gathered, so every rank returns the whole split's predictions.

    ``workers`` > 1 (CPU): that many threads score interleaved shares of the batches, torch running
    single-threaded inside each, so each core runs whole forward passes instead of a share of every
    kernel. Measured faster for long histories and slower for short ones (docs/performance.md), hence
    not the default. Each batch is scored alone and written to its own rows, so the predictions do
    not depend on the number of workers. 0: ``default_eval_workers`` (one per
    torch thread on CPU), as ``trainer.eval_workers=0``; the default, 1, scores the batches in this thread."""
    was_training = model.training
    model.eval()
    world, rank = (dist.world, dist.rank) if dist is not None and dist.enabled else (1, 0)
    out = torch.empty(batcher.n, dtype=torch.float32)
    mine = [idx for i, idx in enumerate(batcher.batches()) if i % world == rank]

    def score(share: list[torch.Tensor]) -> None:
        with torch.inference_mode():  # thread-local: entered in every worker
            score_groups(model, gathered_groups(batcher, share, reg), out, device)

    workers = default_eval_workers(device) if int(workers) == 0 else max(1, int(workers))
    workers = min(workers, len(mine)) if device.type == "cpu" else 1
    try:
        if workers > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers, thread_name_prefix="ctrbench-eval") as pool:
                    list(pool.map(score, [mine[w::workers] for w in range(workers)]))  # re-raises a worker's error
            finally:
                torch.set_num_threads(threads)
        else:
            score(mine)
    finally:
        model.train(was_training)
    if world == 1:
        return out.numpy()
    idx = torch.cat(mine) if mine else torch.empty(0, dtype=torch.int64)
    return dist.all_gather_predictions(idx, out[idx], batcher.n)


def predict(
    model: CTRModel, batcher: Batcher, device: torch.device, reg: Regularizer | None = None, dist: DistContext | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Click probabilities (float64) for every sample of the batcher's split, in the split's row
    order: the sigmoid of :func:`predict_logits`, taken in float64 so that they stay below 1.0 up
    to logits of about 36 (for ranking and logloss, use the logits)."""
    logits = predict_logits(model, batcher, device, reg, dist, workers)
    return torch.sigmoid(torch.from_numpy(logits).double()).numpy()


def evaluate(
    model: CTRModel, batcher: Batcher, device: torch.device, weighting: str, reg: Regularizer | None = None, dist: DistContext | None = None,
    workers: int = 1,
) -> tuple[dict, float]:
    """(metrics, seconds) for the batcher's split: AUC and GAUC ranked on the logits, logloss from
    them in float64 (``ctrbench.metrics.evaluate_logits``)."""
    t0 = time.perf_counter()
    logits = predict_logits(model, batcher, device, reg, dist, workers)
    metrics = evaluate_logits(batcher.user.numpy(), batcher.label.numpy(), logits, weighting=weighting)
    return metrics, time.perf_counter() - t0
