"""Activations for hidden layers, built through a factory from the ``act`` config.

Every model builds each hidden layer's activation by calling the factory with the layer's width,
``act(num_features) -> nn.Module``; ``conf/act/*.yaml`` make the factory with Hydra
(``_partial_: true``), so ``act=<name>`` switches every hidden layer of every model at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ActFactory = Callable[[int], nn.Module]


class PReLU(nn.Module):
    """DIN paper Eq. (8): f(s) = s if s > 0 else alpha * s, with one learnable alpha per hidden unit.

    Applies to the last dimension of inputs of any rank ([B, H] in the MLP, [B, L, H] in the
    attention unit), through torch's fused PReLU kernel on a 2-D view (several times faster on CPU
    than composing it from element-wise ops).
    """

    def __init__(self, num_features: int, init: float = 0.1) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_features,), float(init)))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.prelu(s.reshape(-1, s.shape[-1]), self.alpha).reshape(s.shape)

    def extra_repr(self) -> str:
        return f"num_features={self.alpha.numel()}"


class Sigmoid(nn.Module):
    """The official DIN code's activation (``model.py``), for parity runs."""

    def __init__(self, num_features: int) -> None:
        super().__init__()

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(s)


class ReLU(nn.Module):
    def __init__(self, num_features: int) -> None:
        super().__init__()

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.relu(s)
