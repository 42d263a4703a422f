"""The training loop: deterministic for a seed, selects on validation, stops on a NaN loss."""

from __future__ import annotations

import json

import pytest
import torch

from ctrbench.errors import ConfigError, TrainingDiverged
from conftest import compose_train
from ctrbench.train.loop import Trainer


def cfg_for(tmp_path, *overrides):
    return compose_train("+debug=fast", "device=cpu", f"paths.data_dir={tmp_path / 'data'}", *overrides)


def train(tmp_path, name, *overrides, dataset=None):
    run = tmp_path / name
    run.mkdir()
    t = Trainer(cfg_for(tmp_path, *overrides), run)
    t.setup(dataset)
    return t.fit(), run, t


def test_same_seed_same_metrics(tmp_path, tiny_dataset):
    a, _, _ = train(tmp_path, "a", "seed=7", dataset=tiny_dataset)
    b, _, _ = train(tmp_path, "b", "seed=7", dataset=tiny_dataset)
    c, _, _ = train(tmp_path, "c", "seed=8", dataset=tiny_dataset)
    assert a["test"] == b["test"] and a["valid_best"] == b["valid_best"]
    assert a["test"] != c["test"]


def test_best_checkpoint_is_the_one_scored(tmp_path, tiny_dataset):
    m, run, t = train(tmp_path, "r", "trainer.max_steps=40", "trainer.eval_every=10", dataset=tiny_dataset)
    state = torch.load(run / "best.pt", weights_only=False)
    assert state["step"] == m["valid_best"]["step"] and {"model", "optimizer", "scheduler", "rng"} <= set(state)
    assert json.loads((run / "metrics.json").read_text())["test"] == m["test"]
    assert m["selection"] == "valid"


def test_early_stopping(tmp_path, tiny_dataset):
    # a zero learning-rate-like setup never improves after the first evaluation
    m, _, t = train(tmp_path, "es", "trainer.max_steps=200", "trainer.eval_every=5", "trainer.patience=2",
                    "optim.lr=1e-12", dataset=tiny_dataset)
    assert m["steps"] < 200


def test_test_as_valid_is_recorded(tmp_path, tiny_dataset):
    m, _, _ = train(tmp_path, "tav", "trainer.selection=test_as_valid", dataset=tiny_dataset)
    assert m["selection"] == "test_as_valid"


def test_nan_loss_stops_with_a_clear_error(tmp_path, tiny_dataset):
    with pytest.raises(TrainingDiverged, match=r"step \d+.*learning rate"):
        train(tmp_path, "nan", "optim.lr=1e30", "optim=sgd", dataset=tiny_dataset)


def test_unknown_selection(tmp_path):
    with pytest.raises(ConfigError, match="trainer.selection"):
        Trainer(cfg_for(tmp_path, "trainer.selection=best_of_test"), tmp_path)


@pytest.mark.parametrize("model", ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"])
def test_every_model_trains_through_the_loop(tmp_path, tiny_dataset, model):
    m, _, _ = train(tmp_path, model, f"model={model}", dataset=tiny_dataset)
    assert m["status"] == "completed" and 0 <= m["test"]["auc"] <= 1


REGS = ["none", "l2", "mba", "dropout", "filter", "difacto"]


@pytest.mark.parametrize("act", ["prelu", "dice"])
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("model", ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"])
def test_every_model_reg_act_combination_trains(tmp_path, tiny_dataset, model, reg, act):
    m, _, _ = train(tmp_path, f"{model}-{reg}-{act}", f"model={model}", f"reg={reg}", f"act={act}",
                    "trainer.max_steps=4", "trainer.eval_every=2", dataset=tiny_dataset)
    assert m["status"] == "completed" and m["reg"] == reg and m["act"] == act
    assert m["variant"]["regularizer"]["name"] == reg and m["variant"]["activation"]["name"] == act
    if reg in ("l2", "mba", "difacto"):
        assert "lam" in m["variant"]["regularizer"]


def test_lr_schedule_every_epochs():
    from omegaconf import OmegaConf

    from ctrbench.train.build import lr_lambda

    f = lr_lambda(OmegaConf.create({"type": "step", "gamma": 0.5, "every_steps": 7, "every_epochs": 2}), steps_per_epoch=10)
    assert [f(0), f(19), f(20), f(45)] == [1.0, 1.0, 0.5, 0.25]
    g = lr_lambda(OmegaConf.create({"type": "exponential", "gamma": 0.1, "every_steps": 100}), steps_per_epoch=10)
    assert g(50) == pytest.approx(0.1**0.5)
