"""Adam with row-wise embedding gradients: the same updates as dense gradients, one pass per table.

The DIEN paper's setup (its Table 2) trains with Adam at batches of 256, and Adam moves every row of
every table at every step (a row the batch did not use decays its moments and moves by its
momentum), so the tables keep dense gradients under torch's Adam: each step the backward zeroes a
whole-table gradient buffer and adds the batch's rows into it, and the optimizer reads it back, two
to three passes over the table beyond the update itself (DIEN's 63,001 x 18 item table on Amazon
Electronics; 331,867 x 18 at Books size, where those passes are most of a step).

``RowAdam`` is a ``torch.optim.Adam`` whose embedding tables have row-wise (sparse) gradients
(``sparse_grads.use_row_gradients``). Each table is stepped by one native call
(``nn/csrc/adam_rows.c``): the step's rows are summed into a zero scratch buffer, in the order a
dense backward adds them (so the gradient is the dense one exactly), one pass over the table then
moves every row with that gradient (zero for the rows the step did not use), and the scratch rows
are cleared. The pass follows the order of operations of torch's fused CPU Adam
(``m <- lerp(m, g, 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g^2``, ``p <- p - lr / (1 - beta1^t)
m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``, L2 ``weight_decay`` added to g), so a step gives torch's
weights and moments to the bit (checked where torch's CPU vectors are AVX2; elsewhere up to float
rounding). The other parameters, and a table whose gradient came out dense (a regularizer's
penalty on it), take torch's Adam step (stepping them with the kernel too was no faster). The state
dict is torch's Adam's (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so checkpoints resume
under either.

Used by ``trainer.sparse_embeddings`` (``sparse_grads.resolve``) for ``torch.optim.Adam`` without
``amsgrad``, ``maximize``, ``capturable`` or ``differentiable``, on CPU, one process, uncompiled,
when the native library builds (``nn/native.py``).
"""

from __future__ import annotations

import math

import torch

from ctrbench.nn import native

# Tables of at least this many weights take row-wise gradients under RowAdam: all of them, since
# the native step's one pass costs about what torch's fused update of a dense gradient costs (0.73
# against 0.70 ms for the 63,001 x 18 item table in a micro-benchmark), and a table's dense backward
# adds its rows one BLAS call per index (DIEN's 802 x 18 category table,
# looked up ~8,000 times a step at batch 256, spent ~0.3 ms a step in it).
MIN_ROW_TABLE = 0

# The width of torch's CPU vectors (at::vec::Vectorized) on x86: 64 bytes where it dispatched to
# AVX-512, else 32. Its fused Adam steps a tensor's last numel % (width / element size) weights in a
# scalar loop that rounds one multiply-add differently, which the native step follows. Checked bit
# for bit on AVX2 only; a wrong width elsewhere (another architecture) changes float rounding only.
_VECTOR_BYTES = 64 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 32


def why_not(optimizer: torch.optim.Optimizer, device: torch.device) -> str | None:
    """Why ``optimizer`` cannot be a ``RowAdam`` (None: it can)."""
    if type(optimizer) is not torch.optim.Adam:
        return "it gives the same updates as dense gradients only for plain SGD (optim=sgd, momentum 0, weight_decay 0) and Adam (optim=adam)"
    for flag in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"):
        if any(g.get(flag, False) for g in optimizer.param_groups):
            return f"Adam's {flag}=true has no row-wise step here"
    if device.type != "cpu":
        return f"Adam's row-wise step is a CPU kernel (device {device.type})"
    if native.library() is None:
        return f"Adam's row-wise step needs the native kernels, unavailable: {native.unavailable_reason()}"
    return None


class RowAdam(torch.optim.Adam):
    """A ``torch.optim.Adam`` (built from ``optimizer``: the same param groups and settings) whose
    parameters with a sparse gradient are stepped by ``nn/csrc/adam_rows.c`` (see the module
    docstring)."""

    def __init__(self, optimizer: torch.optim.Adam) -> None:
        torch.optim.Optimizer.__init__(self, [dict(g) for g in optimizer.param_groups], dict(optimizer.defaults))
        for key in ("_step_supports_amp_scaling", "_need_device_dtype_check_for_fused"):
            if hasattr(optimizer, key):
                setattr(self, key, getattr(optimizer, key))
        self._buffers: dict[torch.Tensor, torch.Tensor] = {}  # per table: the native step's gradient scratch, zero between steps

    @torch.no_grad()
    def step(self, closure=None):
        rows = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    rows.append((group, p, p.grad))
                    p.grad = None  # torch's Adam refuses sparse gradients: stepped below
        try:
            loss = super().step(closure)
            for group, p, grad in rows:
                self._step_rows(group, p, grad)
        finally:
            for _, p, grad in rows:
                p.grad = grad
        return loss

    def _step_rows(self, group: dict, p: torch.Tensor, grad: torch.Tensor) -> None:
        state = self.state[p]
        if not state:  # torch's Adam's state, so that a checkpoint resumes under either
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if not (p.dim() == 2 and p.is_contiguous() and m.is_contiguous() and v.is_contiguous() and p.dtype in (torch.float32, torch.float64)):
            raise ValueError(f"RowAdam: a table must be a contiguous 2-d float32 or float64 tensor, got {p.dtype} {tuple(p.shape)}")
        buffer = self._buffers.get(p)
        if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype:  # the kernel's scratch: zero between steps
            buffer = self._buffers[p] = torch.zeros_like(p)
        t = float(state["step"]) + 1
        beta1, beta2 = (float(b) for b in group["betas"])
        index = grad._indices()[0].contiguous()
        values = grad._values().to(p.dtype).reshape(index.numel(), p.shape[1]).contiguous()
        status = native.kernel("adam_rows", p.dtype)(
            p.shape[0], p.shape[1], p.data_ptr(), m.data_ptr(), v.data_ptr(), index.numel(), index.data_ptr(), values.data_ptr(),
            buffer.data_ptr(), _VECTOR_BYTES // p.element_size(), float(group["weight_decay"]), beta1, beta2, float(group["lr"]) / (1 - beta1**t),
            math.sqrt(1 - beta2**t), float(group["eps"]),
        )
        if status != 0:  # nothing was changed
            raise ValueError(f"RowAdam: the gradient of a {tuple(p.shape)} table has rows outside it")
        state["step"] += 1
