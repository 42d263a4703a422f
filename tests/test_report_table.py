"""`ctrbench table`'s grouping, statistics, RelaImpr and output formats, on hand-made run folders."""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from ctrbench.errors import UserError
from ctrbench.report import stats
from ctrbench.report.collect import find_runs
from ctrbench.report.table import build_table, describe_training, write_table

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


# ---- runs of a published table (metrics.json "experiment" / "row" / "protocol") -----------------
EXP_GAUC = {"base": [0.86, 0.87], "din": [0.88, 0.89]}
ROW_CONFIG = {"base": ("base", "prelu", "none"), "din": ("din", "prelu", "none"), "din_dice": ("din", "dice", "none")}


def write_exp_run(folder, row, seed, gauc, dataset="amazon_electronics", experiment="din_table3", protocol="din",
                  selection="valid", status="completed", history=True, training=None):
    model, act, reg = ROW_CONFIG[row]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".hydra").mkdir(exist_ok=True)
    (folder / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\nexperiment_name: {experiment}\nrow_name: {row}\nmodel: {{name: {model}}}\n"
        f"act: {{name: {act}}}\nreg: {{name: {reg}}}\ndataset: {{name: {dataset}}}\n")
    m = {
        "status": status, "dataset": dataset, "model": model, "act": act, "reg": reg, "seed": seed,
        "experiment": experiment, "row": row, "protocol": protocol,
        "test": {"auc": gauc - 0.05, "gauc": gauc, "logloss": 1 - gauc, "gauc_weighting": "impressions"},
        "valid_best": None,
        "oracle": {"test": {"auc": 0.9, "gauc": 0.95, "logloss": 0.3}} if dataset == "synthetic" else None,
        "selection": selection, "train_samples_per_s": 1000.0,
        "variant": {"activation": {"name": act, "init": 0.1}, "regularizer": {"name": reg}, "gauc_weighting": "impressions",
                    **({"training": training} if training else {})},
    }
    (folder / "metrics.json").write_text(json.dumps(m))
    if history:
        steps = [100, 200, 300]
        pd.DataFrame({"step": steps, "epoch": [0, 1, 2], "valid_gauc": [gauc - 0.02, gauc - 0.01, gauc]}).to_csv(
            folder / "history.csv", index=False)


def exp_sweep(root, dataset="amazon_electronics", **kw):
    job = 0
    for row, values in EXP_GAUC.items():
        for seed, g in zip((1, 2), values):
            write_exp_run(root / str(job), row, seed, g, dataset=dataset, **kw)
            job += 1
    return root


def exp_row(table, key):
    return next(r for r in table.rows if r.row_key == key and not r.is_oracle)


# hand-computed for EXP_GAUC: base mean 0.865, din mean 0.885, each with sample variance 0.00005
DIN_RELA_IMPR = (0.385 / 0.365 - 1) * 100  # Eq. 11 = 5.479...%
# Welch with n = 2 on both sides and equal variances: se² = 0.00005/2 + 0.00005/2 = 0.00005,
# t = 0.02 / sqrt(0.00005) = 2·sqrt(2); dof = (0.00005)² / (2 · 0.000025² / 1) = 2.
# Student's t with 2 dof has the closed-form CDF 1/2 + t / (2·sqrt(2 + t²)), so the two-sided
# p = 1 − |t| / sqrt(2 + t²) = 1 − sqrt(8 / 10).
DIN_T, DIN_DOF, DIN_P = 2 * math.sqrt(2), 2.0, 1 - math.sqrt(0.8)


def test_experiment_rows_in_the_papers_order_with_hand_computed_statistics(tmp_path):
    t = build_table(find_runs([exp_sweep(tmp_path / "multirun")]))
    (section,) = t.sections
    assert section.experiment == "din_table3" and section.metric == "gauc" and section.comparable
    assert [r.row_name for r in t.rows] == ["LR", "BaseModel", "Wide&Deep", "PNN", "DeepFM", "DIN", "DIN with Dice"]
    din, base = exp_row(t, "din"), exp_row(t, "base")
    assert din.n_seeds == 2 and din.mean["gauc"] == pytest.approx(0.885) and din.std["gauc"] == pytest.approx(math.sqrt(0.00005))
    assert din.rela_impr == pytest.approx(DIN_RELA_IMPR) and base.rela_impr == pytest.approx(0.0)
    assert din.welch.t == pytest.approx(DIN_T) and din.welch.dof == pytest.approx(DIN_DOF) and din.p_value == pytest.approx(DIN_P)
    assert base.is_baseline and base.welch is None
    # published beside ours, and the difference ours − published
    assert din.published == {"paper": (0.8818, None), "authors' repo": (0.8698, None)}
    assert din.diff["paper"] == pytest.approx(0.885 - 0.8818) and din.diff["authors' repo"] == pytest.approx(0.885 - 0.8698)
    assert exp_row(t, "lr").no_runs and exp_row(t, "lr").published == {"paper": (0.7742, None)}


