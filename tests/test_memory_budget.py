"""Resource limits (docs/reliability.md, part 7): the memory estimate of a run and the up-front
ConfigError when it exceeds device.max_memory_gb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ctrbench.config_checks import check_train
from ctrbench.data.batches import Batcher
from ctrbench.data.prepare import prepare
from ctrbench.errors import ConfigError
from conftest import compose_train
from ctrbench.memory_budget import (
    GB,
    check_budget_value,
    check_memory_budget,
    estimate_memory,
)
from ctrbench.train.build import build_model


def train_cfg(*overrides: str):
    return compose_train(*overrides)


# the shape of a full Amazon Electronics (DIN protocol) manifest, without its files
BIG = {
    "vocab": {"n_users": 192_404, "n_items": 63_002, "n_cates": 802},
    "rows": {"behaviours": 1_689_188, "train": 2_608_764, "valid": 384_808, "test": 384_806},
    "stats": {"behaviours_per_user": {"max": 431}},
}


def test_no_budget_means_no_check():
    cfg = train_cfg()
    assert cfg.device.max_memory_gb is None
    assert check_memory_budget(cfg, BIG) is None


@pytest.mark.parametrize("bad", [0, -1, "8GB", True, float("nan"), [8]])
def test_invalid_budget_is_a_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"device\.max_memory_gb=.* is invalid: expected a number of GB > 0, or null"):
        check_budget_value(bad)
    cfg = train_cfg()
    cfg.device.max_memory_gb = bad
    with pytest.raises(ConfigError, match=r"device\.max_memory_gb"):
        check_train(cfg)


def test_parameters_are_counted_exactly(tiny_dataset):
    for model in ("din", "wdl", "dien", "lr"):
        cfg = train_cfg(f"model={model}")
        est = estimate_memory(tiny_dataset, cfg.model, cfg.trainer, 20, cfg.act, cfg.optim)
        real = build_model(cfg.model, cfg.act, tiny_dataset.vocab)
        n = sum(p.numel() for p in real.parameters()) + sum(b.numel() for b in real.buffers())
        assert est.details["parameters"] == n
        assert est.parts["parameters"] == est.parts["gradients"] == 4 * n
        assert est.parts["optimizer state (adam: 2 x parameters)"] == 8 * n


def test_data_part_is_close_to_the_arrays_really_held(tiny_dataset):
    cfg = train_cfg()
    est = estimate_memory(tiny_dataset, cfg.model, cfg.trainer, 50, cfg.act, cfg.optim)
    ds = tiny_dataset
    held = ds.streams.item.nbytes + ds.streams.cate.nbytes + ds.streams.time.nbytes + ds.streams.offsets.nbytes + ds.item_cate.nbytes
    held += sum(a.nbytes for s in ds.splits.values() for a in s.columns().values())
    for split in ("train", "valid", "test"):
        b = Batcher(ds, split, 256, 50)
        held += sum(t.numel() * t.element_size() for t in vars(b).values() if isinstance(t, torch.Tensor))
    assert 0.7 * held <= est.parts["data"] <= 1.6 * held, (est.parts["data"], held)


def test_the_estimate_grows_with_what_the_advice_names():
    cfg = train_cfg()
    base = estimate_memory(BIG, cfg.model, cfg.trainer, 100, cfg.act, cfg.optim)
    wide = estimate_memory(BIG, OmegaConf.merge(cfg.model, {"embedding_dim": 180}), cfg.trainer, 100, cfg.act, cfg.optim)
    short = estimate_memory(BIG, cfg.model, cfg.trainer, 10, cfg.act, cfg.optim)
    sgd = estimate_memory(BIG, cfg.model, cfg.trainer, 100, cfg.act, train_cfg("optim=sgd").optim)
    assert wide.parts["parameters"] > 9 * base.parts["parameters"]
    assert short.parts["activations"] < base.parts["activations"] / 5 and short.parts["data"] == base.parts["data"]
    assert sum(v for k, v in sgd.parts.items() if k.startswith("optimizer")) == 0 < base.total - sgd.total
    # history length is capped by the longest stream
    long = estimate_memory(BIG, cfg.model, cfg.trainer, 10_000, cfg.act, cfg.optim)
    assert long.details["history_length"] == 431


def test_over_budget_is_one_clear_line():
    cfg = train_cfg("device.max_memory_gb=0.25", "dataset.max_len=100")
    with pytest.raises(ConfigError) as info:
        check_memory_budget(cfg, BIG)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("this run needs about ") and "more than device.max_memory_gb=0.25" in msg
    for part in ("data", "parameters", "gradients", "optimizer state (adam: 2 x parameters)", "activations"):
        assert part in msg
    # trainer.eval_batch_size=null: estimated at the automatic choice's largest, 2,048 rows on CPU and 4,096 on a GPU
    for device, rows in (("cpu", "2,048"), ("cuda", "4,096")):
        with pytest.raises(ConfigError, match=rf"now 256 / null, estimated at {rows} rows\)"):
            check_memory_budget(train_cfg(f"device={device}", "device.max_memory_gb=0.25", "dataset.max_len=100"), BIG)
    for tip in ("dataset.max_len (now 100)", "model.embedding_dim=18", "a smaller dataset or split", "optim=sgd", "a bigger budget (device.max_memory_gb)"):
        assert tip in msg
    assert msg.index("a smaller dataset or split") < msg.index("model.embedding_dim")  # the biggest part first
    cfg.device.max_memory_gb = 8
    est = check_memory_budget(cfg, BIG)
    assert 0.25 * GB < est.total < 8 * GB


def test_a_huge_embedding_is_stopped_before_anything_is_allocated():
    cfg = train_cfg("device.max_memory_gb=16", "model.embedding_dim=100000")
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d+ GB, more than device\.max_memory_gb=16.*model\.embedding_dim=100000"):
        check_memory_budget(cfg, BIG)


def test_accepts_a_folder_a_manifest_or_a_loaded_dataset(tmp_path):
    from conftest import tiny_dataset_cfg

    path, _ = prepare(tiny_dataset_cfg(seed=41), tmp_path)
    cfg = train_cfg("device.max_memory_gb=64")
    from ctrbench.data.store import load, read_manifest

    totals = {check_memory_budget(cfg, x).total for x in (path, str(path), read_manifest(path), load(path))}
    assert len(totals) == 1
    assert np.isfinite(next(iter(totals)))


def test_without_a_dataset_it_prepares_the_configured_one(tmp_path):
    """What Trainer.setup calls before it loads anything: check_memory_budget(cfg, dataset=None)."""
    from conftest import tiny_dataset_cfg

    cfg = train_cfg("device.max_memory_gb=0.001")
    cfg.dataset = OmegaConf.merge(cfg.dataset, tiny_dataset_cfg(seed=42))
    cfg.paths.data_dir = str(tmp_path)
    with pytest.raises(ConfigError, match="more than device.max_memory_gb=0.001"):
        check_memory_budget(cfg)
    assert list((tmp_path / "processed").glob("synthetic-*/manifest.json"))  # prepared, for the load that follows
    cfg.device.max_memory_gb = None
    assert check_memory_budget(cfg) is None
