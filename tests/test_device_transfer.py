"""Batches bound for a GPU are page-locked before their non-blocking copy (``Batch.to_device``), in
training and in evaluation. CI has no GPU, so the wiring is checked on CPU with torch's pinning and
copying stood in for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fast_trainer

from ctrbench.data.schema import Batch
from ctrbench.train.evaluate import predict


def test_batch_pin_memory_pins_every_tensor_and_keeps_absent_fields(monkeypatch):
    pinned = []

    def fake_pin(t):
        pinned.append(t)
        return t.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    b = Batch(*(torch.arange(3) for _ in range(4)), torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long),
              torch.ones(3, 2, dtype=torch.bool), torch.full((3,), 2))
    p = b.pin_memory()
    assert len(pinned) == 8 and p.neg_hist_item is None and p.neg_hist_cate is None
    assert all(torch.equal(getattr(p, f), getattr(b, f)) for f in ("user", "hist_item", "hist_mask", "hist_len"))


class FakeCuda:
    """Reads as a CUDA device; the batches stay on the CPU."""

    type = "cuda"


@pytest.fixture
def transfers(monkeypatch) -> dict:
    """Counts ``Batch.pin_memory`` calls and records each ``Batch.to``'s ``non_blocking``; a copy to
    a ``FakeCuda`` device stays on the CPU."""
    calls = {"pin": 0, "non_blocking": []}
    real_to = Batch.to

    def pin(self):
        calls["pin"] += 1
        return self

    def to(self, device, non_blocking=False):
        calls["non_blocking"].append(non_blocking)
        return real_to(self, "cpu") if isinstance(device, FakeCuda) else real_to(self, device, non_blocking)

    monkeypatch.setattr(Batch, "pin_memory", pin)
    monkeypatch.setattr(Batch, "to", to)
    return calls


def test_evaluation_pins_and_copies_non_blocking_for_a_gpu(tiny_dataset, tmp_path, transfers):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=din")
    want = predict(t.model, t.test_batches, t.device, t.reg)
    transfers["pin"], transfers["non_blocking"] = 0, []
    got = predict(t.model, t.test_batches, FakeCuda(), t.reg)
    np.testing.assert_array_equal(got, want)
    assert transfers["pin"] == len(t.test_batches) and transfers["non_blocking"] and all(transfers["non_blocking"])
    transfers["pin"], transfers["non_blocking"] = 0, []
    predict(t.model, t.test_batches, t.device, t.reg)  # on the CPU: no pinning, plain copies
    assert transfers["pin"] == 0 and not any(transfers["non_blocking"])


def test_training_pins_batches_for_a_gpu(tiny_dataset, tmp_path, transfers):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=din")
    _, batch = next(iter(t.train_batches))
    t.train_step(batch)  # on the CPU: no pinning
    assert transfers["pin"] == 0
    t.device = FakeCuda()
    assert np.isfinite(t.train_step(batch))
    assert transfers["pin"] == 1 and transfers["non_blocking"][-1] is True
