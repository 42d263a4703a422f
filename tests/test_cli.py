"""The CLI end to end in fast mode, and a one-line error for each bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FAST = ["+debug=fast"]


def ctrbench(*args: str, cwd: Path, env_data: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(env_data or cwd / "data")
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("COLUMNS", None)  # the CLI's own width for piped output (pytest-xdist workers set one)
    proc = subprocess.run([sys.executable, "-m", "ctrbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctrbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def only_run(cwd: Path) -> Path:
    runs = [p.parent for p in (cwd / "outputs").rglob("metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(work) -> Path:
    """One fast DIN run, shared by the tests that read a run folder."""
    ctrbench("train", *FAST, cwd=work)
    return only_run(work)


def test_help_lists_commands_and_group_options(work):
    for args in ([], ["--help"]):
        out = ctrbench(*args, cwd=work).stdout
        words = ("train", "prepare", "evaluate", "table", "model", "base,", "deepfm,", "dien,", "dien,", "pnn,", "wdl", "dataset",
                 "synthetic", "movielens_20m", "dataset/protocol", "prelu", "device", "auto, cpu, cuda", "optim", "adam, sgd", "[key=value ...]")
        for word in words:
            assert word in out, (args, word)


def test_train_writes_the_run_folder(trained):
    m = json.loads((trained / "metrics.json").read_text())
    assert m["status"] == "completed" and m["model"] == "din" and m["dataset"] == "synthetic"
    assert m["act"] == "prelu" and m["reg"] == "none" and m["selection"] == "valid"
    for k in ("auc", "gauc", "logloss", "gauc_users", "gauc_skipped_users"):
        assert k in m["test"]
    assert 0.5 < m["oracle"]["test"]["gauc"] < 1
    assert m["valid_best"]["step"] > 0 and m["train_samples_per_s"] > 0 and m["peak_memory_mb"] > 0
    assert m["variant"]["attention_softmax"] is False and m["variant"]["attention_inputs"] == "qk_diff_prod"
    assert m["eval_batch_size"] == 384  # trainer.eval_batch_size=null: DIN's automatic choice on CPU
    assert {"torch", "ctrbench", "python"} <= set(m["versions"])
    hist = pd.read_csv(trained / "history.csv")
    assert list(hist["step"]) == [10, 20] and "valid_gauc" in hist
    assert (trained / "best.pt").exists() and (trained / "config.yaml").exists() and (trained / ".hydra" / "config.yaml").exists()


def test_evaluate_rescoring_matches_the_run(trained, work):
    ctrbench("evaluate", str(trained), "split=test", cwd=work)
    again = json.loads((trained / "eval_test.json").read_text())
    m = json.loads((trained / "metrics.json").read_text())
    assert again["gauc"] == pytest.approx(m["test"]["gauc"], abs=1e-9)
    assert again["auc"] == pytest.approx(m["test"]["auc"], abs=1e-9)


def test_evaluate_rejects_a_bad_batch_size(trained, work):
    for bad in ("0", "many"):
        proc = ctrbench("evaluate", str(trained), f"batch_size={bad}", cwd=work, check=False)
        assert proc.returncode == 2 and "batch_size=" in proc.stderr and "expected an integer >= 1 or null" in proc.stderr, proc.stderr


def test_evaluate_refuses_a_best_pt_with_a_planted_object(trained, work, tmp_path):
    """A run folder handed over with an object planted in best.pt (and its checksum rewritten to
    match): one line naming the file, exit 2, and the object never built."""
    import shutil

    from test_reliability_files import plant

    run, marker = tmp_path / "handed_over", tmp_path / "MARKER"
    shutil.copytree(trained, run)
    (run / "eval_test.json").unlink(missing_ok=True)  # from test_evaluate_rescoring_matches_the_run
    plant(run / "best.pt", marker)
    proc = ctrbench("evaluate", str(run), "split=test", cwd=work, check=False)
    assert not marker.exists(), "the planted object ran"
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (proc.returncode, proc.stdout, err)
    assert f"checkpoint '{run / 'best.pt'}' holds a pickled object" in err and "refused" in err, err
    assert not (run / "eval_test.json").exists()


def test_cfg_job_prints_the_composed_config(work):
    out = ctrbench("train", "model=base", "trainer.batch_size=32", "--cfg", "job", cwd=work).stdout
    assert "batch_size: 32" in out and "embedding_mlp.BaseModel" in out


def test_prepare_reports_the_oracle(work):
    out = ctrbench("prepare", *FAST, cwd=work).stdout
    assert "oracle test AUC / GAUC" in out and "train samples" in out


def test_multirun_then_table(tmp_path):
    ctrbench("train", "-m", "model=lr,base", "seed=1,2", *FAST, cwd=tmp_path)
    sweeps = list((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1 and len(list(sweeps[0].rglob("metrics.json"))) == 4
    out = ctrbench("table", str(sweeps[0]), cwd=tmp_path).stdout
    assert "lr" in out and "base" in out and "oracle" in out
    ctrbench("table", str(sweeps[0]), "format=markdown", f"output={tmp_path / 'r.md'}", cwd=tmp_path)
    md = (tmp_path / "r.md").read_text()
    assert "| lr" in md or "lr |" in md
    ctrbench("table", str(sweeps[0]), "format=csv", f"output={tmp_path / 'r.csv'}", cwd=tmp_path)
    df = pd.read_csv(tmp_path / "r.csv")
    assert set(df["model"]) >= {"lr", "base"} and (df.loc[df.model == "base", "n_seeds"] == 2).all()


def test_din_table3_multirun_then_table_in_every_format(tmp_path):
    """The issue's end-to-end: a fast-mode +experiment=din_table3 multirun (2 rows x 2 seeds), then the
    report in every format, with the paper's row names, the published numbers and the training setup."""
    ctrbench("train", "-m", "+experiment=din_table3", "+row=din_table3/base,din_table3/din", "seed=1,2", *FAST,
             "hydra.sweep.dir=outputs/t3", cwd=tmp_path)
    sweep = tmp_path / "outputs" / "t3"
    runs = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert len(runs) == 4 and {r["row"] for r in runs} == {"base", "din"}
    # the paper's setup (SGD lr 1, exponential decay 0.1, no bucketing), the batch size from +debug=fast
    assert {json.dumps(r["variant"]["training"], sort_keys=True) for r in runs} == {json.dumps({
        "optimizer": "sgd", "lr": 1.0, "batch_size": 64, "grad_clip": 5.0, "bucket": 0,
        "schedule": {"type": "exponential", "gamma": 0.1, "every_epochs": 4}}, sort_keys=True)}
    out = ctrbench("table", str(sweep), cwd=tmp_path).stdout
    assert "DIN paper" in out and "BaseModel" in out and "DIN" in out
    for fmt, marker in (("markdown", "| BaseModel |"), ("csv", "BaseModel"), ("latex", "\\begin{tabular}")):
        path = tmp_path / f"t3.{fmt}"
        ctrbench("table", str(sweep), f"format={fmt}", f"output={path}", cwd=tmp_path)
        text = path.read_text()
        assert marker in text and "LR" in text, (fmt, text[:400])  # LR: a row of the paper with no runs, shown as such
    md = (tmp_path / "t3.markdown").read_text()
    assert "training: sgd lr=1.0, batch 64, lr ×0.1 every 4 epochs (exponential), grad clip 5.0, uniformly shuffled batches" in md
    assert "0.8624" in md  # the paper's BaseModel beside ours