def test_experiment_table_in_every_format(tmp_path):
    t = build_table(find_runs([exp_sweep(tmp_path / "multirun")]))
    md = t.to_markdown()
    assert md.startswith("### din_table3 · DIN (Zhou et al., KDD 2018) Table 3 · amazon_electronics · metric GAUC")
    assert "| row | seeds | AUC | GAUC | logloss | RelaImpr | paper | Δ paper | authors' repo | Δ authors' repo | p | failed/missing |" in md
    assert (f"| DIN | 2 | 0.8350 ± 0.0071 | 0.8850 ± 0.0071 | 0.1150 ± 0.0071 | +{DIN_RELA_IMPR:.2f}% | 0.8818 | +0.0032 | 0.8698 | +0.0152 "
            f"| {DIN_P:.3f} | 0/0 |") in md
    assert "| BaseModel | 2 |" in md and "| ref | 0/0 |" in md
    assert "| LR | 0 | – | – | – | – | 0.7742 | – | – | – | – | missing (no runs) |" in md
    assert "protocol: din" in md and "GAUC weighting: impressions" in md and "model selection: valid" in md
    assert "act prelu (init=0.1): BaseModel, DIN" in md
    df = pd.read_csv(io.StringIO(t.to_csv()))
    assert list(df.row) == ["lr", "base", "wdl", "pnn", "deepfm", "din", "din_dice"]
    din = df[df.row == "din"].iloc[0]
    assert din.p_value == pytest.approx(DIN_P) and din.rela_impr == pytest.approx(DIN_RELA_IMPR)
    assert din.published_paper == 0.8818 and din.diff_paper == pytest.approx(0.0032)
    assert din.published_authors_repo == 0.8698 and bool(df[df.row == "lr"].no_runs.item())
    tex = t.to_latex()
    assert "\\begin{tabular}{lrrrrrrrrrrl}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "Wide\\&Deep & 0 &" in tex and "$\\Delta$ paper" in tex and "0.8850 $\\pm$ 0.0071" in tex
    assert f"+{DIN_RELA_IMPR:.2f}\\%" in tex and "missing (no runs)" in tex
    assert all(line.startswith("%") or "_" not in line.replace("\\_", "") for line in tex.splitlines())
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(t.to_rich(notes=True))
    text = console.export_text()
    assert "DIN with Dice" in text and "missing" in text and "note: protocol: din" in text
    narrow = Console(width=80, record=True)
    narrow.print(t.to_rich(width=80))
    text = narrow.export_text()
    assert "narrow terminal" in text and "DIN with Dice" in text and "missing" in text
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for fmt, name in (("markdown", "r.md"), ("csv", "r.csv"), ("latex", "r.tex")):
        out = write_table(t, fmt, tmp_path / "out" / name)
        assert out.read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.csv", "r.md", "r.tex"]


def test_missing_and_failed_runs_of_an_experiment_are_shown(tmp_path):
    root = exp_sweep(tmp_path / "multirun")
    write_exp_run(root / "8", "din", 3, 0.5, status="failed")
    unfinished = root / "9"
    write_exp_run(unfinished, "din", 4, 0.9)
    (unfinished / "metrics.json").unlink()
    t = build_table(find_runs([root]))
    din = exp_row(t, "din")
    assert din.n_seeds == 2 and din.n_failed == 1 and din.n_missing == 1
    md = t.to_markdown()
    assert "| 1/1 |" in md and "failed/missing: runs whose job failed" in md
    assert "rows of the paper with no runs: LR, Wide&Deep, PNN, DeepFM, DIN with Dice" in md


