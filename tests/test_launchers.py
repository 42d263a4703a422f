"""Multirun presets: the joblib launcher runs a sweep's jobs in parallel (and they share one
processed dataset), the Optuna preset maximises the jobs' validation GAUC."""

from __future__ import annotations

import json

import pytest
import yaml

from test_cli import ctrbench

FAST = ["+debug=fast", "trainer.max_steps=4", "device.threads=1"]


def test_joblib_launcher_runs_jobs_in_parallel_on_one_dataset(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="hydra-joblib-launcher is not installed (pip install 'ctrbench[parallel]')")
    proc = ctrbench("train", "-m", "model=lr,base", "seed=1,2", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "hydra.sweep.dir=outputs/j", cwd=tmp_path)
    assert "Joblib" in proc.stdout + proc.stderr
    runs = sorted((tmp_path / "outputs" / "j").glob("*/metrics.json"))
    assert len(runs) == 4
    # four jobs, one processed dataset (prepared once under the file lock)
    assert len({json.loads(r.read_text())["dataset_dir"] for r in runs}) == 1
    assert len([p for p in (tmp_path / "data" / "processed").iterdir() if not p.name.startswith(".")]) == 1


def test_optuna_preset_maximises_validation_gauc(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed (pip install 'ctrbench[optuna]')")
    ctrbench("train", "-m", "+hparams_search=din_optuna", "hydra.sweeper.n_trials=2", *FAST, "hydra.sweep.dir=outputs/o", cwd=tmp_path)
    result = yaml.safe_load((tmp_path / "outputs" / "o" / "optimization_results.yaml").read_text())
    valid = [json.loads(p.read_text())["valid_best"]["gauc"] for p in (tmp_path / "outputs" / "o").glob("*/metrics.json")]
    assert len(valid) == 2 and result["best_value"] == pytest.approx(max(valid))
    assert set(result["best_params"]) == {"optim.lr", "model.embedding_dim", "trainer.batch_size", "model.attention_softmax"}


def test_optuna_preset_keeps_its_study_in_a_sqlite_storage(tmp_path):
    """``hydra.sweeper.storage=sqlite:///...``: the trials are recorded in the database. (With the
    sweeper's optuna 2.x this needs SQLAlchemy < 2, which the optuna and dev extras pin; under
    SQLAlchemy 2 optuna's storage fails before the first trial.)"""
    import sqlite3

    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed (pip install 'ctrbench[optuna]')")
    db = tmp_path / "study.db"
    ctrbench("train", "-m", "+hparams_search=din_optuna", "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage=sqlite:///{db}", *FAST,
             "hydra.sweep.dir=outputs/s", cwd=tmp_path)
    valid = sorted(json.loads(p.read_text())["valid_best"]["gauc"] for p in (tmp_path / "outputs" / "s").glob("*/metrics.json"))
    with sqlite3.connect(db) as con:
        studies = [r[0] for r in con.execute("SELECT study_name FROM studies")]
        recorded = sorted(r[0] for r in con.execute(
            "SELECT v.value FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id WHERE t.state = 'COMPLETE'"))
    con.close()
    assert studies == ["din_optuna"] and len(valid) == 2
    assert recorded == pytest.approx(valid)
