"""trainer.compile_packed: DIN's layers after the lookups of a packed batch under torch.compile in
training (``CTRModel.packed_layers``): the same losses and weights as eager up to float rounding,
evaluation untouched, and the setting's choices and errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch

from conftest import fast_trainer

from ctrbench.errors import ConfigError
from ctrbench.models import base as models_base
from ctrbench.train import compiled
from ctrbench.train.compiled import COMPILE_PACKED_MIN_STEPS, resolve_compile_packed

CPU = torch.device("cpu")


class _Head(torch.nn.Module):
    packed_head = True


def test_the_setting_chooses_by_run_length_and_what_applies():
    model = _Head()
    long, short = COMPILE_PACKED_MIN_STEPS, COMPILE_PACKED_MIN_STEPS - 1
    assert resolve_compile_packed("auto", model, True, False, CPU, long)
    assert not resolve_compile_packed("auto", model, True, False, CPU, short)  # a short run stays eager
    assert resolve_compile_packed("true", model, True, False, CPU, short)
    assert not resolve_compile_packed("false", model, True, False, CPU, long)
    assert not resolve_compile_packed("true", torch.nn.Linear(2, 2), True, False, CPU, long)  # no packed layers
    assert not resolve_compile_packed("true", model, False, False, CPU, long)  # batches not packed
    assert not resolve_compile_packed("true", model, True, True, CPU, long)  # device.compile=true: the whole model
    assert not resolve_compile_packed("auto", model, True, False, torch.device("meta"), long)  # packing is CPU-only
    with pytest.raises(ConfigError, match=r"trainer.compile_packed='yes' is invalid: expected auto, true or false"):
        resolve_compile_packed("yes", model, True, False, CPU, long)


def test_without_a_cxx_compiler_auto_warns_and_true_is_a_clear_error(monkeypatch, caplog):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        assert not resolve_compile_packed("auto", _Head(), True, False, CPU, COMPILE_PACKED_MIN_STEPS)
    assert "needs a C++ compiler" in caplog.text and "run eager" in caplog.text
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler.*trainer.compile_packed=false"):
        resolve_compile_packed("true", _Head(), True, False, CPU, 1)


def _trainer(tiny_dataset, tmp_path, name: str, compile_: bool, model: str = "din"):
    torch.manual_seed(0)
    return fast_trainer(tiny_dataset, tmp_path / name, f"model={model}", "trainer.bucket=0", "trainer.pack_histories=true",
                        f"trainer.compile_packed={str(compile_).lower()}", "optim=sgd", "optim.lr=0.5")


@pytest.mark.parametrize("model, layers", [("din", "attend_packed"), ("deepfm", "combine_packed"), ("pnn", "combine_packed")])
def test_compiled_packed_layers_train_like_eager(tiny_dataset, tmp_path, model, layers):
    """The same initial weights and batches: losses and weights after 5 steps agree up to float
    rounding (inductor fuses and reorders sums), over packed batches of different sizes (one graph
    with symbolic sizes); evaluation runs the eager layers, so its predictions are the eager model's."""
    from ctrbench.train.evaluate import predict

    eager = _trainer(tiny_dataset, tmp_path, "eager", False, model)
    comp = _trainer(tiny_dataset, tmp_path, "compiled", True, model)
    comp.model.load_state_dict(eager.model.state_dict())
    assert comp.compile_packed and comp.model.compile_packed and not eager.model.compile_packed
    batches = [b for _, (_, b) in zip(range(5), eager.train_batches)]
    assert len({int(b.hist_len.sum()) for b in batches}) > 1  # packed sizes differ
    calls = []
    real = models_base.CTRModel.packed_layers

    def spy(self, layers, *args):
        calls.append(layers.__name__)
        return real(self, layers, *args)

    models_base.CTRModel.packed_layers = spy
    try:
        for b in batches:
            assert eager.train_step(b) == pytest.approx(comp.train_step(b), abs=1e-5)
    finally:
        models_base.CTRModel.packed_layers = real
    assert calls and set(calls) == {layers}  # the packed path ran
    assert getattr(type(comp.model), layers) in models_base._COMPILED  # and its layers were compiled
    for (name, p), q in zip(eager.model.named_parameters(), comp.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
    comp.model.load_state_dict(eager.model.state_dict())
    p_eager = predict(eager.eval_model, eager.test_batches, eager.device)
    p_comp = predict(comp.eval_model, comp.test_batches, comp.device)
    assert torch.equal(torch.as_tensor(p_eager), torch.as_tensor(p_comp))


def test_copies_of_a_compiled_model_hold_nothing_compiled(tiny_dataset, tmp_path):
    import copy

    t = _trainer(tiny_dataset, tmp_path, "copy", True)
    t.train_step(next(iter(t.train_batches))[1])
    clone = copy.deepcopy(t.model)  # what export does with a model
    assert not any(callable(v) and "compile" in type(v).__name__.lower() for v in vars(clone).values())


@pytest.mark.slow
def test_a_compiled_run_goes_end_to_end_and_records_it(tmp_path):
    """``ctrbench train`` with packed batches and ``trainer.compile_packed=true``: it trains, selects,
    scores the test split and records ``compile_packed: true`` in metrics.json."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "ctrbench", "train", "+debug=fast", "model=din", "trainer.bucket=0",
                           "trainer.compile_packed=true", "optim=sgd", "optim.lr=0.5", f"hydra.run.dir={out}",
                           f"paths.data_dir={tmp_path / 'data'}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compile_packed"] is True and metrics["pack_histories"] is True
    assert 0.0 < metrics["test"]["auc"] < 1.0
