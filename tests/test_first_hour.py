"""Issue 23, "The first hour of a new user": each item checked through the CLI (a subprocess, its
real output). Items 1, 2, 4, 8, 9, 10 and 12 (the other items have their own tests)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FAST = ["+debug=fast"]


def ctrbench(*args: str, cwd: Path, check: bool = True, stdout=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(cwd / "data")
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("COLUMNS", None)
    kwargs = {"stdout": stdout, "stderr": subprocess.PIPE} if stdout is not None else {"capture_output": True}
    proc = subprocess.run([sys.executable, "-m", "ctrbench", *args], cwd=cwd, env=env, text=True, timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctrbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error of a rejected command: exit 2, one line on stderr, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> Path:
    """A folder of runs on two processed datasets that are both named 'synthetic' (a +debug=fast
    run and one with more users), as after a full run and a fast one on the same day, plus the
    folder a rejected config used to leave behind."""
    work = tmp_path_factory.mktemp("first_hour")
    ctrbench("train", *FAST, "model=base", "hydra.run.dir=outputs/day/small_base", cwd=work)
    ctrbench("train", *FAST, "hydra.run.dir=outputs/day/small_din", cwd=work)
    ctrbench("train", *FAST, "dataset.source.n_users=400", "hydra.run.dir=outputs/day/larger_din", cwd=work)
    leftover = work / "outputs" / "day" / "rejected"
    shutil.copytree(work / "outputs" / "day" / "small_din" / ".hydra", leftover / ".hydra")
    (leftover / "train.log").write_text("")
    return work


# ---- 1. one table per processed dataset, never mixed ---------------------------------------------
def test_table_keeps_two_processed_datasets_of_one_name_apart(two_datasets):
    folder = two_datasets / "outputs" / "day"
    dirs = {json.loads((folder / r / "metrics.json").read_text())["dataset_dir"] for r in ("small_base", "small_din", "larger_din")}
    assert len(dirs) == 2 and all(d.startswith("synthetic-") for d in dirs)
    small = json.loads((folder / "small_din" / "metrics.json").read_text())["dataset_dir"]
    large = json.loads((folder / "larger_din" / "metrics.json").read_text())["dataset_dir"]

    out = ctrbench("table", str(folder), cwd=two_datasets).stdout
    assert "2 different processed datasets" in out and small in out and large in out, out
    assert "failed/missing" not in out  # the rejected config's folder is not a missing run

    csv = ctrbench("table", str(folder), "format=csv", "output=-", cwd=two_datasets).stdout
    df = pd.read_csv(io.StringIO(csv))
    assert sorted(set(df["dataset"])) == sorted([small, large])
    oracles = df[df["is_oracle"]]
    assert sorted(oracles["dataset"]) == sorted([small, large])  # each dataset's own oracle, beside its own runs
    for ds, run in ((small, "small_din"), (large, "larger_din")):  # ... and it is that dataset's
        m = json.loads((folder / run / "metrics.json").read_text())
        assert oracles.loc[oracles["dataset"] == ds, "gauc_mean"].iloc[0] == pytest.approx(m["oracle"]["test"]["gauc"], abs=1e-9)
    models = df[~df["is_oracle"]].groupby("dataset")["model"].apply(sorted).to_dict()
    assert models == {small: ["base", "din"], large: ["din"]}
    # RelaImpr only against the base run of the same dataset: the larger dataset has none
    assert df.loc[(df["dataset"] == large) & ~df["is_oracle"], "rela_impr_gauc"].isna().all()


# ---- 2. a typo'd key, option or command: one line with the closest valid ones --------------------
TYPOS = [
    (["train", "trainer.max_epoch=3", *FAST], "trainer.max_epochs"),
    (["train", "modle=din", *FAST], "did you mean model"),
    (["train", "model=dni", *FAST], "did you mean model=din"),
    (["train", "model.attention_sofmax=true", *FAST], "model.attention_softmax"),
    (["table", "somewhere", "fromat=csv"], "did you mean format"),
    (["evaluate", "somewhere", "spilt=test"], "did you mean split"),
    (["trian"], "did you mean train"),
]


@pytest.mark.parametrize("args, suggestion", TYPOS, ids=[" ".join(a) for a, _ in TYPOS])
def test_a_typo_gets_one_line_with_the_closest_valid_name(args, suggestion, tmp_path):
    err = one_line_error(ctrbench(*args, cwd=tmp_path, check=False))
    assert suggestion in err, err
    assert "+trainer.max_epoch" not in err and "To append" not in err, err
    assert not (tmp_path / "outputs").exists()


def test_suggestions_come_from_the_composed_config_on_the_users_search_path(tmp_path):
    """A model config of the user's own (--config-dir): its keys are valid and suggested."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf" / "model", tmp_path / "conf" / "model")
    mine = (tmp_path / "conf" / "model" / "din.yaml").read_text() + "\ntemperature: 1.0\n"
    (tmp_path / "conf" / "model" / "mydin.yaml").write_text(mine)
    for name in os.listdir(tmp_path / "conf" / "model"):
        if name != "mydin.yaml":
            os.unlink(tmp_path / "conf" / "model" / name)
    proc = ctrbench("train", "model=mydin", "model.temperture=0.5", "--config-dir", "conf", "--cfg", "job", cwd=tmp_path, check=False)
    assert "did you mean model.temperature" in one_line_error(proc)
    ok = ctrbench("train", "model=mydin", "model.temperature=0.5", "--config-dir", "conf", "--cfg", "job", cwd=tmp_path)
    assert "temperature: 0.5" in ok.stdout


