"""Issue "The first hour of a new user", the items about running: +debug=fast on a real dataset,
resume across thread settings, progress off a terminal and after early stopping, the first dataset
build announced, where the data goes, and a sweep's output (one line per job, a summary table at the
end, one log style). Each test runs the CLI as a user would (subprocess, real output)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from ctrbench.train.progress import ProgressBar, plain_progress_line
from test_cli import ctrbench

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST = ["+debug=fast", "device=cpu", "device.threads=1"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """A two-job +debug=fast sweep in a fresh data folder: (its folder, everything it printed)."""
    work = tmp_path_factory.mktemp("sweep-output")
    proc = ctrbench("train", "-m", *FAST, "seed=1,2", f"hydra.sweep.dir={work / 'sweep'}", cwd=work)
    return work / "sweep", proc.stdout + proc.stderr


def test_a_sweep_prints_one_line_per_job_and_its_table_at_the_end(sweep):
    folder, out = sweep
    job_lines = [line for line in out.splitlines() if line.startswith("job ") and " done · " in line]
    assert len(job_lines) == 2, out
    assert all("test GAUC 0." in line and "seed " in line for line in job_lines), job_lines
    assert "valid (best)" not in out  # no per-job results table
    assert out.count("seeds") == 1  # one summary table (printed when the sweep ends)


def test_hydra_and_ctrbench_log_lines_share_one_style(sweep):
    _, out = sweep
    assert "Launching jobs" in out or "is launching 2 jobs" in out
    assert "[HYDRA]" not in out and "][HYDRA]" not in out  # Hydra's own "[date time][HYDRA]" format


def test_the_first_build_of_a_dataset_is_announced_and_the_data_folder_named(sweep):
    folder, out = sweep
    assert "building the processed dataset 'synthetic'" in out
    assert "data folder " in out and "CTRBENCH_DATA_DIR" in out


def test_prepare_names_the_data_folder(tmp_path):
    proc = ctrbench("prepare", "+debug=fast", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert f"data folder: {(tmp_path / 'data').resolve()}" in out.replace("\n", "")


def test_debug_fast_runs_on_a_real_dataset(tmp_path):
    raw = SHARED / "ml-latest-small"
    if not raw.is_dir():
        pytest.skip(f"the real data sample {raw} is absent (it lives outside the repo, in ../shared/data/)")
    ctrbench("train", *FAST, "dataset=movielens_latest_small", f"dataset.raw_dir={raw}", "dataset.download=false", cwd=tmp_path)
    (metrics,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert metrics["dataset"] == "movielens_latest_small" and metrics["steps"] == 20


def test_resume_auto_continues_a_run_started_with_other_threads_and_says_why_not_otherwise(tmp_path):
    run = [*FAST, "trainer.max_steps=40", "trainer.eval_every=10", "trainer.patience=0", "trainer.fault_injection.interrupt_at_step=15"]
    first = ctrbench("train", *run, cwd=tmp_path, check=False)
    assert first.returncode == 130, first.stderr
    other_batch = ctrbench("train", *[a for a in run if "threads" not in a and "interrupt" not in a],
                           "device.threads=2", "trainer.batch_size=32", "trainer.resume=auto", cwd=tmp_path)
    assert "no unfinished run with this config" in other_batch.stderr
    assert "trainer.batch_size: 64 -> 32" in other_batch.stderr  # the key that made the run ineligible
    assert "device.threads" not in other_batch.stderr
    resumed = ctrbench("train", *[a for a in run if "threads" not in a and "interrupt" not in a],
                       "device.threads=2", "trainer.resume=auto", cwd=tmp_path)
    assert "continuing" in resumed.stderr, resumed.stderr
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert sorted(m["status"] for m in metrics) == ["completed", "completed"]
    resumed_run = [m for m in metrics if m.get("resumed_at_steps")]
    assert resumed_run and resumed_run[0]["resumed_at_steps"] == [15] and resumed_run[0]["threads"] == 2


def test_progress_off_a_terminal_prints_plain_lines(tmp_path):
    proc = ctrbench("train", *FAST, "trainer.progress=true", "trainer.progress_every=0", cwd=tmp_path)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("train step ")]
    assert lines and lines[-1].startswith("train step 20/20 · loss "), lines
    assert "left" in lines[-1]


def test_progress_every_must_be_seconds(tmp_path):
    proc = ctrbench("train", *FAST, "trainer.progress_every=-1", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "trainer.progress_every=-1 is invalid" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_bar_ends_where_early_stopping_ends_the_run_and_its_eta_is_a_bound():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    with ProgressBar(console, total=17200, enabled=True, bounded=True) as bar:
        bar.update(5160, 0.5, 1000.0)
        bar.stopped_early(5160)
    text = out.getvalue()
    assert "5160/5160" in text and "stopped early" in text and "ETA ≤" in text
    assert "5160/17200" not in text.splitlines()[-1]


def test_plain_progress_line():
    line = plain_progress_line(1200, 17200, 0.48213, 23950.4, 62.0, bounded=True)
    assert line == ("train step 1,200/17,200 · loss 0.4821 · 23,950 samples/s · 0:01:02 elapsed · ≤ 0:13:46 left "
                    "(early stopping may end it sooner)")
    assert plain_progress_line(0, 10, 0.0, 0.0, 1.0, bounded=False).endswith("? left")
