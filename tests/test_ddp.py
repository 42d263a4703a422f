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


#: the tensor devices each backend has collectives for (torch.distributed's backend table): NCCL
#: none on the CPU
SERVES = {"gloo": {"cpu", "cuda"}, "nccl": {"cuda"}}


def _backend_for(pg_backend: str, device_type: str) -> str | None:
    """The backend a collective on ``device_type`` tensors reaches in a process group started with
    ``pg_backend`` ("gloo", "nccl" or "cpu:gloo,cuda:nccl"), or None when none serves that device."""
    if ":" in pg_backend:
        name = dict(part.split(":") for part in pg_backend.split(",")).get(device_type)
    else:
        name = pg_backend
    return name if name is not None and device_type in SERVES.get(name, ()) else None


def _cuda_path_rank(rank: int, out: str) -> None:
    """One rank of a CPU job taking the CUDA path of ``setup`` (device=cuda, ddp_backend=auto):
    the process group it asks for is recorded and a gloo group stands in for it (this machine has no
    NCCL), every collective's tensor devices are recorded, and the collectives run for real."""
    import torch.distributed as dist

    try:
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
        asked, calls = [], []
        real_init = dist.init_process_group

        def init(backend=None, **kw):
            asked.append(backend)
            real_init(backend="gloo", init_method=f"file://{out}/store", **kw)

        def recording(name, fn):
            def wrapped(*args, **kw):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                tensors += [t for a in args if isinstance(a, list) for t in a if isinstance(t, torch.Tensor)]
                calls.append([name, sorted({t.device.type for t in tensors})])
                return fn(*args, **kw)
            return wrapped

        dist.init_process_group = init
        for name in ("all_gather", "all_reduce", "broadcast"):
            setattr(dist, name, recording(name, getattr(dist, name)))
        ctx = setup("ddp", torch.device("cuda"))  # the device choice stubbed: nothing here touches CUDA
        mean = ctx.mean([1.0 + rank])
        idx = torch.arange(rank, 7, 2)
        gathered = ctx.all_gather_predictions(idx, idx.float() / 10, 7)
        module = torch.nn.Linear(2, 1)
        torch.nn.init.constant_(module.weight, float(rank))
        ctx.broadcast_module(module)
        ctx.barrier()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"asked": asked, "backend": ctx.backend, "calls": calls, "mean": mean,
                       "gathered": gathered.tolist(), "weight": module.weight.flatten().tolist()}, f)
        dist.destroy_process_group()
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # no interpreter finalization under gloo's threads (docs/distributed.md, Exit)


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks")
def test_cuda_path_sends_each_collective_to_a_backend_for_its_tensors(tmp_path):
    """With trainer.distributed=ddp on CUDA (backend nccl), the loss mean, the evaluation gather and
    the weight broadcast must reach a backend with collectives for their tensors' device: NCCL has
    none for CPU tensors. Two CPU ranks run DistContext's collectives through the CUDA path of
    setup, with gloo standing in for the process group that path asks for."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_cuda_path_rank, args=(r, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for got in ranks:
        (asked,) = got["asked"]
        assert got["backend"] == asked
        assert {name for name, _ in got["calls"]} == {"all_gather", "all_reduce", "broadcast"}
        for name, devices in got["calls"]:
            for device in devices:
                assert _backend_for(asked, device) is not None, f"{name} of {device} tensors on a {asked!r} process group"
        assert _backend_for(asked, "cuda") == "nccl"  # the GPU tensors (DDP's gradients) still go through NCCL
        assert got["mean"] == [1.5]
        assert got["gathered"] == pytest.approx([i / 10 for i in range(7)])
        assert got["weight"] == [0.0, 0.0]  # rank 0's


def test_process_group_backends():
    from ctrbench.train.distributed import process_group_backend

    assert _backend_for(process_group_backend("nccl"), "cpu") == "gloo"
    assert _backend_for(process_group_backend("nccl"), "cuda") == "nccl"
    assert process_group_backend("gloo") == "gloo"


def test_bad_distributed_settings_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="trainer.distributed='mpi'"):
        setup("mpi", torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="trainer.distributed=none"):
        setup("none", torch.device("cpu"))
    with pytest.raises(ConfigError, match="ddp_backend"):
        setup("ddp", torch.device("cpu"), backend="mpi")
