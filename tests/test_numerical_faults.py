"""Numerical faults: a NaN / infinite loss, gradient norm or weights stop training with a one-line
error naming the step and the likely cause, keep the last good checkpoints, and record the failure
in metrics.json; in a sweep the other jobs still run and `ctrbench table` shows the failed one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ctrbench.errors import TrainingDiverged
from ctrbench.train import checkpoint
from conftest import compose_train
from ctrbench.train.loop import Trainer
from test_cli import ctrbench

# evaluations (and best.pt, last.pt) at steps 5, 10, ...; last.pt also every 2 steps
FAST = ["+debug=fast", "device=cpu", "device.threads=1", "trainer.eval_every=5", "trainer.checkpoint_every=2", "trainer.patience=0"]


def cfg_for(tmp_path: Path, *overrides: str):
    return compose_train(*FAST, f"paths.data_dir={tmp_path / 'data'}", *overrides)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fail(tmp_path, tiny_dataset, *overrides, match: str):
    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(cfg_for(tmp_path, *overrides), run)
    t.setup(tiny_dataset)
    with pytest.raises(TrainingDiverged, match=match) as e:
        t.fit()
    message = str(e.value)
    assert "\n" not in message
    return run, message


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_loss_keeps_the_last_good_checkpoints_and_records_the_failure(tmp_path, tiny_dataset):
    run, message = fail(tmp_path, tiny_dataset, "trainer.fault_injection.nan_at_step=7",
                        match=r"the loss became nan at step 7: training diverged \(try a smaller learning rate than optim.lr=0.001, or trainer.grad_clip")
    assert f"step 6, is kept in {run / 'last.pt'}" in message
    last, best = checkpoint.load(run / "last.pt"), checkpoint.load(run / "best.pt")
    assert last["step"] == 6 and best["step"] == 5 and all_finite(last) and all_finite(best)
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "failed" and m["step"] == 7 and m["reason"] == message and m["checkpoint_step"] == 6
    assert m["test"] is None and m["model"] == "din" and m["seed"] == 1  # what `ctrbench table` needs
    assert json.loads((run / "status.json").read_text())["status"] == "failed"


def test_nan_gradient_is_caught_where_grad_clip_computes_the_norm(tmp_path, tiny_dataset):
    run, message = fail(tmp_path, tiny_dataset, "trainer.fault_injection.nan_grad_at_step=3", "trainer.grad_clip=5",
                        match=r"the gradient norm became nan at step 3 \(loss [\d.]+\): training diverged \(likely cause: too large a learning rate, optim.lr=0.001")
    assert checkpoint.load(run / "last.pt")["step"] == 2
    assert json.loads((run / "metrics.json").read_text())["step"] == 3


def test_non_finite_weights_are_never_written(tmp_path, tiny_dataset):
    # no grad_clip: the NaN gradient of step 4 reaches the weights; the checkpoint due at step 4 is not written
    before = None

    def keep_last_digest(self, _orig=Trainer.save_last):
        nonlocal before
        _orig(self)
        before = digest(self.last_path)

    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(cfg_for(tmp_path, "trainer.fault_injection.nan_grad_at_step=4"), run)
    t.setup(tiny_dataset)
    t.save_last = keep_last_digest.__get__(t)
    with pytest.raises(TrainingDiverged, match=r"the weights became non-finite by step 4 \(before writing last.pt\).*step 2, is kept"):
        t.fit()
    assert digest(run / "last.pt") == before and checkpoint.load(run / "last.pt")["step"] == 2
    assert all_finite(checkpoint.load(run / "last.pt"))


def test_absurd_learning_rate_fails_the_run(tmp_path, tiny_dataset):
    run, message = fail(tmp_path, tiny_dataset, "optim=sgd", "optim.lr=1e30", match=r"at step \d+: training diverged .*learning rate")
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_cli_one_line_error_and_failed_run_folder(tmp_path):
    proc = ctrbench("train", *FAST, "trainer.fault_injection.nan_at_step=3", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "at step 3: training diverged" in err, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def sweep_with_one_nan_job(tmp_path: Path, *launcher: str) -> Path:
    proc = ctrbench("train", "-m", *FAST, "trainer.max_steps=6", "seed=1,2", "trainer.fault_injection.nan_at_step=null,4",
                    "hydra.sweep.dir=outputs/s", *launcher, cwd=tmp_path, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = [line for line in proc.stderr.splitlines() if line.startswith("ctrbench train:")]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len([line for line in err if "failed: the loss became nan at step 4" in line]) == 2  # one job of each seed
    assert "2 jobs of the sweep failed" in err[-1] and "ctrbench table outputs/s" in err[-1]
    sweep = tmp_path / "outputs" / "s"
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json"))
    assert statuses == ["completed", "completed", "failed", "failed"]
    table = ctrbench("table", str(sweep), "format=csv", f"output={tmp_path / 't.csv'}", cwd=tmp_path).stdout
    assert "failed/missing" in table
    import pandas as pd

    row = pd.read_csv(tmp_path / "t.csv").query("model == 'din'").iloc[0]
    assert row["n_seeds"] == 2 and row["n_failed"] == 2 and row["n_missing"] == 0
    return sweep


@pytest.mark.slow
def test_sweep_finishes_the_other_jobs_and_the_table_shows_the_failed_ones(tmp_path):
    sweep_with_one_nan_job(tmp_path)


@pytest.mark.slow
def test_sweep_with_the_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="hydra-joblib-launcher is not installed (pip install 'ctrbench[parallel]')")
    sweep_with_one_nan_job(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