# ---- bad input: one line, names the value, exit 2, nothing half-written -------------------------
BAD = [
    (["train", "model=foo"], "unknown model 'foo'", "lr"),
    (["train", "dataset=nope"], "unknown dataset 'nope'", "synthetic"),
    (["train", "-m", "model=lr,nope"], "unknown model 'nope'", "din"),
    (["train", "act=nope"], "unknown act 'nope'", "prelu"),
    (["train", "trainer.batch_size=-4", *FAST], "trainer.batch_size=-4", "integer >= 1"),
    (["train", "dataset.max_len=0", *FAST], "dataset.max_len=0", "integer >= 1"),
    (["train", "trainer.batch_size=???", *FAST], "missing config value 'trainer.batch_size'", "trainer.batch_size="),
    (["train", "optim.lr=0", *FAST], "optim.lr=0", "number > 0"),
    (["bogus"], "unknown command 'bogus'", "train"),
    (["evaluate", "no/such/run"], "run folder 'no/such/run' does not exist", ""),
    (["table", "no/such/folder"], "no/such/folder", "does not exist"),
    (["table"], "no run folder given", "PATH"),
]


@pytest.mark.parametrize("args, must, expected", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_gives_one_line(args, must, expected, tmp_path):
    proc = ctrbench(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert must in err and expected in err, err
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("metrics.json"))


def test_table_on_a_folder_without_metrics(tmp_path):
    (tmp_path / "empty_run").mkdir()
    proc = ctrbench("table", str(tmp_path / "empty_run"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "metrics.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