# ---- 4. an experiment is a sweep: without -m, say so ----------------------------------------------
def test_an_experiment_without_multirun_says_it_is_a_sweep(tmp_path):
    err = one_line_error(ctrbench("train", "+experiment=din_table3", *FAST, cwd=tmp_path, check=False))
    assert "+experiment=din_table3 is a sweep" in err and "-m" in err and "ctrbench train -m +experiment=din_table3" in err, err
    assert "+row=din_table3/" in err  # how to train one of its runs instead
    assert not (tmp_path / "outputs").exists()  # nothing trained, no run folder


def test_one_row_of_an_experiment_is_one_run_and_allowed():
    from hydra import compose, initialize_config_dir

    from ctrbench.conf_paths import conf_dir
    from ctrbench.output_folders import sweep_without_multirun

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        one_row = compose("train", ["+experiment=din_table3", "+row=din_table3/din"], return_hydra_config=True)
        whole = compose("train", ["+experiment=din_table3"], return_hydra_config=True)
        plain = compose("train", ["+experiment=din_code"], return_hydra_config=True)
    assert sweep_without_multirun(one_row) is None and sweep_without_multirun(plain) is None
    assert "35 jobs" in sweep_without_multirun(whole)


# ---- 8. table files: into the folder read, path printed; output=- is stdout; booktabs ------------
def test_table_files_go_into_the_folder_read_and_are_named(two_datasets, tmp_path):
    folder = two_datasets / "outputs" / "day"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = ctrbench("table", str(folder), "format=markdown", cwd=cwd).stdout
    assert (folder / "results.md").is_file() and not (cwd / "results.md").exists()
    assert f"wrote {folder / 'results.md'}" in out, out
    proc = ctrbench("table", str(folder), "format=latex", cwd=cwd)
    assert (folder / "results.tex").is_file() and f"wrote {folder / 'results.tex'}" in proc.stdout
    assert "\\usepackage{booktabs}" in proc.stdout, proc.stdout
    # output=- : the file's text on stdout (no file named '-'), the messages on stderr
    proc = ctrbench("table", str(folder), "format=latex", "output=-", cwd=cwd)
    assert proc.stdout.lstrip().startswith("% ctrbench table") and "\\begin{tabular}" in proc.stdout and "┏" not in proc.stdout
    assert "booktabs" in proc.stderr and not (cwd / "-").exists()
    md = ctrbench("table", str(folder), "format=markdown", "output=-", cwd=cwd).stdout
    assert md.startswith("### ") and "| model |" in md or "| dataset |" in md, md[:300]
    # a chosen output is still honoured
    ctrbench("table", str(folder), "format=csv", f"output={tmp_path / 'r.csv'}", cwd=cwd)
    assert (tmp_path / "r.csv").is_file()


def test_table_plots_go_into_the_folder_read(two_datasets, tmp_path):
    pytest.importorskip("matplotlib")
    folder = two_datasets / "outputs" / "day"
    out = ctrbench("table", str(folder), "plot=true", cwd=tmp_path).stdout
    assert (folder / "valid_gauc.png").is_file() and not (tmp_path / "valid_gauc.png").exists()
    assert str(folder / "valid_gauc.png") in out


# ---- 9. help, version, python -m ----------------------------------------------------------------
def test_table_and_evaluate_help_show_what_they_take(tmp_path):
    table = ctrbench("table", "--help", cwd=tmp_path).stdout
    for word in ("usage: ctrbench table PATH", "format", "markdown", "csv", "latex", "output", "plot", "booktabs"):
        assert word in table, (word, table)
    evaluate = ctrbench("evaluate", "--help", cwd=tmp_path).stdout
    for word in ("usage: ctrbench evaluate RUN_DIR", "split", "train | valid | test", "batch_size", "device", "auto, cpu, cuda"):
        assert word in evaluate, (word, evaluate)
    for text in (table, evaluate):  # not the training groups
        for group in ("model", "reg", "optim", "experiment", "dataset/protocol", "deepfm"):
            assert not re.search(rf"^\s*{re.escape(group)}\b", text, re.M) and "Configuration groups" not in text, (group, text)


def test_table_with_a_training_setting_is_one_line(two_datasets):
    err = one_line_error(ctrbench("table", str(two_datasets / "outputs" / "day"), "model=din", cwd=two_datasets, check=False))
    assert "ctrbench table takes no 'model'" in err and "format" in err, err


