"""Activations for hidden layers, built through a factory from the ``act`` config.

Every model builds each hidden layer's activation by calling the factory with the layer's width,
``act(num_features) -> nn.Module``; ``conf/act/*.yaml`` make the factory with Hydra
(``_partial_: true``), so ``act=<name>`` switches every hidden layer of every model at once.

Every activation takes ``forward(s, mask=None)``: ``s`` is [..., H] and ``mask`` (shape ``s.shape[:-1]``)
marks the real rows, so that statistics (Dice) are never computed over padded history positions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.nn import native_dice

ActFactory = Callable[[int], nn.Module]
DICE_MODES = ("paper", "code")


class PReLU(nn.Module):
    """DIN paper Eq. (8): f(s) = s if s > 0 else alpha * s, with one learnable alpha per hidden unit.

    Applies to the last dimension of inputs of any rank ([B, H] in the MLP, [B, L, H] in the
    attention unit), through torch's fused PReLU kernel on a 2-D view (several times faster on CPU
    than composing it from element-wise ops).
    """

    def __init__(self, num_features: int, init: float = 0.1) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_features,), float(init)))

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.prelu(s.reshape(-1, s.shape[-1]), self.alpha).reshape(s.shape)

    def extra_repr(self) -> str:
        return f"num_features={self.alpha.numel()}"


class Dice(nn.Module):
    """Dice, DIN paper Eq. (9): a PReLU whose rectifying point adapts to the data.

        p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))
        f(s) = p(s) * s + (1 - p(s)) * alpha * s          (alpha learnable per unit)

    ``mode="paper"`` (default): in training E[s] and Var[s] are the mini-batch mean and (biased)
    variance of each unit over the **real** rows only (``mask``), with gradients through them as in
    batch normalisation; they also update moving averages (``momentum``), which are used at
    inference. Eval-mode outputs are therefore independent of the rest of the batch, and the moving
    statistics are buffers, saved with the checkpoint.

    ``mode="code"``: the official code's behaviour (papers.md §1.6, §2.5): batch statistics at
    inference too, and the DIEN code's denominator sqrt(Var + eps) + eps. Scores then depend on the
    batch, by design; padded rows are still excluded from the statistics.

    With E[s] = 0 and Var[s] = 0, p(s) = sigmoid(s / sqrt(eps)) is a step at 0 and Dice is PReLU.

    ``native`` (set per run by the trainer from ``trainer.native_dice``; off for a module built
    alone): in training, rows without a mask run as one native call forward and one backward
    (``nn/native_dice.py``, ``nn/csrc/dice.c``), the same formula up to float rounding.
    """

    native = False

    def __init__(self, num_features: int, alpha_init: float = 0.0, eps: float = 1e-8, momentum: float = 0.1, mode: str = "paper") -> None:
        super().__init__()
        if mode not in DICE_MODES:
            raise ValueError(f"act.mode must be one of {DICE_MODES}, got {mode!r}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"act.momentum must be in (0, 1], got {momentum!r}")
        self.eps, self.momentum, self.mode = float(eps), float(momentum), mode
        self.alpha = nn.Parameter(torch.full((num_features,), float(alpha_init)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def statistics(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mean and biased variance of the rows of x [N, H] that are real."""
        rows = x if mask is None else x[mask.reshape(-1)]
        if rows.shape[0] == 0:
            return self.running_mean, self.running_var
        mean = rows.mean(dim=0)
        var = ((rows - mean) ** 2).mean(dim=0)
        return mean, var

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = s.reshape(-1, s.shape[-1])
        if not torch.jit.is_scripting():  # (TorchScript, which the request path and export use, skips this block)
            if self.native and self.training and mask is None and native_dice.usable(x):
                return self._native_forward(x).reshape(s.shape)
        if self.training or self.mode == "code":
            mean, var = self.statistics(x, mask)
            if self.training and self.mode == "paper":
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        std = torch.sqrt(var + self.eps)
        if self.mode == "code":
            std = std + self.eps
        p = torch.sigmoid((x - mean) / std)
        out = p * x + (1.0 - p) * self.alpha * x
        return out.reshape(s.shape)

    @torch.jit.unused
    def _native_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training on rows without a mask, in one native call each way (nn/native_dice.py)."""
        out, mean, var = native_dice.NativeDice.apply(x, self.alpha.to(x.dtype), self.eps, self.eps if self.mode == "code" else 0.0)
        if self.mode == "paper":
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        return out

    def extra_repr(self) -> str:
        return f"num_features={self.alpha.numel()}, eps={self.eps}, momentum={self.momentum}, mode={self.mode}"


class Sigmoid(nn.Module):
    """The official DIN code's activation (``model.py``), for parity runs."""

    def __init__(self, num_features: int) -> None:
        super().__init__()

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(s)


class ReLU(nn.Module):
    def __init__(self, num_features: int) -> None:
        super().__init__()

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.relu(s)
