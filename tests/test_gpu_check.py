"""scripts/gpu_check.py: its CPU fallback (what runs where there is no GPU) prints the one JSON line
with every model / batch / precision measured and the CPU-vs-CPU agreement; the time-budget guard
skips configurations and says so."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-fallback", "--threads", "1", "--data-dir", str(tmp_path / "data"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]  # exactly one line on stdout: the JSON
    return json.loads(lines[0])


def test_cpu_fallback_prints_every_configuration(tmp_path):
    gc = _load()
    d = _run(tmp_path, "--steps", "2", "--warmup", "1", "--agree-steps", "5")
    assert d["device"] == "cpu" and d["fallback"] is True
    assert isinstance(d["torch"], str) and (d["cuda"] is None or isinstance(d["cuda"], str))
    assert d["steps"] == 2 and isinstance(d["seconds"], float) and d["seconds"] > 0
    combos = {(m, b, p) for m in gc.MODELS for b in gc.BATCHES for p in gc.PRECISIONS}
    assert {(r["model"], r["batch"], r["precision"]) for r in d["results"]} == combos  # bf16 autocast runs on CPU
    assert d["skipped"] == []
    for r in d["results"]:
        assert r["train_samples_per_s"] > 0 and r["eval_samples_per_s"] > 0, r
        assert r["peak_gpu_mb"] is None  # no GPU
    agree = d["agreement"]
    assert agree["agree"] is True and agree["tolerance"] == 1e-3 and agree["steps"] == 5
    for run in (agree["cpu"], agree["cpu_again"]):
        assert run["device"] == "cpu" and 0 < run["auc"] < 1 and 0 < run["gauc"] < 1 and run["logloss"] > 0
    assert agree["abs_diff_auc"] == 0 and agree["abs_diff_gauc"] == 0  # two CPU runs from one seed: identical


def test_time_budget_skips_configurations(tmp_path):
    d = _run(tmp_path, "--models", "din", "--batches", "32", "--precisions", "fp32,bf16", "--max-seconds", "0",
             "--agree-steps", "2")
    assert d["results"] == []
    assert [(s["model"], s["batch"], s["precision"]) for s in d["skipped"]] == [("din", 32, "fp32"), ("din", 32, "bf16")]
    assert all("--max-seconds" in s["reason"] for s in d["skipped"])
    assert d["agreement"]["agree"] is True  # the agreement runs first, whatever the budget


def test_budget_estimate():
    gc = _load()
    assert gc.estimate_seconds({}, "din", 32) == 0.0
    seen = {("din", 32, "fp32"): 3.0, ("din", 1024, "fp32"): 5.0, ("dien", 32, "fp32"): 9.0}
    assert gc.estimate_seconds(seen, "din", 32) == 3.0  # same model and batch
    assert gc.estimate_seconds(seen, "dien", 1024) == 9.0  # same model
    assert gc.should_skip(260.0, 20.0, 270.0) and not gc.should_skip(200.0, 20.0, 270.0)
