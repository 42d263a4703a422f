"""device.compile=true: the model under torch.compile trains and scores like the eager model."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import compose_train, fast_trainer

from ctrbench.errors import ConfigError


def _trainer(tiny_dataset, tmp_path, model: str, compile_: bool):
    torch.manual_seed(0)
    return fast_trainer(tiny_dataset, tmp_path / ("compiled" if compile_ else "eager"), f"model={model}", f"device.compile={str(compile_).lower()}")


def test_compiled_din_trains_and_scores_like_eager(tiny_dataset, tmp_path):
    """The same initial weights and batches: losses, weights after 4 steps and the eval-mode
    predictions agree up to float rounding (inductor reorders sums), across batches of different
    history lengths (one dynamic-shape graph)."""
    from ctrbench.train.evaluate import predict

    eager = _trainer(tiny_dataset, tmp_path, "din", False)
    comp = _trainer(tiny_dataset, tmp_path, "din", True)
    comp.model.load_state_dict(eager.model.state_dict())
    assert comp.compiled and comp.step_model is not comp.model
    batches = []
    for i, (_, batch) in enumerate(eager.train_batches):
        batches.append(batch)
        if i == 3:
            break
    assert len({b.hist_item.shape[1] for b in batches}) > 1  # more than one history length
    for b in batches:
        assert abs(eager.train_step(b) - comp.train_step(b)) < 1e-4
    for (name, p), q in zip(eager.model.named_parameters(), comp.model.parameters()):
        assert torch.allclose(p, q, atol=1e-4), name
    p_eager = predict(eager.eval_model, eager.test_batches, eager.device)
    p_comp = predict(comp.eval_model, comp.test_batches, comp.device)
    assert abs(p_eager - p_comp).max() < 1e-4


def test_dien_is_not_compiled_and_says_so(tiny_dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        t = _trainer(tiny_dataset, tmp_path, "dien", True)
    assert not t.compiled and t.step_model is t.model and t.eval_model is t.model
    assert "model=dien is not compiled" in caplog.text


def test_compile_without_a_cxx_compiler_is_a_clear_error(monkeypatch):
    from ctrbench.train import compiled

    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler.*device.compile=false"):
        compiled.check_compile_available(torch.device("cpu"))


def test_compile_value_is_checked():
    from omegaconf import OmegaConf

    from ctrbench.config_checks import check_train

    cfg = compose_train("device.compile=true")
    check_train(cfg)
    OmegaConf.update(cfg, "device.compile", "sometimes", merge=False)
    with pytest.raises(ConfigError, match="device.compile='sometimes' is invalid: expected true or false"):
        check_train(cfg)
