"""trainer.eval_workers: evaluation batches scored by worker threads give the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose_train, fast_trainer

from ctrbench.errors import ConfigError
from ctrbench.train.evaluate import default_eval_workers, predict


def _trainer(tiny_dataset, tmp_path, *overrides):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "trainer.eval_batch_size=16", *overrides)
    for i, (_, batch) in enumerate(t.train_batches):  # trained a little, so scores differ between samples
        t.train_step(batch)
        if i == 3:
            break
    return t


@pytest.mark.parametrize("overrides", [("model=din",), ("model=din", "act=dice"), ("model=dien",), ("model=base", "reg=filter")])
def test_worker_threads_give_the_same_predictions(tiny_dataset, tmp_path, overrides):
    t = _trainer(tiny_dataset, tmp_path, *overrides)
    threads = torch.get_num_threads()
    one = predict(t.model, t.test_batches, t.device, t.reg, workers=1)
    three = predict(t.model, t.test_batches, t.device, t.reg, workers=3)
    assert len(list(t.test_batches.batches())) > 3  # several batches per worker
    np.testing.assert_array_equal(one, three)
    assert torch.get_num_threads() == threads  # restored after the workers ran single-threaded
    assert t.model.training  # the mode the caller had


def test_a_workers_error_reaches_the_caller_and_threads_are_restored(tiny_dataset, tmp_path):
    t = _trainer(tiny_dataset, tmp_path, "model=din")
    threads = torch.get_num_threads()

    class Broken:
        def transform(self, batch, training):
            raise RuntimeError("broken transform")

    with pytest.raises(RuntimeError, match="broken transform"):
        predict(t.model, t.test_batches, t.device, Broken(), workers=2)
    assert torch.get_num_threads() == threads and t.model.training


def test_auto_workers_and_config_checks():
    from omegaconf import OmegaConf

    from ctrbench.config_checks import check_train

    assert default_eval_workers(torch.device("cpu")) == torch.get_num_threads()
    assert default_eval_workers(torch.device("cuda")) == 1
    cfg = compose_train("trainer.eval_workers=2")
    check_train(cfg)
    OmegaConf.update(cfg, "trainer.eval_workers", -1, merge=False)
    with pytest.raises(ConfigError, match="trainer.eval_workers=-1 is invalid"):
        check_train(cfg)
