"""``prepare``: build a processed dataset from its source and protocol, or reuse the cached one.

The cache key is a hash of the content-defining config: the dataset's name, its ``source`` and its
``protocol`` sections (not ``max_len``, which only changes what the Batcher reads). A changed config
therefore never reuses a stale cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ctrbench.data import store
from ctrbench.data.schema import SPLITS, ProcessedDataset
from ctrbench.errors import ConfigError


def content_config(dataset_cfg: DictConfig) -> dict:
    for key in ("name", "source", "protocol"):
        if key not in dataset_cfg:
            raise ConfigError(f"the dataset config has no '{key}' (expected name, source and protocol sections)")
    return OmegaConf.to_container(
        OmegaConf.create({k: dataset_cfg[k] for k in ("name", "source", "protocol")}), resolve=True
    )


def _oracle(splits) -> dict | None:
    """Bayes-optimal metrics of each split, when the samples carry their true click probability."""
    from ctrbench.metrics import evaluate_predictions

    if any(splits[s].score is None for s in SPLITS):
        return None
    return {s: evaluate_predictions(splits[s].user, splits[s].label, splits[s].score) for s in SPLITS if len(splits[s])}


def _stats(streams, splits) -> dict:
    lengths = streams.lengths()
    lengths = lengths[lengths > 0]
    return {
        "users_with_behaviours": int(lengths.size),
        "behaviours_per_user": {q: float(np.percentile(lengths, p)) for q, p in (("p50", 50), ("p90", 90), ("max", 100))},
        "positive_rate": {s: float(splits[s].label.mean()) if len(splits[s]) else None for s in SPLITS},
    }


def prepare(dataset_cfg: DictConfig, data_dir: str | Path, force: bool = False) -> tuple[Path, bool]:
    """Make sure the processed dataset exists; returns (its folder, whether it was built now)."""
    content = content_config(dataset_cfg)
    target = store.dataset_dir(data_dir, content["name"], content)
    if (target / store.MANIFEST).exists() and not force:
        return target, False
    if force and target.exists():
        import shutil

        shutil.rmtree(target)
    source = instantiate(dataset_cfg.source)
    protocol = instantiate(dataset_cfg.protocol)
    t0 = time.perf_counter()
    streams, item_cate, splits, info = source.build(protocol)
    extra = {
        "protocol": info,
        "stats": _stats(streams, splits),
        "oracle": _oracle(splits),
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    store.write(target, content["name"], content, streams, item_cate, splits, extra)
    return target, True


def load_dataset(dataset_cfg: DictConfig, data_dir: str | Path, verify: bool = True) -> ProcessedDataset:
    """Prepare on demand, then load."""
    path, _ = prepare(dataset_cfg, data_dir)
    return store.load(path, verify=verify)
