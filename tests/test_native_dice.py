"""Dice in training as native calls (nn/csrc/dice.c, nn/native_dice.py, trainer.native_dice): the same
values, gradients and moving statistics as the torch ops of activations.Dice, up to rounding."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ctrbench.errors import ConfigError
from ctrbench.nn import native, native_dice
from ctrbench.nn.activations import Dice
from ctrbench.nn.native_dice import NativeDice
from conftest import assert_native_trains_the_same, fast_trainer

needs_library = pytest.mark.skipif(native.library() is None, reason=f"no native library here: {native.unavailable_reason()}")


def _pair(H: int, mode: str, dtype) -> tuple[Dice, Dice]:
    torch.manual_seed(0)
    a, b = Dice(H, mode=mode).to(dtype), Dice(H, mode=mode).to(dtype)
    with torch.no_grad():
        a.alpha.uniform_(-0.5, 0.5)
        b.alpha.copy_(a.alpha)
    b.native = True
    return a, b


@needs_library
@pytest.mark.parametrize("mode", ["paper", "code"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("N, H", [(32, 200), (517, 80), (3, 7), (2, 1)])
def test_native_dice_matches_the_torch_ops(mode, dtype, tol, N, H):
    """Outputs, the gradients of x and alpha, and the moving statistics after three training calls."""
    torch_dice, native_dice_ = _pair(H, mode, dtype)
    for step in range(3):
        x = (torch.randn(N, H, dtype=dtype) * (step + 1) + step).requires_grad_()
        g = torch.randn(N, H, dtype=dtype)
        outs = []
        for m in (torch_dice, native_dice_):
            o = m(x)
            outs.append((o, *torch.autograd.grad(o, (x, m.alpha), g)))
        for u, v in zip(*outs):
            torch.testing.assert_close(v, u, rtol=tol, atol=tol)
    torch.testing.assert_close(native_dice_.running_mean, torch_dice.running_mean, rtol=tol, atol=tol)
    torch.testing.assert_close(native_dice_.running_var, torch_dice.running_var, rtol=tol, atol=tol)


@needs_library
def test_native_dice_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(5, dtype=torch.float64, requires_grad=True)
    for c in (0.0, 1e-3):
        assert torch.autograd.gradcheck(lambda x, a: NativeDice.apply(x, a, 1e-3, c)[0], (x, alpha))


@needs_library
def test_masked_rows_eval_mode_and_a_module_built_alone_use_the_torch_ops(monkeypatch):
    calls = []
    monkeypatch.setattr(NativeDice, "apply", lambda *a: calls.append(1) or (_ for _ in ()).throw(AssertionError("native")))
    m = Dice(4)
    m.train()(torch.randn(8, 4))  # native is off for a module built alone
    m.native = True
    m(torch.randn(2, 3, 4), torch.tensor([[True, True, False], [True, False, False]]))  # a mask: torch ops
    m.eval()(torch.randn(8, 4))  # inference: the moving statistics, torch ops
    assert calls == []
    m.train()
    with pytest.raises(AssertionError, match="native"):
        m(torch.randn(8, 4))


def test_mismatched_inputs_are_refused():
    if native.library() is None:
        pytest.skip("no native library")
    with pytest.raises(TypeError):
        NativeDice.apply(torch.randn(4, 3), torch.rand(3, dtype=torch.float64), 1e-8, 0.0)
    with pytest.raises(ValueError):
        NativeDice.apply(torch.randn(4, 3), torch.rand(4), 1e-8, 0.0)
    with pytest.raises(ValueError):
        NativeDice.apply(torch.randn(0, 3), torch.rand(3), 1e-8, 0.0)
    assert not native_dice.usable(torch.randn(0, 3)) and not native_dice.usable(torch.randn(4, 3).half())


@needs_library
def test_din_with_dice_trains_the_same_with_native_and_torch_dice(tiny_dataset, tmp_path):
    """The din_table3 DIN-with-Dice row (SGD at lr 1, batch 32, packed histories), 30 steps each
    way: the same losses and weights up to float32 rounding."""
    def check(t, native):
        assert [m.native for m in t.model.modules() if isinstance(m, Dice)] == [native] * 4

    assert_native_trains_the_same(tiny_dataset, tmp_path, "native_dice", "+experiment=din_table3", "+row=din_table3/din_dice", check=check)


@needs_library
def test_a_run_records_how_its_dice_ran(tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "act=dice", "trainer.max_steps=5", "trainer.eval_every=5", "trainer.selection=last")
    assert t.fit()["dice"] == "native"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dice"] == "native"
    t = fast_trainer(tiny_dataset, tmp_path / "prelu", "trainer.max_steps=5", "trainer.eval_every=5", "trainer.selection=last")
    assert t.native_dice is False and t.fit()["dice"] is None  # no Dice to run


def test_the_setting_is_checked_and_falls_back_without_the_library(tiny_dataset, tmp_path, monkeypatch, caplog):
    with pytest.raises(ConfigError, match=r"trainer.native_dice='maybe' is invalid: expected auto, true or false"):
        fast_trainer(tiny_dataset, tmp_path / "bad", "act=dice", "trainer.native_dice=maybe")
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "_reason", "no C compiler found ($CC, cc, gcc or clang)")
    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        t = fast_trainer(tiny_dataset, tmp_path / "auto", "act=dice")
    assert t.native_dice is False and "the native Dice activations could not be built: no C compiler found" in caplog.text
    with pytest.raises(ConfigError, match=r"trainer.native_dice=true: the native Dice activations could not be built: no C compiler"):
        fast_trainer(tiny_dataset, tmp_path / "true", "act=dice", "trainer.native_dice=true")
