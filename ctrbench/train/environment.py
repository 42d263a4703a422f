"""Where and how a run computes: its seeds, torch's CPU threads, the device and precision, and
what a run records about its machine (peak memory, library versions)."""

from __future__ import annotations

import platform
import random
import resource

import numpy as np
import torch
from omegaconf import DictConfig

import ctrbench
from ctrbench.errors import ConfigError
from ctrbench.runtime import tune_malloc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# torch's thread count before ctrbench first set one (its default: the physical cores, or
# OMP_NUM_THREADS), and how the last resolve_device chose the threads (metrics.json: threads_choice)
_TORCH_DEFAULT_THREADS: int | None = None
_THREADS_CHOICE = "torch's default"


def threads_choice() -> str:
    """How torch's thread count was chosen: ``auto: 1.9 of 2 cores idle``, ``set: device.threads=2``,
    ``sweep: 2 jobs side by side on 2 cores`` (ctrbench.cores.choose_threads)."""
    return _THREADS_CHOICE


def threads_used() -> str:
    """``2 threads (auto: 1.9 of 2 cores idle)``: for the line that starts a run."""
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''} ({_THREADS_CHOICE})"


def resolve_device(device_cfg: DictConfig) -> torch.device:
    """The torch device of ``device`` (``device.index``: that GPU; in a GPU sweep, the GPU this job's
    worker claimed), after setting torch's CPU threads: ``device.threads``, or with 0 the idle cores
    (ctrbench.cores; a planned sweep's jobs get their share of the cores, ctrbench.sweep_plan)."""
    global _TORCH_DEFAULT_THREADS, _THREADS_CHOICE
    from ctrbench.cores import choose_threads
    from ctrbench.sweep_plan import job_gpu, job_plan

    kind = device_cfg.type
    if _TORCH_DEFAULT_THREADS is None:
        _TORCH_DEFAULT_THREADS = torch.get_num_threads()
    threads, _THREADS_CHOICE = choose_threads(int(device_cfg.get("threads", 0) or 0), _TORCH_DEFAULT_THREADS, sweep=job_plan())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    if device_cfg.get("tune_malloc", True):
        tune_malloc()
    if kind == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        kind = "cuda"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda was asked for, but torch sees no CUDA device (use device=cpu or device=auto)")
        index = device_cfg.get("index")
        if index is None:
            index = job_gpu()
        if index is None:
            return torch.device("cuda")
        n = torch.cuda.device_count()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ConfigError(f"device.index={index!r} is invalid: torch sees {n} CUDA device{'s' if n != 1 else ''} (0 to {n - 1})")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if kind == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device.type {kind!r}: expected cpu, cuda or auto")


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(device_cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``device.precision`` (None: plain fp32)."""
    name = str(device_cfg.get("precision", "fp32") or "fp32")
    if name not in PRECISIONS:
        raise ConfigError(f"device.precision={name!r}: expected one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("device.precision=fp16 needs a CUDA device (its gradient scaler is CUDA's); on CPU use bf16 or fp32")
    return PRECISIONS[name]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def versions() -> dict:
    import hydra
    import pandas
    import pyarrow

    return {
        "ctrbench": ctrbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "hydra": hydra.__version__,
    }
