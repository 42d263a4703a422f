"""Distributed data parallel training (``trainer.distributed=ddp``) with PyTorch's DDP.

Launch with torchrun, which starts one process per rank and sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT::

    torchrun --standalone --nproc_per_node=2 -m ctrbench train trainer.distributed=ddp ...

What each rank does:

* **The same batches, sliced.** Every rank builds the same epoch order (same seed), so the i-th
  global batch is the same everywhere; rank r trains on its contiguous slice of it (``shard``).
  ``trainer.batch_size`` is therefore the *global* batch, and gradients averaged over the ranks
  (DDP's all-reduce) equal the single-process gradient of that batch whenever the slices are of
  equal size. Per-rank statistics (Dice's batch moments) are over the rank's slice, as in
  unsynchronised batch normalisation.
* **Evaluation gathered.** Each rank scores its share of the evaluation batches; the predictions
  are all-gathered, and every rank computes the same metrics from the whole split, so the metrics
  equal the single-process ones and every rank takes the same early-stopping decision.
* **One writer.** Only rank 0 writes checkpoints, history.csv and metrics.json; at the end rank 0's
  selected weights are broadcast to the others.

Backend: ``gloo`` on CPU, ``nccl`` on CUDA (``trainer.ddp_backend=auto``); each rank uses
``cuda:LOCAL_RANK`` on a GPU machine. NCCL has no CPU collectives, and some of this module's
tensors stay on the CPU (the prediction counts, indices and logits, the loss mean), so ``nccl``
joins the process group as ``"cpu:gloo,cuda:nccl"`` (``process_group_backend``): PyTorch sends
each collective to the backend of its tensors' device, CUDA tensors (DDP's gradient buckets, the
final weight broadcast) through NCCL and CPU tensors through gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ctrbench.errors import ConfigError

MODES = ("none", "ddp")


@dataclass
class DistContext:
    """Where this process stands in the job: rank, world size, local rank (1 process: 0, 1, 0)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  #: the process group's backend string (``process_group_backend``)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch's indices (sizes differ by at most one)."""
        if not self.enabled:
            return idx
        n = len(idx)
        lo = (n * self.rank) // self.world
        hi = (n * (self.rank + 1)) // self.world
        return idx[lo:hi]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather_predictions(self, idx: torch.Tensor, preds: torch.Tensor, n: int) -> np.ndarray:
        """The whole split's predictions [n] (float32: logits in evaluation) from each rank's
        (indices, predictions). CPU tensors throughout: with ``nccl`` they go through the process
        group's gloo backend (``process_group_backend``)."""
        if not self.enabled:
            out = torch.empty(n, dtype=torch.float32)
            out[idx] = preds
            return out.numpy()
        count = torch.tensor([len(idx)], dtype=torch.int64)
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(counts, count)
        most = int(max(c.item() for c in counts))
        pad_idx = torch.full((most,), -1, dtype=torch.int64)
        pad_idx[: len(idx)] = idx
        pad_p = torch.zeros(most, dtype=torch.float32)
        pad_p[: len(preds)] = preds
        all_idx = [torch.empty(most, dtype=torch.int64) for _ in range(self.world)]
        all_p = [torch.empty(most, dtype=torch.float32) for _ in range(self.world)]
        dist.all_gather(all_idx, pad_idx)
        dist.all_gather(all_p, pad_p)
        i, p = torch.cat(all_idx), torch.cat(all_p)
        keep = i >= 0
        out = torch.full((n,), float("nan"), dtype=torch.float32)
        out[i[keep]] = p[keep]
        if torch.isnan(out).any():
            raise RuntimeError("distributed evaluation: some samples were scored by no rank")
        return out.numpy()

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the ranks (the loss of the global batch, for logging and for a
        non-finite check that every rank takes together)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return (t / self.world).tolist()


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment ((0, 1, 0) outside torchrun)."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError as e:
        raise ConfigError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {e}") from None


#: the backend strings ``trainer.ddp_backend`` names, and what the process group is started with
PROCESS_GROUP_BACKENDS = {"gloo": "gloo", "nccl": "cpu:gloo,cuda:nccl"}


def process_group_backend(backend: str) -> str:
    """The ``init_process_group`` backend for ``trainer.ddp_backend=backend`` (gloo or nccl).

    ``nccl`` becomes ``"cpu:gloo,cuda:nccl"``: NCCL serves only CUDA tensors, and the collectives
    of :class:`DistContext` gather and average CPU tensors, which PyTorch then sends through gloo
    (a plain ``"nccl"`` group fails on them at the first loss reduction or evaluation). ``gloo``
    serves both devices by itself."""
    return PROCESS_GROUP_BACKENDS[backend]


def setup(mode: str, device: torch.device, backend: str = "auto") -> DistContext:
    """Join the process group for ``trainer.distributed=ddp`` (a no-op for ``none``)."""
    if mode not in MODES:
        raise ConfigError(f"trainer.distributed={mode!r}: expected one of {', '.join(MODES)}")
    rank, world, local = env_world()
    if mode == "none":
        if world > 1:
            raise ConfigError(
                f"this process is rank {rank} of {world} (launched by torchrun), but trainer.distributed=none: "
                "add trainer.distributed=ddp, or launch without torchrun"
            )
        return DistContext()
    if world == 1:
        return DistContext()  # ddp on one process is plain training
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"trainer.ddp_backend={backend!r}: expected auto, gloo or nccl")
    pg_backend = process_group_backend(backend)
    if not dist.is_initialized():
        dist.init_process_group(backend=pg_backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world=world, local_rank=local, backend=pg_backend)


def teardown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA job, the device as given otherwise."""
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device
