"""device.precision: automatic mixed precision for training (bf16 on CPU here; fp16 needs CUDA)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import fast_trainer

from ctrbench.errors import ConfigError
from ctrbench.train.environment import resolve_precision

MODELS = ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_under_bf16_autocast(model, tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", f"model={model}", "device.precision=bf16")
    losses = []
    for i, (_, batch) in enumerate(t.train_batches):
        losses.append(t.train_step(batch))
        if i == 5:
            break
    assert all(math.isfinite(v) for v in losses)
    assert t.amp_dtype == torch.bfloat16 and t.scaler is None
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # autocast keeps fp32 master weights


def test_precision_values_are_checked():
    cpu = torch.device("cpu")
    assert resolve_precision(OmegaConf.create({"precision": "fp32"}), cpu) is None
    assert resolve_precision(OmegaConf.create({}), cpu) is None
    assert resolve_precision(OmegaConf.create({"precision": "bf16"}), cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision(OmegaConf.create({"precision": "fp16"}), cpu)
    with pytest.raises(ConfigError, match="device.precision='fp8'"):
        resolve_precision(OmegaConf.create({"precision": "fp8"}), cpu)
