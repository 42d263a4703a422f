"""``prepare``: build a processed dataset from its source and protocol, or reuse the cached one.

The cache key is a hash of the content-defining config: the dataset's name, its ``source`` and its
``protocol`` sections (not ``max_len``, which only changes what the Batcher reads). A changed config
therefore never reuses a stale cache.

A cached dataset whose files no longer match their checksums (a flipped bit, a truncated copy) is
not an error for ``load_dataset``: it logs a warning naming the file and rebuilds the dataset.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ctrbench.data import store
from ctrbench.data.schema import SPLITS, ProcessedDataset
from ctrbench.errors import ConfigError, CorruptFile

log = logging.getLogger("ctrbench")


# Source settings that say where files are or how to fetch them, not what the data is (the files
# themselves enter the key through the source's fingerprint).
LOCATION_KEYS = ("raw_dir", "download", "path", "item_meta_path")


def content_config(dataset_cfg: DictConfig, source=None) -> dict:
    """The part of the dataset config that defines the processed data (its cache key): name,
    source (less its location settings) and protocol; for a real source, the identity (name, size,
    modification time) of each raw input file too."""
    for key in ("name", "source", "protocol"):
        if key not in dataset_cfg:
            raise ConfigError(f"the dataset config has no '{key}' (expected name, source and protocol sections)")
    full = OmegaConf.to_container(dataset_cfg, resolve=True)
    content = {k: full[k] for k in ("name", "source", "protocol")}
    content["source"] = {k: v for k, v in content["source"].items() if k not in LOCATION_KEYS}
    if source is not None and hasattr(source, "fingerprint"):
        content["inputs"] = source.fingerprint()
    return content


def _construct(node: DictConfig, key: str):
    """Build the object a ``_target_`` section names; a wrong target or argument is a ConfigError
    naming the section (errors the object itself raises, such as ConfigError, pass through)."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    target = kwargs.pop("_target_", None)
    if not target:
        raise ConfigError(f"'{key}' has no _target_ (the class to build)")
    try:
        cls = get_class(target)
    except Exception as e:  # noqa: BLE001 - hydra raises several kinds
        raise ConfigError(f"'{key}._target_': cannot import {target!r} ({str(e).splitlines()[0]})") from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"'{key}' does not fit {target}: {e}") from None


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
        "train_history_length": (
            {q: float(np.percentile(splits["train"].hist_end - splits["train"].history_start(), p)) for q, p in (("p10", 10), ("p50", 50), ("p90", 90), ("max", 100))}
            if len(splits["train"]) else None
        ),
        "positive_rate": {s: float(splits[s].label.mean()) if len(splits[s]) else None for s in SPLITS},
    }


def prepare(dataset_cfg: DictConfig, data_dir: str | Path, force: bool = False, repair: bool = False) -> tuple[Path, bool]:
    """Make sure the processed dataset exists; returns (its folder, whether it was built now).
    ``repair``: also check the cached dataset's checksums (under the lock) and rebuild it when
    they do not match."""
    name = content_config(dataset_cfg)["name"]
    source = _construct(dataset_cfg.source, "dataset.source")
    if hasattr(source, "locate"):  # a real source: find (or download) its raw files first
        source.locate(data_dir, name)
    content = content_config(dataset_cfg, source)
    target = store.dataset_dir(data_dir, name, content)
    if (target / store.MANIFEST).exists() and not force and not repair:
        return target, False
    # Several processes (a parallel multirun, two shells) may want the same dataset: one builds it
    # under a file lock, the others wait and then find it complete.
    with dataset_lock(target):
        if (target / store.MANIFEST).exists() and not force:
            if not repair or store.is_intact(target):  # another process may have repaired it already
                return target, False
            force = True
        return _build(dataset_cfg, source, content, target, force), True


# How long a process waits for another one's build of the same dataset (CTRBENCH_LOCK_TIMEOUT
# overrides it): a real dataset's build takes minutes.
DATASET_LOCK_TIMEOUT_S = 3600.0


@contextlib.contextmanager
def dataset_lock(target: Path):
    """An exclusive lock on ``.<name>.lock`` beside the dataset folder (``filelock``; released when
    the process dies), held while the dataset is built. A process that finds it held says by whom
    and waits (``ctrbench.locks.held_lock``), at most ``CTRBENCH_LOCK_TIMEOUT`` seconds (default one
    hour), then stops with a one-line error naming the holder."""
    from ctrbench.locks import held_lock

    with held_lock(
        target.parent / f".{target.name}.lock", f"the processed dataset '{target}'", DATASET_LOCK_TIMEOUT_S,
        why="it is building this dataset", unwritable="paths.data_dir must be a writable folder",
    ):
        yield


def _build(dataset_cfg: DictConfig, source, content: dict, target: Path, force: bool) -> Path:
    name = content["name"]
    if force and target.exists():
        import shutil

        shutil.rmtree(target)
    protocol = _construct(dataset_cfg.protocol, "dataset.protocol")
    log.info(f"building the processed dataset '{name}' in {target} (once: later runs load it from there)")
    t0 = time.perf_counter()
    streams, item_cate, splits, info = source.build(protocol)
    extra = {
        "protocol": info,
        "stats": _stats(streams, splits),
        "oracle": _oracle(splits),
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    store.write(target, name, content, streams, item_cate, splits, extra)
    return target


def load_dataset(dataset_cfg: DictConfig, data_dir: str | Path, verify: bool = True) -> ProcessedDataset:
    """Prepare on demand, then load. A cached dataset that fails its checksums is rebuilt (with a
    warning naming the damaged file); one that fails them right after being built is an error."""
    path, built = prepare(dataset_cfg, data_dir)
    try:
        return store.load(path, verify=verify)
    except CorruptFile as e:
        if built:
            raise
        log.warning(f"the cached processed dataset is damaged: {e.reason}; rebuilding {path}")
    path, _ = prepare(dataset_cfg, data_dir, repair=True)
    return store.load(path, verify=verify)