def test_a_paper_row_with_only_an_unfinished_run(tmp_path):
    root = exp_sweep(tmp_path / "multirun")
    write_exp_run(root / "9", "din_dice", 1, 0.9)
    (root / "9" / "metrics.json").unlink()
    t = build_table(find_runs([root]))
    dice = exp_row(t, "din_dice")
    assert not dice.no_runs and dice.n_seeds == 0 and dice.n_missing == 1 and dice.mean["gauc"] is None
    assert "| DIN with Dice | 0 | – | – | – | – | 0.8871 | – | 0.8711 | – | – | 0/1 |" in t.to_markdown()


def test_synthetic_data_shows_the_reference_numbers_without_a_difference(tmp_path):
    t = build_table(find_runs([exp_sweep(tmp_path / "multirun", dataset="synthetic")]))
    (section,) = t.sections
    assert not section.comparable and section.lookup.published_dataset == "amazon_electronics"
    din = exp_row(t, "din")
    assert din.published["paper"] == (0.8818, None) and din.diff == {}
    md = t.to_markdown()
    assert "| paper (amazon_electronics) | authors' repo (amazon_electronics) | p |" in md and "Δ" not in md.split("\n\n")[1]
    assert "different data: the published numbers are on amazon_electronics, these runs on synthetic" in md
    # the oracle row stays, last, with RelaImpr against BaseModel and no test
    oracle = t.rows[-1]
    assert oracle.is_oracle and oracle.rela_impr == pytest.approx((0.45 / 0.365 - 1) * 100) and oracle.welch is None
    assert "| oracle (Bayes-optimal) | – | 0.9000 | 0.9500 | 0.3000 |" in md


def test_dien_tables_use_global_auc(tmp_path):
    ROW_CONFIG.update(gru_att=("dien", "prelu", "none"))
    for job, (row, g) in enumerate([("base", 0.80), ("base", 0.81), ("gru_att", 0.85), ("gru_att", 0.86)]):
        write_exp_run(tmp_path / "m" / str(job), row, job, g, experiment="dien_table2", protocol="dien")
    t = build_table(find_runs([tmp_path / "m"]))
    (section,) = t.sections
    assert section.metric == "auc" and section.comparable
    gru = exp_row(t, "gru_att")
    assert gru.rela_impr == pytest.approx(((0.855 - 0.05 - 0.5) / (0.805 - 0.05 - 0.5) - 1) * 100)
    assert gru.diff["paper"] == pytest.approx(0.805 - 0.7605)
    assert "0.7605 ± 0.00059" in t.to_markdown()  # the published std, as printed


def test_a_reference_row_of_an_experiment_is_named_and_shown_after_the_papers_rows(tmp_path):
    """dien_table4 adds DIN, which is not a row of the DIEN paper's Table 4: it gets its name from
    published.json's extra_rows, comes after the paper's rows, and the notes say it is extra."""
    ROW_CONFIG.update(dien=("dien", "prelu", "none"), din=("din", "prelu", "none"))
    runs = [("din", 0.84), ("din", 0.85), ("base", 0.80), ("base", 0.81), ("dien", 0.86), ("dien", 0.87)]
    for job, (row, g) in enumerate(runs):
        write_exp_run(tmp_path / "m" / str(job), row, job, g, experiment="dien_table4", protocol="dien")
    t = build_table(find_runs([tmp_path / "m"]))
    names = [r.row_name for r in t.rows if not r.is_oracle and not r.no_runs]
    assert names == ["BaseModel", "DIEN (= + auxiliary loss)", "DIN (reference)"]
    din = exp_row(t, "din")
    assert din.published == {} and din.rela_impr is not None  # no published value; RelaImpr against BaseModel
    assert "rows not in DIEN (Zhou et al., AAAI 2019) Table 4, shown after its rows: DIN (reference)" in t.to_markdown()


def test_din_table4_relaimpr_is_against_its_first_row(tmp_path):
    ROW_CONFIG.update(base_no_goods=("base", "prelu", "none"), base_mba=("base", "prelu", "mba"))
    for job, (row, g) in enumerate([("base_no_goods", 0.60), ("base_no_goods", 0.61), ("base_mba", 0.62), ("base_mba", 0.63)]):
        write_exp_run(tmp_path / "m" / str(job), row, job, g, dataset="synthetic", experiment="din_table4", protocol="din")
    t = build_table(find_runs([tmp_path / "m"]))
    assert exp_row(t, "base_no_goods").is_baseline
    assert exp_row(t, "base_mba").rela_impr == pytest.approx((0.125 / 0.105 - 1) * 100)
    assert exp_row(t, "base").no_runs and t.sections[0].lookup.published_dataset == "alibaba"


