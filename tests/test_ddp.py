"""Distributed data parallel (trainer.distributed=ddp): 2 CPU ranks with gloo under torchrun train,
write one run folder, and end with the metrics of a single-process run of the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ctrbench.train.distributed import DistContext, setup
from ctrbench.errors import ConfigError

COMMON = ["+debug=fast", "device=cpu", "device.threads=1", "trainer.max_steps=30"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["COLUMNS"] = "140"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["device.compile=true"]], ids=["eager", "compiled"])
def test_two_gloo_ranks_match_a_single_process_run(tmp_path, extra):
    """Also under device.compile=true: the DDP wrapper compiled (TorchDynamo splits its graph at
    the gradient buckets), against a compiled single process."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it comes with torch)")
    data = tmp_path / "data"
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    env = _env()
    if extra:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")  # a cold cache of its own (skipped in the listing below)
    subprocess.run(
        [sys.executable, "-m", "ctrbench", "train", *COMMON, *extra, f"paths.data_dir={data}", f"hydra.run.dir={single}"],
        check=True, cwd=tmp_path, env=env, capture_output=True, timeout=600,
    )
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "ctrbench", "train", *COMMON, *extra, "trainer.distributed=ddp",
         f"paths.data_dir={data}", f"hydra.run.dir={ddp}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((single / "metrics.json").read_text())
    b = json.loads((ddp / "metrics.json").read_text())
    assert b["distributed"] == {"mode": "ddp", "world_size": 2, "backend": "gloo"}
    assert a["variant"]["compiled"] is b["variant"]["compiled"] is bool(extra)
    assert a["steps"] == b["steps"] == 30
    for split in ("test",):
        for k in ("auc", "gauc", "logloss"):
            assert b[split][k] == pytest.approx(a[split][k], abs=2e-3), (split, k)
    assert b["valid_best"]["gauc"] == pytest.approx(a["valid_best"]["gauc"], abs=2e-3)
    # one writer: the run folder has one metrics.json, and rank 1 made no run folder of its own here
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "inductor") == ["data", "ddp", "single"]
    assert r.stdout.count("run folder:") == 1
    # a completed rank ends with os._exit (ctrbench.cli): its log was flushed first
    assert "step 30 |" in (ddp / "train.log").read_text()


def test_shards_cover_a_batch_once_in_order():
    idx = torch.arange(10)
    parts = [DistContext(rank=r, world=3).shard(idx) for r in range(3)]
    assert torch.cat(parts).tolist() == list(range(10))
    assert [len(p) for p in parts] == [3, 3, 4]
    assert DistContext().shard(idx) is idx


def test_one_process_context_gathers_and_averages_locally():
    ctx = DistContext()
    probs = ctx.all_gather_predictions(torch.tensor([2, 0, 1]), torch.tensor([0.2, 0.0, 0.1]), 3)
    assert probs.tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert ctx.mean([1.5]) == [1.5] and not ctx.enabled and ctx.is_main


def test_bad_distributed_settings_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="trainer.distributed='mpi'"):
        setup("mpi", torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="trainer.distributed=none"):
        setup("none", torch.device("cpu"))
    with pytest.raises(ConfigError, match="ddp_backend"):
        setup("ddp", torch.device("cpu"), backend="mpi")
