"""ctrbench/runtime.py: the garbage collector's set-up objects frozen for the training loop, and
unfrozen after it, also when the loop raises."""

from __future__ import annotations

import gc

import pytest

from ctrbench import runtime
from ctrbench.train import loop


def test_long_lived_frozen_freezes_for_its_body_only():
    assert gc.get_freeze_count() == 0
    with runtime.long_lived_frozen():
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError):
        with runtime.long_lived_frozen():
            raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0


def test_the_training_loop_runs_frozen(tiny_dataset, tmp_path, monkeypatch):
    from conftest import fast_trainer

    seen = []
    real = loop.Trainer._train

    def spy(self):
        seen.append(gc.get_freeze_count())
        return real(self)

    monkeypatch.setattr(loop.Trainer, "_train", spy)
    t = fast_trainer(tiny_dataset, tmp_path / "run", "trainer.max_steps=3")
    t.fit()
    assert seen and seen[0] > 1000 and gc.get_freeze_count() == 0