def test_version_and_python_m_without_arguments(tmp_path):
    from importlib import metadata

    proc = ctrbench("--version", cwd=tmp_path)
    assert proc.stdout.startswith(f"ctrbench {metadata.version('ctrbench')}") and proc.returncode == 0
    as_module = ctrbench(cwd=tmp_path)
    script = subprocess.run([sys.executable, "-c", "import sys; from ctrbench.cli import main; sys.exit(main())"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert as_module.returncode == script.returncode == 0 and as_module.stdout == script.stdout
    # with its output closed early (`python -m ctrbench | head -1`): still exit 0, no error
    r, w = os.pipe()
    os.close(r)
    try:
        closed = ctrbench(cwd=tmp_path, check=False, stdout=w)
    finally:
        os.close(w)
    assert closed.returncode == 0 and "Error" not in closed.stderr, (closed.returncode, closed.stderr)


def test_multirun_with_cfg_is_one_line(tmp_path):
    err = one_line_error(ctrbench("train", "-m", "model=lr,base", "--cfg", "job", cwd=tmp_path, check=False))
    assert "-m" in err and "--cfg" in err and "unrecognized arguments" not in err, err


# ---- 10. a rejected command leaves no run folder ------------------------------------------------
def test_a_rejected_config_leaves_no_run_folder(tmp_path):
    err = one_line_error(ctrbench("train", "trainer.batch_size=-5", cwd=tmp_path, check=False))
    assert "trainer.batch_size=-5" in err
    assert not (tmp_path / "outputs").exists()


def test_a_run_rejected_after_its_folder_was_made_removes_it(tmp_path):
    """A problem found only inside the run (no raw files for the dataset): the folder Hydra made
    is removed too; a folder that was there before is kept."""
    # (the message lists the files to fetch, one a line)
    proc = ctrbench("train", "dataset=movielens_100k", "dataset.download=false", *FAST, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "outputs").exists(), list((tmp_path / "outputs").rglob("*"))
    kept = tmp_path / "mine"
    kept.mkdir()
    proc = ctrbench("train", "dataset=movielens_100k", "dataset.download=false", *FAST, f"hydra.run.dir={kept}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and kept.is_dir()


# ---- 12. messages that point the right way -------------------------------------------------------
def test_evaluate_a_run_stopped_before_its_first_evaluation(tmp_path):
    ctrbench("train", *FAST, "trainer.fault_injection.interrupt_at_step=3", "hydra.run.dir=outputs/stopped", cwd=tmp_path, check=False)
    run = tmp_path / "outputs" / "stopped"
    assert (run / "last.pt").is_file() and not (run / "best.pt").exists()
    err = one_line_error(ctrbench("evaluate", str(run), cwd=tmp_path, check=False))
    assert "no evaluated checkpoint yet" in err and "interrupted at step 3" in err, err
    assert "trainer.resume=" in err and "expected a run folder written by" not in err, err


def test_evaluate_a_sweep_folder_lists_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("0", "1", "10", "2"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    err = one_line_error(ctrbench("evaluate", str(sweep), cwd=tmp_path, check=False))
    assert "is a sweep" in err and "0, 1, 2, 10" in err and f"ctrbench evaluate {sweep / '0'}" in err, err
    assert "has no config.yaml" not in err


def test_a_binary_ratings_file_is_not_echoed(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ratings.csv").write_bytes(bytes(range(256)) * 3)  # 768 bytes, not text
    (raw / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    err = one_line_error(ctrbench("prepare", "dataset=movielens_latest_small", f"dataset.raw_dir={raw}", "dataset.download=false",
                                  cwd=tmp_path, check=False))
    assert "ratings.csv" in err and "not a text file" in err and len(err) < 400, err


def test_a_long_wrong_header_is_cut(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ratings.csv").write_text("user,item,rating,time," + "x" * 600 + "\n1,2,3,4\n")
    (raw / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    err = one_line_error(ctrbench("prepare", "dataset=movielens_latest_small", f"dataset.raw_dir={raw}", "dataset.download=false",
                                  cwd=tmp_path, check=False))
    assert "the header is 'user,item,rating,time," in err and "…" in err and len(err) < 400, err


def test_a_corrupt_json_line_is_placed_in_the_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = '{"reviewerID": "U%d", "asin": "A1", "unixReviewTime": %d, "overall": 5.0}\n'
    lines = [good % (1, 1), good % (2, 2), '{"reviewerID": "U3", "asin": "A1", "unixReviewTime": 3, "overall": 4.0\n', good % (4, 4)]
    (raw / "reviews_Electronics_5.json").write_text("".join(lines))
    (raw / "meta_Electronics.json").write_text("{'asin': 'A1', 'categories': [['Electronics', 'Cables']]}\n")
    err = one_line_error(ctrbench("prepare", "dataset=amazon_electronics", f"dataset.raw_dir={raw}", "dataset.download=false",
                                  cwd=tmp_path, check=False))
    assert "reviews_Electronics_5.json, line 3: not valid JSON" in err and "end of the line" in err, err
    assert "line 2 column" not in err and "char " not in err, err
