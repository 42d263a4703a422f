"""Resource limits: estimate a training run's resident memory before it starts, and stop with a
clear ``ConfigError`` when it exceeds ``device.max_memory_gb`` (null: no limit).

The estimate (GB = 2**30 bytes) is the sum of, roughly:

- **data**: the processed dataset's arrays (behaviour streams: item, category and time, 8 bytes
  each, plus a rating; each split's sample columns) and the Batchers' copies of them (each of the
  train, selection and test Batchers keeps the item and category streams and its split's columns
  as int64 tensors), from the manifest's row counts and vocabulary sizes;
- **parameters**: the model built on PyTorch's ``meta`` device (shapes only, no memory), so every
  embedding table (vocabulary x ``model.embedding_dim``), the Wide&Deep buckets, the MLPs and the
  GRUs count exactly; 4 bytes each;
- **gradients**: as many as parameters (the embedding tables get dense gradients);
- **optimizer state**: Adam keeps two moments per parameter (2 x parameters); SGD one with
  momentum, none without;
- **activations**: one training batch's forward and backward (``trainer.batch_size`` x the history
  length the model sees, min(``dataset.max_len``, the longest behaviour stream)) or one
  evaluation batch's forward (``trainer.eval_batch_size``; when null, the most the automatic
  choice takes: 2,048 rows on CPU, 4,096 on a GPU) with the ids of the group of evaluation batches
  gathered together (``evaluate.GATHER_ROWS`` rows), whichever is larger.

It is an estimate to catch the run that cannot fit (a full dataset on a laptop, an embedding
dimension with one zero too many) before it is loaded and trained for an hour, not an accounting:
allocator overheads, Python objects and the framework itself (a few hundred MB) are not in it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ctrbench.data.schema import ProcessedDataset, Vocab
from ctrbench.errors import ConfigError, DataError

GB = 2**30
FLOAT = 4  # bytes of a float32
INT = 8  # bytes of an int64
KEY = "device.max_memory_gb"


@dataclass
class MemoryEstimate:
    """The parts of the estimate, in bytes, and what they were computed from."""

    parts: dict[str, int]
    details: dict[str, object] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def describe(self) -> str:
        """``data 1.20 GB + parameters 0.70 GB + ...``"""
        return " + ".join(f"{name} {gb(b)}" for name, b in self.parts.items())


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.2f} GB" if n_bytes >= GB / 100 else f"{n_bytes / 2**20:.1f} MB"


def check_budget_value(value) -> float | None:
    """``device.max_memory_gb`` validated: None (no limit) or a number of GB > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{KEY}={value!r} is invalid: expected a number of GB > 0, or null for no limit")
    return float(value)


def _manifest_of(dataset) -> dict:
    """The manifest of a ``ProcessedDataset``, of a processed folder (its manifest.json), or the
    manifest itself."""
    if isinstance(dataset, ProcessedDataset):
        return dataset.manifest
    if isinstance(dataset, dict):
        return dataset
    path = Path(dataset)
    mpath = path / "manifest.json" if path.is_dir() else path
    try:
        return json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the processed dataset's manifest '{mpath}' to estimate memory ({e})") from None


def _model_parameters(model_cfg: DictConfig, act_cfg: DictConfig | None, vocab: Vocab) -> int:
    """Number of parameters of the configured model, built on the meta device (no memory)."""
    import torch

    from ctrbench.train.build import build_model

    act = act_cfg if act_cfg is not None else OmegaConf.create({"_target_": "ctrbench.nn.activations.PReLU", "_partial_": True})
    with torch.device("meta"):
        model = build_model(model_cfg, act, vocab)
    n = sum(p.numel() for p in model.parameters())
    n += sum(b.numel() for b in model.buffers())  # Dice's moving averages and the like
    return int(n)


def _ints(cfg, key: str) -> list[int]:
    v = cfg.get(key) if cfg is not None else None
    if v is None:
        return []
    try:
        return [int(x) for x in v]
    except (TypeError, ValueError):
        return []