def test_mixtures_are_flagged(tmp_path):
    root = exp_sweep(tmp_path / "multirun")
    write_exp_run(root / "7", "din", 7, 0.88, protocol="dien", selection="test_as_valid")
    t = build_table(find_runs([root]))
    notes = "\n".join(t.notes)
    assert "MIXED protocols: dien ×1, din ×4" in notes and "MIXED model selection: test_as_valid ×1, valid ×4" in notes
    assert not t.sections[0].comparable and exp_row(t, "din").diff == {}  # no difference under mixed protocols


def test_experiment_and_plain_runs_together(tmp_path):
    exp_sweep(tmp_path / "exp")
    write_run(tmp_path / "plain" / "0", "din", 1, 0.8)
    t = build_table(find_runs([tmp_path / "exp", tmp_path / "plain"]))
    assert [s.experiment for s in t.sections] == ["din_table3", None]
    md = t.to_markdown()
    assert "### runs outside a published table" in md and "| synthetic | din | prelu | none | 1 |" in md


# ---- statistics ---------------------------------------------------------------------------------
def test_welch_against_hand_computed_values():
    # a = [1, 2, 3, 4]: mean 2.5, s² = 5/3;  b = [2, 6]: mean 4, s² = 8
    # s_a²/n_a = 5/12, s_b²/n_b = 4;  t = (2.5 − 4) / sqrt(5/12 + 4)
    # dof = (5/12 + 4)² / ((5/12)²/3 + 4²/1)
    w = stats.welch([1, 2, 3, 4], [2, 6])
    assert w.t == pytest.approx(-1.5 / math.sqrt(53 / 12))
    assert w.dof == pytest.approx((53 / 12) ** 2 / ((5 / 12) ** 2 / 3 + 16))
    assert (w.n_a, w.n_b) == (4, 2) and 0.0 < w.p < 1.0
    # two samples of 2 with equal variances: dof 2, closed-form p (see DIN_P)
    w = stats.welch([1, 3], [4, 6])
    assert w.t == pytest.approx(-3 / math.sqrt(2)) and w.dof == pytest.approx(2.0)
    assert w.p == pytest.approx(1 - 3 / math.sqrt(13))  # 1 − |t| / sqrt(2 + t²), t² = 4.5


def test_welch_edge_cases():
    w = stats.welch([0.8], [0.7, 0.71])
    assert w.p is None and w.reason == "fewer than 2 seeds" and stats.format_p(w.p) == "–"
    same = stats.welch([0.8, 0.8], [0.8, 0.8, 0.8])
    assert same.p == 1.0 and same.degenerate and same.t == 0.0
    apart = stats.welch([0.8, 0.8], [0.7, 0.7])
    assert apart.p == 0.0 and apart.t == math.inf and apart.degenerate and apart.mark == "***"
    one_flat = stats.welch([0.8, 0.8, 0.8], [0.7, 0.72, 0.71])  # zero variance on one side only: a normal test
    assert not one_flat.degenerate and one_flat.dof == pytest.approx(2.0) and one_flat.p < 0.01
    assert stats.welch([0.8, float("nan"), 0.81], [0.7, 0.71]).n_a == 2  # NaN seeds are left out


def test_p_formatting_and_relaimpr_helper():
    assert stats.format_p(0.0123) == "0.012 *" and stats.format_p(0.004) == "0.004 **"
    assert stats.format_p(3.2e-5) == "3.2e-05 ***" and stats.format_p(0.41) == "0.410"
    assert stats.rela_impr(0.8818, 0.8624) == pytest.approx(5.353, abs=1e-3)  # DIN Table 3, Amazon: 5.35%
    assert stats.rela_impr(0.8, 0.5) is None and stats.rela_impr(None, 0.8) is None and stats.rela_impr(float("nan"), 0.8) is None
    assert stats.rela_impr_per_seed([0.86, 0.87], 0.865) == pytest.approx([-(0.005 / 0.365) * 100, (0.005 / 0.365) * 100])
    assert stats.mean_std([0.86, 0.87]) == (pytest.approx(0.865), pytest.approx(math.sqrt(0.00005)))
    assert stats.mean_std([]) == (None, None) and stats.mean_std([0.5]) == (0.5, 0.0)


