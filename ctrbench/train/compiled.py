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

CXX_COMPILERS = ("g++", "c++", "clang++")


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