def _activation_floats_per_sample(model_cfg: DictConfig, hist_len: int) -> int:
    """Floats one sample's forward pass keeps for the backward, roughly: the history embeddings
    (item and category; twice with DIEN's negative history), the attention / auxiliary MLPs and
    GRU states at every history position, then the main MLP."""
    d = int(model_cfg.get("embedding_dim", 1) or 1)
    name = str(model_cfg.get("name", ""))
    per_position = 2 * d * (2 if name == "dien" else 1)
    per_position += 3 * sum(_ints(model_cfg, "attention_hidden"))
    if name == "dien":
        per_position += 8 * int(model_cfg.get("hidden", 2 * d) or 0) + 3 * sum(_ints(model_cfg, "aux_hidden"))
    per_sample = 6 * 2 * d + 3 * sum(_ints(model_cfg, "mlp"))
    return hist_len * per_position + per_sample


def estimate_memory(
    dataset,
    model_cfg: DictConfig,
    trainer_cfg: DictConfig,
    max_len: int,
    act_cfg: DictConfig | None = None,
    optim_cfg: DictConfig | None = None,
    device_type: str = "auto",
) -> MemoryEstimate:
    """Estimate the resident memory of training ``model_cfg`` on ``dataset`` (a loaded
    ``ProcessedDataset``, the folder of a processed dataset, or its manifest dict) with
    ``trainer_cfg`` (batch sizes, selection) and histories cut to ``max_len``. ``device_type``
    (``device.type``; ``auto`` is a GPU when torch sees one) bounds the automatic evaluation batch:
    2,048 rows on CPU, 4,096 on a GPU."""
    m = _manifest_of(dataset)
    try:
        vocab = Vocab(**{k: int(v) for k, v in m["vocab"].items()})
        rows = {k: int(v) for k, v in m["rows"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError("the processed dataset's manifest has no vocab / rows to estimate memory from; re-run `ctrbench prepare`") from None
    n_beh = rows.get("behaviours", 0)
    longest = ((m.get("stats") or {}).get("behaviours_per_user") or {}).get("max")
    hist_len = int(min(max_len, longest)) if longest is not None else int(max_len)
    has_score = bool(m.get("oracle"))
    has_rating = (m.get("protocol") or {}).get("protocol") == "movielens"

    # the dataset in memory: streams (item, cate, time [, rating]), offsets, item categories, splits
    sample_bytes = 4 * INT + FLOAT + (FLOAT if has_score else 0)  # user, item, cate, hist_end, label [, score]
    split_rows = {s: rows.get(s, 0) for s in ("train", "valid", "test")}
    dataset_bytes = n_beh * (3 * INT + (FLOAT if has_rating else 0)) + 2 * (vocab.n_users + 1) * INT + vocab.n_items * INT
    dataset_bytes += sum(split_rows.values()) * sample_bytes
    # the Batchers: each copies the item and category streams; each its split's columns (user, item,
    # cate, label, hist_len, hist_start); the training one also its epoch's orderings
    selection = str(trainer_cfg.get("selection", "valid"))
    select_split = {"valid": "valid", "test_as_valid": "test", "last": None}.get(selection, "valid")
    batched = ["train", "test"] + ([select_split] if select_split else [])
    batcher_bytes = len(batched) * ((n_beh + 1) * 2 * INT + vocab.n_items * INT + (vocab.n_users + 1) * INT)
    batcher_bytes += sum(split_rows[s] for s in batched) * (5 * INT + FLOAT) + 3 * split_rows["train"] * INT

    n_params = _model_parameters(model_cfg, act_cfg, vocab)
    optim = optim_cfg if optim_cfg is not None else {"name": "adam"}
    optim_name = str(optim.get("name", "adam"))
    target = str(optim.get("_target_", ""))
    if optim_name == "adam" or target.endswith(("Adam", "AdamW")):
        moments, optim_label = 2, "adam: 2 x parameters"
    elif float(optim.get("momentum", 0.0) or 0.0) > 0:
        moments, optim_label = 1, f"{optim_name} with momentum: 1 x parameters"
    else:
        moments, optim_label = 0, f"{optim_name}: none"

    batch = int(trainer_cfg.get("batch_size", 256))
    if device_type == "auto":
        import torch

        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    from ctrbench.models.base import CTRModel
    from ctrbench.train.evaluate import EVAL_ROWS_GPU, GATHER_ROWS

    # null: the automatic choice's largest (CTRModel's CPU default is the largest any model takes)
    auto_rows = CTRModel.eval_rows_cpu if device_type == "cpu" else EVAL_ROWS_GPU
    eval_batch = int(trainer_cfg.get("eval_batch_size") or auto_rows)
    floats = _activation_floats_per_sample(model_cfg, hist_len)
    index_bytes = 5 * INT * hist_len  # hist item / cate / position / mask / negatives per position
    # evaluation gathers the ids of a group of batches at once (GATHER_ROWS rows, or one batch if larger)
    activations = max(batch * (2 * FLOAT * floats + index_bytes), eval_batch * FLOAT * floats + max(eval_batch, GATHER_ROWS) * index_bytes)

    parts = {
        "data": dataset_bytes + batcher_bytes,
        "parameters": n_params * FLOAT,
        "gradients": n_params * FLOAT,
        f"optimizer state ({optim_label})": moments * n_params * FLOAT,
        "activations": activations,
    }
    details = {
        "behaviours": n_beh, "samples": sum(split_rows.values()), "parameters": n_params, "vocab": vocab.__dict__,
        "history_length": hist_len, "batch_size": batch, "eval_batch_size": eval_batch,
        "eval_batch_set": trainer_cfg.get("eval_batch_size") is not None,
    }
    return MemoryEstimate(parts=parts, details=details)


def _advice(est: MemoryEstimate, cfg: DictConfig) -> str:
    """What to change, for the biggest parts first."""
    d, parts = est.details, est.parts
    model_bytes = sum(b for name, b in parts.items() if name in ("parameters", "gradients") or name.startswith("optimizer"))
    optimizer_bytes = sum(b for name, b in parts.items() if name.startswith("optimizer"))
    model_tip = (
        f"a smaller embedding (model.embedding_dim={OmegaConf.select(cfg, 'model.embedding_dim', default=None)}: "
        f"{d['parameters']:,} parameters for {d['vocab']['n_items']:,} items)"
    )
    if optimizer_bytes:
        model_tip += " or optim=sgd (no optimizer state)"
    tips = [
        (parts.get("data", 0), f"a smaller dataset or split ({d['behaviours']:,} behaviours and {d['samples']:,} samples now)"),
        (model_bytes, model_tip),
        (parts.get("activations", 0), (
            f"a smaller dataset.max_len (now {OmegaConf.select(cfg, 'dataset.max_len', default=None)}) or "
            f"trainer.batch_size / trainer.eval_batch_size (now {d['batch_size']} / "
            f"{d['eval_batch_size'] if d['eval_batch_set'] else 'null, estimated at ' + format(d['eval_batch_size'], ',') + ' rows'})"
        )),
    ]
    ordered = [tip for _, tip in sorted(tips, key=lambda t: t[0], reverse=True)]
    return ", ".join(ordered) + f", or a bigger budget ({KEY})"


def check_memory_budget(cfg: DictConfig, dataset=None) -> MemoryEstimate | None:
    """Raise a ``ConfigError`` when the estimated memory of training with ``cfg`` on ``dataset``
    (a ``ProcessedDataset``, a processed folder or its manifest; None: the processed dataset of
    ``cfg.dataset``, prepared if needed, but not loaded) exceeds ``device.max_memory_gb``; returns
    the estimate (None when there is no budget, and then nothing is prepared)."""
    budget = check_budget_value(OmegaConf.select(cfg, KEY, default=None))
    if budget is None:
        return None
    if dataset is None:
        from ctrbench.data.prepare import prepare

        dataset, _ = prepare(cfg.dataset, cfg.paths.data_dir)
    est = estimate_memory(
        dataset, cfg.model, cfg.trainer, int(cfg.dataset.max_len),
        act_cfg=OmegaConf.select(cfg, "act", default=None), optim_cfg=OmegaConf.select(cfg, "optim", default=None),
        device_type=str(OmegaConf.select(cfg, "device.type", default="auto")),
    )
    if est.total > budget * GB:
        raise ConfigError(
            f"this run needs about {est.total_gb:.2f} GB, more than {KEY}={budget:g}: {est.describe()}; "
            f"to fit, use {_advice(est, cfg)}"
        )
    return est
