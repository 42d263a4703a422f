"""``device.compile=true``: the model under ``torch.compile`` (TorchDynamo + inductor).

Eager PyTorch runs every element-wise step of a model as its own pass over memory: the bias add of
a linear layer, PReLU forward, PReLU backward and the reduction of its slope gradient, the masks.
On a CPU these memory-bound passes are a large share of a DIN step (docs/performance.md).
inductor fuses them into generated C++ loops around the matrix products, which stay library calls.

Compiled with ``dynamic=True``: batches differ in size (the last one of an epoch) and in history
length (every batch is padded to its own longest history), and one graph with symbolic sizes serves
them all instead of one recompilation per shape. Training and evaluation (no gradients, eval mode)
are separate graphs of the same module; the parameters are shared, so checkpoints, regularizers and
the optimizer see the plain module.

The cost is a compilation when a graph is first called: tens of seconds on 2 CPU cores, a few
seconds when inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default under the system's
temporary folder) already holds it, e.g. for the second seed of a sweep. That is why it is an
option, off by default: it pays off over runs of several epochs, not over one short epoch.
"""

from __future__ import annotations

import shutil

import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.train.build import auto_setting, unavailable

CXX_COMPILERS = ("g++", "c++", "clang++")

# trainer.compile_packed=auto compiles a run's packed layers when it plans at least this many steps:
# the compilation takes ~14 s on these 2-core machines (a few seconds from inductor's on-disk cache)
# and then saves ~0.45 ms a DIN step at batch 32, so it pays back after ~30,000 steps from a cold
# cache; shorter runs (tests, smoke runs) stay eager. An Electronics epoch is ~69,500 steps.
COMPILE_PACKED_MIN_STEPS = 50_000


def check_compile_available(device: torch.device) -> None:
    """A clear error up front instead of an inductor failure at the first step."""
    if device.type == "cpu" and not any(shutil.which(c) for c in CXX_COMPILERS):
        raise ConfigError(
            "device.compile=true on CPU needs a C++ compiler for torch.compile's inductor backend "
            f"(none of {', '.join(CXX_COMPILERS)} is on PATH): install one (e.g. g++), or set device.compile=false"
        )


def compile_module(module: nn.Module) -> nn.Module:
    """``module`` under torch.compile with dynamic shapes (its parameters are the module's own)."""
    return torch.compile(module, dynamic=True)


def resolve_compile_packed(setting, model, pack_histories: bool, compiled: bool, device: torch.device, total_steps: int) -> bool:
    """``trainer.compile_packed``: whether a model with packed layers (``CTRModel.packed_head``: DIN,
    DeepFM, PNN) runs them under torch.compile in training on packed batches (``trainer.pack_histories``: CPU,
    uniformly shuffled batches, the papers' table setups), the lookups and their row-wise gradients
    staying eager. ``auto``: when the run trains at least ``COMPILE_PACKED_MIN_STEPS`` steps and a
    C++ compiler is on PATH (else a warning, and eager); ``true``: whenever it applies (a one-line
    error without a C++ compiler); ``false``: eager. A model without packed layers, a run that does
    not pack, or one under ``device.compile=true`` (the whole model compiled): False."""
    value = auto_setting(setting, "compile_packed")
    applies = getattr(model, "packed_head", False) and pack_histories and not compiled and device.type == "cpu"
    if value == "false" or not applies or (value == "auto" and total_steps < COMPILE_PACKED_MIN_STEPS):
        return False
    if not any(shutil.which(c) for c in CXX_COMPILERS):
        why = f"torch.compile's inductor backend needs a C++ compiler (none of {', '.join(CXX_COMPILERS)} is on PATH)"
        return unavailable(value, "compile_packed", why, "the packed layers run eager",
                           "install one (e.g. g++), or set trainer.compile_packed=false")
    return True
