"""`ctrbench table`'s grouping, statistics, RelaImpr and output formats, on hand-made run folders."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from ctrbench.errors import UserError
from ctrbench.report.collect import find_runs
from ctrbench.report.table import build_table, write_table

GAUC = {"lr": [0.70, 0.72, 0.71], "base": [0.80, 0.82, 0.81], "din": [0.84, 0.85, 0.86]}


def write_run(folder, model, seed, gauc, status="completed", dataset="synthetic", selection="valid", oracle=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".hydra").mkdir(exist_ok=True)
    (folder / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nmodel: {{name: {model}}}\n")
    m = {
        "status": status, "dataset": dataset, "model": model, "act": "prelu", "reg": "none", "seed": seed,
        "test": {"auc": gauc - 0.05, "gauc": gauc, "logloss": 1 - gauc}, "valid_best": None,
        "oracle": {"test": {"auc": 0.9, "gauc": 0.95, "logloss": 0.3}} if oracle else None,
        "selection": selection, "train_samples_per_s": 1000.0,
    }
    (folder / "metrics.json").write_text(json.dumps(m))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    job = 0
    for model, values in GAUC.items():
        for seed, g in zip((1, 2, 3), values):
            write_run(root / str(job), model, seed, g)
            job += 1
    return root


def row(table, model):
    return next(r for r in table.rows if r.model == model)


def test_groups_means_stds_and_relaimpr(sweep):
    t = build_table(find_runs([sweep]))
    for model, values in GAUC.items():
        r = row(t, model)
        assert r.n_seeds == 3 and r.seeds == [1, 2, 3]
        assert r.mean["gauc"] == pytest.approx(np.mean(values))
        assert r.std["gauc"] == pytest.approx(np.std(values, ddof=1))
    # RelaImpr of DIN on GAUC: (0.85 - 0.5) / (0.81 - 0.5) - 1
    assert row(t, "din").rela_impr_gauc == pytest.approx((0.35 / 0.31 - 1) * 100)
    assert row(t, "base").rela_impr_gauc == pytest.approx(0.0)
    assert row(t, "din").rela_impr_auc == pytest.approx((0.30 / 0.26 - 1) * 100)


def test_paper_row_order_and_oracle_row(sweep):
    t = build_table(find_runs([sweep]))
    assert [r.model for r in t.rows] == ["lr", "base", "din", "oracle (Bayes-optimal)"]
    oracle = t.rows[-1]
    assert oracle.is_oracle and oracle.mean["gauc"] == 0.95


def test_markdown_and_csv(sweep, tmp_path):
    t = build_table(find_runs([sweep]))
    md = t.to_markdown()
    assert "| synthetic | din | prelu | none | 3 | 0.8000 ± 0.0100 | 0.8500 ± 0.0100 |" in md
    df = pd.read_csv(io.StringIO(t.to_csv()))
    assert list(df.model) == ["lr", "base", "din", "oracle (Bayes-optimal)"]
    assert df.loc[df.model == "din", "gauc_mean"].item() == pytest.approx(0.85)
    out = write_table(t, "csv", tmp_path / "out" / "r.csv")
    assert pd.read_csv(out).shape[0] == 4
    assert [p.name for p in out.parent.iterdir()] == ["r.csv"]  # no temporary file left
    with pytest.raises(UserError, match="unknown table format 'xlsx'"):
        write_table(t, "xlsx", tmp_path / "r.xlsx")


def test_failed_and_missing_runs_are_shown(sweep):
    write_run(sweep / "9", "din", 4, 0.5, status="failed")
    unfinished = sweep / "10"
    (unfinished / ".hydra").mkdir(parents=True)
    (unfinished / ".hydra" / "config.yaml").write_text("seed: 5\nmodel: {name: din}\nact: {name: prelu}\nreg: {name: none}\ndataset: {name: synthetic}\n")
    t = build_table(find_runs([sweep]))
    din = row(t, "din")
    assert din.n_seeds == 3 and din.n_failed == 1 and din.n_missing == 1
    assert "failed/missing" in t.to_markdown()


def test_no_base_row_and_test_as_valid_notes(tmp_path):
    write_run(tmp_path / "r1", "din", 1, 0.8, selection="test_as_valid", oracle=False)
    t = build_table(find_runs([tmp_path / "r1"]))
    assert row(t, "din").rela_impr_gauc is None
    assert any("no completed 'base' run" in n for n in t.notes)
    assert any("test set" in n for n in t.notes)


def test_a_single_run_folder(tmp_path):
    write_run(tmp_path / "one", "base", 1, 0.8)
    t = build_table(find_runs([tmp_path / "one"]))
    assert row(t, "base").n_seeds == 1 and row(t, "base").std["gauc"] == 0.0


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="'.*nowhere' does not exist"):
        find_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no metrics.json under"):
        find_runs([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{oops")
    with pytest.raises(UserError, match="not valid JSON"):
        find_runs([tmp_path / "bad"])
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "metrics.json").write_text(json.dumps({"dataset": "d", "model": "m"}))
    with pytest.raises(UserError, match="has no 'act'"):
        find_runs([tmp_path / "partial"])
