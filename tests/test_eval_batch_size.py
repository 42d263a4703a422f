"""trainer.eval_batch_size=null: the evaluation batch size is chosen per model and device, and the
scores do not depend on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fast_trainer

from ctrbench.train.evaluate import EVAL_ROWS_GPU, default_eval_batch_size, predict, resolve_eval_positions


@pytest.mark.parametrize("model, rows, positions", [("din", 384, 8192), ("base", 2048, None), ("dien", 2048, 204800), ("lr", 2048, None)])
def test_auto_evaluation_batch_size_on_cpu(tiny_dataset, tmp_path, model, rows, positions):
    t = fast_trainer(tiny_dataset, tmp_path / "run", f"model={model}")
    assert t.cfg.trainer.eval_batch_size is None  # the default is auto
    assert t.eval_batch_size == rows == t.test_batches.batch_size == t.select_batches.batch_size
    assert t.eval_positions == positions == t.test_batches.max_positions == t.select_batches.max_positions
    assert default_eval_batch_size(t.model, torch.device("cuda")) == EVAL_ROWS_GPU  # no GPU needed to ask
    assert resolve_eval_positions(None, t.model, torch.device("cuda")) is None  # no position cap on a GPU


def test_a_set_evaluation_batch_size_is_used(tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=din", "trainer.eval_batch_size=7")
    assert t.eval_batch_size == 7 == t.test_batches.batch_size
    assert t.eval_positions is None and t.test_batches.max_positions is None  # exactly the rows asked for


def test_scores_do_not_depend_on_the_evaluation_batch_size(tiny_dataset, tmp_path):
    from ctrbench.data.batches import Batcher

    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=din", "act=dice")
    for i, (_, batch) in enumerate(t.train_batches):  # trained a little (Dice's moving statistics too)
        t.train_step(batch)
        if i == 3:
            break
    max_len = int(t.cfg.dataset.max_len)
    auto = predict(t.model, t.test_batches, t.device, t.reg)
    small = predict(t.model, Batcher(tiny_dataset, "test", 5, max_len), t.device, t.reg)
    np.testing.assert_allclose(auto, small, rtol=1e-5, atol=1e-6)
    budget = Batcher(tiny_dataset, "test", 64, max_len, max_positions=40)  # 1-40 rows per batch by length
    assert len(budget) > len(Batcher(tiny_dataset, "test", 64, max_len))
    np.testing.assert_allclose(auto, predict(t.model, budget, t.device, t.reg), rtol=1e-5, atol=1e-6)
