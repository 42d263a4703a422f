"""scripts/bench.py: its modes run and print the JSON line the docs quote (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _run(*args: str, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_mode_on_tiny_synthetic_data(tmp_path):
    d = _run("--synthetic", "--users", "300", "--items", "200", "--cates", "10", "--mean-len", "8", "--model", "din",
             "--epochs", "1", "--batch", "64", "--threads", "1", cwd=tmp_path)
    assert d["mode"] == "train" and d["eval_batch"] == 384 and d["eval_workers"] == 1
    for key in ("train_samples_per_s", "eval_samples_per_s", "test_auc", "test_gauc", "peak_rss_mb"):
        assert d[key] > 0, key
    passes = d["eval_pass_samples_per_s"]  # the run's own test pass, then 4 repeats (each checked against its metrics)
    assert len(passes) == 5 and d["eval_samples_per_s"] == sorted(passes)[2]


def test_eval_passes_must_be_positive(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--synthetic", "--eval-passes", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--eval-passes must be at least 1" in proc.stderr


def test_gauc_mode(tmp_path):
    d = _run("--mode", "gauc", "--n", "20000", "--gauc-users", "1000", "--repeat", "2", cwd=tmp_path)
    assert d["mode"] == "gauc" and 0 < d["gauc_seconds_best"] < 10


def test_bench_ab_alternates_variants_in_one_process(tmp_path):
    """scripts/bench_ab.py: flat SGD against torch's step on the built-in data; the same data order
    and the same updates up to rounding give the same losses; a bad --variant is refused."""
    script = SCRIPT.parent / "bench_ab.py"
    proc = subprocess.run([sys.executable, str(script), "--blocks", "2", "--block", "5", "--warmup", "2", "-o", f"paths.data_dir={tmp_path / 'data'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()[-2:]]
    assert [d["variant"] for d in lines] == ["flat", "torch"]
    assert all(d["steps_timed"] == 10 and d["train_samples_per_s"] > 0 for d in lines)
    assert abs(lines[0]["loss_last_100"] - lines[1]["loss_last_100"]) < 1e-5
    bad = subprocess.run([sys.executable, str(script), "--variant", "noequals"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "expected NAME=OVERRIDE" in bad.stderr
