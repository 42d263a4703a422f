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


def compose_train(*overrides: str):
    """The ``ctrbench train`` config composed from the package's conf/ with ``overrides``."""
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("train", list(overrides))


def first_steps(trainer, n: int = 30) -> tuple[list[float], dict]:
    """The losses of ``trainer``'s first ``n`` training steps and a copy of its weights after them."""
    losses = []
    for i, (_, batch) in enumerate(trainer.train_batches):
        if i == n:
            break
        losses.append(trainer.train_step(batch))
    return losses, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_training(a: tuple[list[float], dict], b: tuple[list[float], dict]) -> None:
    """Two ``first_steps`` results equal up to float32 rounding (amplified by SGD at learning rate 1)."""
    import torch

    assert a[0] == pytest.approx(b[0], rel=1e-5)
    for k, v in b[1].items():
        torch.testing.assert_close(a[1][k], v, rtol=1e-4, atol=1e-5)


def assert_native_trains_the_same(dataset, tmp_path: Path, key: str, *overrides: str, check=None) -> None:
    """``first_steps`` of a run with ``trainer.<key>=false`` (torch ops) and one with ``true`` (the
    native kernels) equal up to float32 rounding; ``check(trainer, native)`` on each trainer first."""
    runs = {}
    for setting in ("false", "true"):
        t = fast_trainer(dataset, tmp_path / setting, *overrides, f"trainer.{key}={setting}")
        if check is not None:
            check(t, setting == "true")
        runs[setting] = first_steps(t)
    assert_same_training(runs["true"], runs["false"])


def fast_trainer(dataset, run_dir: Path, *overrides: str):
    """A Trainer set up on ``dataset`` for calling ``train_step`` directly: the train config with
    +debug=fast on CPU and ``overrides``; the data folder is ``run_dir``'s parent's ``data``."""
    from ctrbench.train.loop import Progress, Trainer

    t = Trainer(compose_train("+debug=fast", "device=cpu", f"paths.data_dir={run_dir.parent / 'data'}", *overrides), run_dir)
    t.setup(dataset)
    t.progress = Progress()
    return t
