"""Shared fixtures: a tiny synthetic dataset built in a temporary data folder (no files in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run in parallel workers (pytest -n): one torch thread each, so that the workers do not
    # oversubscribe the cores.
    import torch

    torch.set_num_threads(1)

TINY_SOURCE = {"n_users": 300, "n_items": 200, "n_cates": 10, "mean_len": 8.0, "max_len": 20}


def tiny_dataset_cfg(**source_overrides):
    cfg = OmegaConf.load(CONF / "dataset" / "synthetic.yaml")
    cfg.pop("defaults")
    cfg.protocol = OmegaConf.load(CONF / "dataset" / "protocol" / "din.yaml")
    for k, v in {**TINY_SOURCE, **source_overrides}.items():
        cfg.source[k] = v
    return cfg


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    from ctrbench.data.prepare import load_dataset

    data_dir = tmp_path_factory.mktemp("data")
    return load_dataset(tiny_dataset_cfg(), data_dir)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """CLI runs inside tests never touch the repo's data/ folder."""
    monkeypatch.setenv("CTRBENCH_DATA_DIR", str(tmp_path_factory.getbasetemp() / "cli-data"))
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