# ---- plots and the command ----------------------------------------------------------------------
def test_plots_need_matplotlib(tmp_path, monkeypatch):
    from ctrbench.report.plots import write_plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    t = build_table(find_runs([exp_sweep(tmp_path / "multirun")]))
    with pytest.raises(UserError, match=r"^plot=true needs matplotlib: pip install 'ctrbench\[plot\]'$"):
        write_plots(t, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


def _needs_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib is not installed (optional: pip install 'ctrbench[plot]'), so the plots are not tested")


def test_plots_are_written(tmp_path):
    _needs_matplotlib()
    from ctrbench.report.plots import history_curve, write_plots

    root = exp_sweep(tmp_path / "multirun", dataset="synthetic")
    write_exp_run(root / "9", "din_dice", 1, 0.87, dataset="synthetic", history=False)
    write_run(tmp_path / "plain" / "0", "base", 1, 0.8)
    t = build_table(find_runs([root, tmp_path / "plain"]))
    curve = history_curve(exp_row(t, "din"))
    assert list(curve.step) == [100, 200, 300] and curve["mean"].tolist() == pytest.approx([0.865, 0.875, 0.885])
    assert curve["n"].tolist() == [2, 2, 2]
    paths, warnings = write_plots(t, tmp_path / "plots")
    assert [p.name for p in paths] == ["valid_gauc.png", "relaimpr.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert warnings and "DIN with Dice" in warnings[0]  # its run has no history.csv
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["relaimpr.png", "valid_gauc.png"]


def test_run_table_writes_latex_and_plots_beside_the_output(tmp_path):
    _needs_matplotlib()
    from ctrbench.commands import run_table

    root = exp_sweep(tmp_path / "multirun")
    cfg = OmegaConf.create({"paths": [str(root)], "format": "latex", "output": str(tmp_path / "report" / "t.tex"), "plot": True})
    run_table(cfg)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["relaimpr.png", "t.tex", "valid_gauc.png"]
    assert "\\begin{tabular}" in (tmp_path / "report" / "t.tex").read_text()


def test_run_table_without_matplotlib_is_one_user_error(tmp_path, monkeypatch):
    from ctrbench.commands import run_table

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    cfg = OmegaConf.create({"paths": [str(exp_sweep(tmp_path / "m"))], "format": "markdown", "output": str(tmp_path / "r.md"), "plot": True})
    with pytest.raises(UserError, match="plot=true needs matplotlib"):
        run_table(cfg)
    assert not (tmp_path / "r.md").exists()


SGD_PAPER = {"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "grad_clip": 5.0, "bucket": 0,
             "schedule": {"type": "exponential", "gamma": 0.1, "every_epochs": 4}}
ADAM_BUCKETED = {"optimizer": "adam", "lr": 0.001, "batch_size": 256, "grad_clip": None, "bucket": 50, "schedule": "none"}


def test_the_training_setup_is_shown_and_a_mixed_one_flagged(tmp_path):
    """How the rows were trained (metrics.json variant.training) is a note; rows trained differently
    are flagged as MIXED, naming which rows had which setup."""
    assert describe_training(SGD_PAPER) == ("sgd lr=1.0, batch 32, lr ×0.1 every 4 epochs (exponential), grad clip 5.0, "
                                            "uniformly shuffled batches")
    assert describe_training(ADAM_BUCKETED) == ("adam lr=0.001, batch 256, constant lr, "
                                                "batches bucketed by history length (chunks of 50)")
    assert describe_training({**ADAM_BUCKETED, "schedule": {"type": "step", "gamma": 0.5, "every_steps": 1000}}).startswith(
        "adam lr=0.001, batch 256, lr ×0.5 every 1000 steps (step)")
    assert describe_training(None).startswith("not recorded")
    same = tmp_path / "same"
    for job, (row, seed) in enumerate([("base", 1), ("base", 2), ("din", 1), ("din", 2)]):
        write_exp_run(same / str(job), row, seed, 0.86 + job / 100, training=SGD_PAPER)
    notes = build_table(find_runs([same])).sections[0].notes
    assert f"training: {describe_training(SGD_PAPER)}" in notes and not any("MIXED" in n for n in notes)
    mixed = tmp_path / "mixed"
    for job, (row, training) in enumerate([("base", SGD_PAPER), ("din", ADAM_BUCKETED)]):
        write_exp_run(mixed / str(job), row, 1, 0.86, training=training)
    notes = build_table(find_runs([mixed])).sections[0].notes
    assert (f"MIXED training setups: {describe_training(SGD_PAPER)}: BaseModel; {describe_training(ADAM_BUCKETED)}: DIN") in notes
