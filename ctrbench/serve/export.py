"""``ctrbench export RUN_DIR format=torchscript|onnx|pt2|all``: a run's checkpoint as a standalone
scoring artifact that loads without ctrbench.

**What an artifact computes.** ``Scorer`` wraps the trained model (eval mode, histories never packed)
in a module of plain tensors, the same six inputs in every format:

    user [B], item [B], cate [B]                  int64 ids (0: unknown / padding)
    hist_item [B, L], hist_cate [B, L]            int64, the user's behaviours oldest first, post-padded
    hist_len [B]                                  int64, real behaviours per row (the rest is padding)
    -> logits [B]                                 float32; sigmoid(logits) is the click probability

B >= 1 and L >= 0 are both dynamic (an all-empty batch may have L = 0). Ids outside a table (negative,
or not smaller than its vocabulary size) score as the unknown id 0, and ``hist_len`` is clamped to
[0, L]; within range the logits are the eager model's. A run trained with ``reg=filter`` carries the
filter's item lookup in the artifact, as ``ctrbench evaluate`` applies it.

**How each format captures the models.** Every model but DIEN is one dataflow graph once histories
are not packed: TorchScript traces it, ``torch.export`` (pt2) exports it with symbolic batch and
history dims, and ONNX is converted from that exported program (``torch.onnx.export(dynamo=True)``,
which needs the ``onnx`` extra: onnx, onnxscript and onnxruntime). DIEN's recurrences step over
time, and the eager code chooses packed or padded GRU runs and stops at the batch's longest history
with Python decisions on the data, which a trace would freeze at the example's lengths. The export
therefore scores DIEN through ``_dien_logits``, which runs the same layers (the model's own weights)
over every position of the padded batch, padding masked as the eager code masks it:

* TorchScript: the GRUs as ``aten::gru`` (traced with a symbolic length) and the attentional
  recurrence (AUGRU / AGRU / AIGRU) as a scripted loop inside the trace;
* pt2 and ONNX: both recurrences through ``torch._higher_order_ops.scan``, which torch.export keeps
  as one node with a symbolic trip count and the ONNX converter turns into an ONNX ``Scan``
  (``nn.GRU`` itself would be unrolled by torch.export at the example's length).

The ONNX converter's graph optimizer is off: onnxscript 0.7's dropped Dice's ``+ 1e-8`` terms, which
made a one-row batch's variance 0/0 = NaN (the check caught it); onnxruntime optimizes the graph
itself when it loads it.

Dice with ``act.mode=code`` uses the statistics of the batch at inference; its real rows are picked
by a boolean index of data-dependent size, so the artifact computes the same statistics as masked
sums (``_MaskedDice``).

**Never a half-working file.** Each artifact is written under a temporary name beside its target,
loaded back from that file with the format's own runtime (``torch.jit.load``, ``torch.export.load``,
onnxruntime) and scored on check batches (random ones of several shapes with variable lengths and
empty histories, and a sample of the run's evaluation split) against the eager model; only when the
largest absolute logit difference is below ``tolerance`` (1e-5) is it renamed into place. Its JSON
(``<artifact>.json``: inputs, vocabulary sizes, where the id maps are, the run's config and metrics,
versions, the artifact's sha256, the check's result and a three-row example with its logits) is
written after it; an older JSON is removed before the new artifact is renamed into place, so a JSON
whose sha256 matches its artifact always describes it. Where a format cannot express a model (or a
runtime it needs is missing) nothing is written for it and the error says so in one line, with the
formats that do work.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

import ctrbench
from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.checksums import file_digest
from ctrbench.data.schema import Batch, ProcessedDataset, Vocab
from ctrbench.errors import ConfigError, DataError, UserError
from ctrbench.models.base import CTRModel
from ctrbench.models.dien import DIEN
from ctrbench.nn.activations import Dice

log = logging.getLogger("ctrbench")

FORMATS = ("torchscript", "onnx", "pt2")
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "pt2": "model.pt2"}
INPUTS = ("user", "item", "cate", "hist_item", "hist_cate", "hist_len")
OUTPUT = "logits"
TOLERANCE = 1e-5
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_INSTALL = "pip install 'ctrbench[onnx]'"

_INPUT_DOCS = {
    "user": (["batch"], "user id; 0 (or any id outside [0, n_users)) is the unknown user"),
    "item": (["batch"], "target item id; 0 (or outside [0, n_items)) is the unknown item"),
    "cate": (["batch"], "the target item's category id; 0 (or outside [0, n_cates)) is unknown"),
    "hist_item": (["batch", "hist"], "the user's behaviours (item ids), oldest first, then padding (any value)"),
    "hist_cate": (["batch", "hist"], "the categories of hist_item, position by position"),
    "hist_len": (["batch"], "real behaviours per row: positions 0..hist_len-1 of hist_item / hist_cate (clamped to [0, hist])"),
}

_LOAD = {
    "torchscript": "torch.jit.load(path)(user, item, cate, hist_item, hist_cate, hist_len) -> logits",
    "pt2": "torch.export.load(path).module()(user, item, cate, hist_item, hist_cate, hist_len) -> logits",
    "onnx": "onnxruntime.InferenceSession(path).run(None, {name: int64 array for each input})[0] -> logits",
}


class FormatUnsupported(UserError):
    """A format that cannot express a model (or whose runtime is not installed); ``format`` and
    ``reason`` say which and why."""

    def __init__(self, message: str, format: str, reason: str, missing_runtime: bool = False) -> None:
        super().__init__(message)
        self.format, self.reason, self.missing_runtime = format, reason, missing_runtime


# ---- the module every format captures ----------------------------------------------------------
class Scorer(nn.Module):
    """``model`` as plain tensors in, logits out (see the module docstring for the inputs).

    ``recurrence``: how DIEN's recurrences are written, ``loop`` (TorchScript) or ``scan``
    (torch.export and ONNX); other models ignore it. The model is copied (eval mode, no history
    packing, Dice in code mode as masked sums), so the caller's model is left as it was."""

    def __init__(self, model: CTRModel, vocab: Vocab, item_lookup: torch.Tensor | None = None, recurrence: str = "loop") -> None:
        super().__init__()
        if recurrence not in ("loop", "scan"):
            raise ValueError(f"recurrence must be 'loop' or 'scan', got {recurrence!r}")
        model = copy.deepcopy(model).cpu().eval()
        for m in model.modules():
            if isinstance(m, CTRModel):
                m.pack_histories = False
        _swap_batch_dice(model)
        self.model = model
        self.recurrence = recurrence
        self.n_users, self.n_items, self.n_cates = int(vocab.n_users), int(vocab.n_items), int(vocab.n_cates)
        if item_lookup is not None:
            self.register_buffer("item_lookup", item_lookup.detach().clone().to(torch.int64))
        else:
            self.item_lookup = None

    def forward(
        self, user: torch.Tensor, item: torch.Tensor, cate: torch.Tensor,
        hist_item: torch.Tensor, hist_cate: torch.Tensor, hist_len: torch.Tensor,
    ) -> torch.Tensor:
        user, item, cate = _known(user, self.n_users), _known(item, self.n_items), _known(cate, self.n_cates)
        hist_item, hist_cate = _known(hist_item, self.n_items), _known(hist_cate, self.n_cates)
        if self.item_lookup is not None:  # reg=filter: rare items are the unknown item, as in evaluation
            item, hist_item = self.item_lookup[item], self.item_lookup[hist_item]
        B, L = hist_item.shape[0], hist_item.shape[1]
        real = torch.arange(L, device=hist_item.device).unsqueeze(0) < hist_len.unsqueeze(1)
        # one padded position more: no model reads padding, and a batch of empty histories (L = 0)
        # then runs like any other
        mask = torch.cat([real, real.new_zeros(B, 1)], dim=1)
        batch = Batch(
            user=user, item=item, cate=cate, label=torch.zeros(item.shape, dtype=torch.float32, device=item.device),
            hist_item=F.pad(hist_item, (0, 1)), hist_cate=F.pad(hist_cate, (0, 1)), hist_mask=mask,
            hist_len=real.sum(dim=1),
        )
        if isinstance(self.model, DIEN):
            return _dien_logits(self.model, batch, self.recurrence)
        return self.model(batch).logits


def _known(ids: torch.Tensor, n: int) -> torch.Tensor:
    """``ids`` with every id outside [0, n) replaced by the unknown id 0."""
    return torch.where((ids >= 0) & (ids < n), ids, torch.zeros_like(ids))


class _MaskedDice(nn.Module):
    """Dice in ``act.mode=code`` (batch statistics at inference too) with the statistics of the real
    rows computed as masked sums: the eager form picks the rows by a boolean index, whose size depends
    on the data, and falls back to the moving averages when there are none."""

    def __init__(self, dice: Dice) -> None:
        super().__init__()
        self.dice = dice

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        d = self.dice
        x = s.reshape(-1, s.shape[-1])
        if mask is None:
            mean = x.mean(dim=0)
            var = ((x - mean) ** 2).mean(dim=0)
        else:
            m = mask.reshape(-1, 1).to(x.dtype)
            n = m.sum()
            mean = (x * m).sum(dim=0) / n.clamp(min=1.0)
            var = (((x - mean) ** 2) * m).sum(dim=0) / n.clamp(min=1.0)
            mean = torch.where(n > 0, mean, d.running_mean)
            var = torch.where(n > 0, var, d.running_var)
        std = torch.sqrt(var + d.eps) + d.eps
        p = torch.sigmoid((x - mean) / std)
        return (p * x + (1.0 - p) * d.alpha * x).reshape(s.shape)


def _swap_batch_dice(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, Dice) and child.mode == "code":
                parent._modules[name] = _MaskedDice(child)


# ---- DIEN: the recurrences over every padded position --------------------------------------------
def _dien_logits(m: DIEN, batch: Batch, recurrence: str) -> torch.Tensor:
    """``DIEN.forward(batch).logits`` in eval mode, with the GRUs run over the whole padded batch
    (the eager ``run_gru`` either packs or runs padded and masks: real positions are the same, since
    a post-padded row's real steps never see its padding) and the evolving recurrence stepping over
    every position (a padded step has update gate 0, so it keeps the state exactly, as the eager
    scan's shorter loop does). The parity checks compare this with ``DIEN.forward``."""
    mask = batch.hist_mask
    e_a = m.emb.target(batch)
    e_h = m.emb.history(batch)
    real = mask.unsqueeze(-1).to(e_h.dtype)
    h = _gru(m.extractor, e_h, recurrence) * real  # Eqs. (2)-(5)
    if m.evolution == "gru_att":
        h2 = _gru(m.evolver, h, recurrence) * real
        interest = torch.einsum("bl,blh->bh", m.attend(h2, e_a, mask), h2)
    else:
        a = m.attend(h, e_a, mask)  # Eq. (8)
        interest = _evolve(m.evolver, h, a, mask, recurrence)
    pooled = e_h.sum(dim=1)
    extra = [e_a * pooled] if m.mlp_inputs == "code" else []
    x = torch.cat([e_a, pooled, *extra, interest, *m.emb.profile(batch)], dim=-1)
    return m.mlp(x).squeeze(-1)


def _gru(gru: nn.GRU, x: torch.Tensor, recurrence: str) -> torch.Tensor:
    """torch's GRU (one layer, batch first) over every position of x [B, L, I] -> [B, L, H]."""
    if gru.num_layers != 1 or gru.bidirectional or not gru.batch_first:
        raise NotImplementedError("export covers one-layer, one-directional, batch-first GRUs")
    if recurrence == "loop":
        return gru(x)[0]
    return _gru_scan(gru, x)


def _gru_scan(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """torch's GRU equations (gates r, z, n in its weight layout) as a ``scan`` over time."""
    from torch._higher_order_ops import scan

    H = gru.hidden_size
    w_hh, b_hh = gru.weight_hh_l0, getattr(gru, "bias_hh_l0", None)
    xs = F.linear(x.transpose(0, 1), gru.weight_ih_l0, getattr(gru, "bias_ih_l0", None))  # [L, B, 3H]

    def step(h: torch.Tensor, xp: torch.Tensor):
        hp = F.linear(h, w_hh, b_hh)
        rz = torch.sigmoid(xp[:, : 2 * H] + hp[:, : 2 * H])
        n = torch.tanh(xp[:, 2 * H :] + rz[:, :H] * hp[:, 2 * H :])
        h = n + rz[:, H:] * (h - n)  # (1 - z) n + z h
        return h, h.clone()

    _, ys = scan(step, x.new_zeros(x.shape[0], H), xs)
    return ys.transpose(0, 1)


def _evolve(ev, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor, recurrence: str) -> torch.Tensor:
    """``EvolvingGRU.forward`` (h'_T) over every position: the same input projection and gate
    factors, the update gate u' = g0 + g1 * u with an absent factor as 0."""
    m = mask.to(x.dtype)
    if ev.kind == "aigru":
        x = x * a.unsqueeze(-1)
    xs = ev.x2h(x.transpose(0, 1))  # [L, B, 3H]
    g0, g1 = ev.gate_factors(a.t().unsqueeze(-1), m.t().unsqueeze(-1))
    g0 = torch.zeros_like(g1) if g0 is None else g0
    g1 = torch.zeros_like(g0) if g1 is None else g1
    if recurrence == "loop":
        return _attentional_loop()(xs, ev.h2h.weight, g0, g1)
    return _attentional_scan(xs, ev.h2h.weight, g0, g1)


def _attentional_loop_source(xs: torch.Tensor, U: torch.Tensor, g0: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
    H = U.size(1)
    h = torch.zeros(xs.size(1), H, dtype=xs.dtype, device=xs.device)
    Ut = U.t()
    for t in range(xs.size(0)):
        x = xs[t]
        hp = torch.mm(h, Ut)
        ur = torch.sigmoid(x[:, : 2 * H] + hp[:, : 2 * H])
        c = torch.tanh(torch.addcmul(x[:, 2 * H :], ur[:, H:], hp[:, 2 * H :]))
        h = torch.addcmul(h, torch.addcmul(g0[t], g1[t], ur[:, :H]), c - h)
    return h


@functools.cache
def _attentional_loop():
    """The attentional recurrence (nn/gru_scan.py's forward) as a TorchScript loop, compiled once."""
    with _quiet():
        return torch.jit.script(_attentional_loop_source)


def _attentional_scan(xs: torch.Tensor, U: torch.Tensor, g0: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
    from torch._higher_order_ops import scan

    H = U.shape[1]
    Ut = U.t()

    def step(h: torch.Tensor, inputs):
        x, a0, a1 = inputs
        hp = torch.mm(h, Ut)
        ur = torch.sigmoid(x[:, : 2 * H] + hp[:, : 2 * H])
        c = torch.tanh(torch.addcmul(x[:, 2 * H :], ur[:, H:], hp[:, 2 * H :]))
        h = torch.addcmul(h, torch.addcmul(a0, a1, ur[:, :H]), c - h)
        return h, h.clone()

    h_last, _ = scan(step, xs.new_zeros(xs.shape[1], H), (xs, g0, g1))
    return h_last


# ---- writing and checking one format -------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """Exporters' deprecation notes, tracer warnings and progress lines stay out of the output (the
    parity check, not the tracer's warnings, decides whether an artifact is right)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx.experimental.symbolic_shapes", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def batch_inputs(batch: Batch) -> tuple[torch.Tensor, ...]:
    """A Batch as the artifact's six inputs."""
    return (batch.user, batch.item, batch.cate, batch.hist_item, batch.hist_cate, batch.hist_len)


def random_batch(vocab: Vocab, rows: int, width: int, generator: torch.Generator, empty: str = "some") -> Batch:
    """A post-padded batch of random ids with random history lengths from 0 to ``width``; ``empty``:
    ``some`` (the first row has an empty history, the last a full one), ``all`` or ``none``."""
    def ids(n: int, shape) -> torch.Tensor:
        return torch.randint(1, max(n, 2), shape, generator=generator) if n > 1 else torch.zeros(shape, dtype=torch.int64)

    hist_len = torch.randint(0, width + 1, (rows,), generator=generator)
    if empty == "all":
        hist_len.zero_()
    elif empty == "some" and rows > 1:
        hist_len[0], hist_len[-1] = 0, width
    elif empty == "none":
        hist_len.clamp_(min=min(1, width))
    mask = torch.arange(width).unsqueeze(0) < hist_len.unsqueeze(1)
    return Batch(
        user=ids(vocab.n_users, (rows,)), item=ids(vocab.n_items, (rows,)), cate=ids(vocab.n_cates, (rows,)),
        label=torch.zeros(rows), hist_item=ids(vocab.n_items, (rows, width)) * mask, hist_cate=ids(vocab.n_cates, (rows, width)) * mask,
        hist_mask=mask, hist_len=hist_len,
    )


def check_batches(vocab: Vocab, width: int = 30, seed: int = 0) -> list[Batch]:
    """Random batches of several shapes (none the trace's example shape), with variable lengths,
    empty histories, a batch of only empty histories and one with an empty history dimension."""
    g = torch.Generator().manual_seed(seed)
    width = max(int(width), 3)
    return [
        random_batch(vocab, 1, 0, g),
        random_batch(vocab, 1, 4, g, empty="none"),
        random_batch(vocab, 6, 3, g, empty="all"),
        random_batch(vocab, 17, 5, g),
        random_batch(vocab, 64, width, g),
    ]


def _example_inputs(vocab: Vocab) -> tuple[torch.Tensor, ...]:
    """What the trace and torch.export run: a shape the check batches do not have (B=5, L=7)."""
    return batch_inputs(random_batch(vocab, 5, 7, torch.Generator().manual_seed(12345)))


def _dynamic_shapes() -> dict:
    batch, hist = torch.export.Dim("batch", min=1), torch.export.Dim("hist", min=0)
    return {n: ({0: batch, 1: hist} if n.startswith("hist_") and n != "hist_len" else {0: batch}) for n in INPUTS}


def _missing_onnx_packages() -> list[str]:
    import importlib.util

    return [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]


class _Artifacts:
    """Builds the artifact of each format for one model (the exported program once, for pt2 and ONNX)."""

    def __init__(self, model: CTRModel, vocab: Vocab, item_lookup: torch.Tensor | None = None) -> None:
        self.model, self.vocab, self.item_lookup = model, vocab, item_lookup
        self._program = None

    def scorer(self, recurrence: str) -> Scorer:
        return Scorer(self.model, self.vocab, self.item_lookup, recurrence).eval()

    def program(self):
        if self._program is None:
            with torch.no_grad():
                self._program = torch.export.export(self.scorer("scan"), _example_inputs(self.vocab), dynamic_shapes=_dynamic_shapes())
        return self._program

    def write(self, fmt: str, path: Path) -> None:
        with _quiet(), torch.no_grad():
            if fmt == "torchscript":
                traced = torch.jit.trace(self.scorer("loop"), _example_inputs(self.vocab), check_trace=False)
                torch.jit.save(traced, str(path))
            elif fmt == "pt2":
                torch.export.save(self.program(), str(path))
            elif fmt == "onnx":
                program = torch.onnx.export(self.program(), dynamo=True, verbose=False, optimize=False, output_names=[OUTPUT])
                program.save(str(path), external_data=False)
            else:
                raise ValueError(fmt)


def load_runner(fmt: str, path: str | Path):
    """A function of the six inputs (tensors) returning the logits (a float32 numpy array), reading
    the artifact at ``path`` with the format's own runtime, as a user of the artifact would."""
    path = str(path)
    with _quiet():
        if fmt == "torchscript":
            module = torch.jit.load(path)
            return lambda *xs: module(*xs).detach().numpy()
        if fmt == "pt2":
            module = torch.export.load(path).module()
            return lambda *xs: module(*xs).detach().numpy()
        if fmt == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3  # errors only (not the optimizer's notes on unused initializers)
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]

            def run(*xs):
                feed = {n: x.numpy() for n, x in zip(INPUTS, xs) if n in names}
                return session.run(None, feed)[0]

            return run
    raise ValueError(fmt)


def eager_logits(model: CTRModel, batch: Batch, transform=None) -> np.ndarray:
    """What ``ctrbench evaluate`` computes for ``batch``: the model in eval mode, after the
    regularizer's evaluation transform (``reg=filter``)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            b = transform(batch) if transform is not None else batch
            return model(b).logits.float().numpy()
    finally:
        model.train(was)


def parity(run, batches: list[Batch], expected: list[np.ndarray]) -> float:
    """The largest absolute difference between ``run``'s logits and the expected ones (inf for a
    wrong shape or a non-finite value where the eager one is finite)."""
    worst = 0.0
    with torch.no_grad():
        for batch, want in zip(batches, expected):
            got = np.asarray(run(*batch_inputs(batch)), dtype=np.float64)
            if got.shape != want.shape:
                return float("inf")
            diff = np.abs(got - want)
            if not np.all(np.isfinite(diff) | (~np.isfinite(want))):
                return float("inf")
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
    return worst


@dataclass
class Exported:
    """One written artifact: its format, file, JSON, the parity check's largest difference."""

    format: str
    path: Path
    json_path: Path
    max_abs_diff: float
    sha256: str
    size: int
    info: dict = field(default_factory=dict)


def _short(e: BaseException) -> str:
    """One line for an exporter's error: its innermost cause (the converters wrap the real reason,
    such as a missing ONNX function, in generic advice), without terminal colours."""
    import re

    while e.__cause__ is not None:
        e = e.__cause__
    lines = [t for t in (re.sub(r"\x1b\[[0-9;]*m", "", t).strip() for t in str(e).strip().splitlines()) if t]
    if lines and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1][:240]  # the interpreter's own error comes last, after its traceback
    return f"{type(e).__name__}: {(lines or [type(e).__name__])[0][:240]}"


def build_checked(artifacts: _Artifacts, fmt: str, path: Path, batches: list[Batch], expected: list[np.ndarray],
                  tolerance: float = TOLERANCE, before_rename=None) -> float:
    """Write ``fmt``'s artifact to a temporary file beside ``path``, check it (loaded back from that
    file) against the eager logits, and rename it onto ``path`` only when the check passed; returns
    the largest difference. A format that cannot express the model, a failed check or a missing
    runtime is a ``FormatUnsupported`` and leaves ``path`` as it was. ``before_rename`` runs after the
    check, before the rename (to remove a stale JSON)."""
    if fmt == "onnx":
        missing = _missing_onnx_packages()
        if missing:
            raise FormatUnsupported(f"format=onnx needs {', '.join(missing)}: {ONNX_INSTALL}", fmt,
                                    f"{', '.join(missing)} not installed ({ONNX_INSTALL})", missing_runtime=True)
    with atomic_path(path) as tmp:
        try:
            artifacts.write(fmt, tmp)
            run = load_runner(fmt, tmp)
            worst = parity(run, batches, expected)
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - each exporter raises its own kinds
            raise FormatUnsupported(f"format={fmt} cannot express this model ({_short(e)})", fmt, _short(e)) from None
        if not worst <= tolerance:
            reason = f"its scores differ from the eager model's by up to {worst:.3g} (tolerance {tolerance:g})"
            raise FormatUnsupported(f"format={fmt} does not reproduce this model: {reason}", fmt, reason)
        if before_rename is not None:
            before_rename()
    return worst


def working_formats(artifacts: _Artifacts, batches: list[Batch], expected: list[np.ndarray], tolerance: float = TOLERANCE,
                    exclude: tuple[str, ...] = ()) -> list[str]:
    """The formats (other than ``exclude``) that express the model and pass the check, tried in a
    temporary folder."""
    ok = []
    with tempfile.TemporaryDirectory(prefix="ctrbench-export-") as d:
        for fmt in FORMATS:
            if fmt in exclude:
                continue
            try:
                build_checked(artifacts, fmt, Path(d) / FILES[fmt], batches, expected, tolerance)
            except FormatUnsupported:
                continue
            ok.append(fmt)
    return ok


def artifact_info(fmt: str, path: Path, vocab: Vocab, worst: float, tolerance: float, n_rows: int) -> dict:
    """What every artifact's JSON says: the file, its inputs and outputs, the vocabulary, the check."""
    inputs = list(INPUTS)
    out = {}
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False)
        inputs = [i.name for i in graph.graph.input]
        out["onnx_opset"] = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    return {
        "format": fmt,
        "artifact": path.name,
        "sha256": file_digest(path),
        "size_bytes": path.stat().st_size,
        "load": _LOAD[fmt],
        "inputs": [{"name": n, "dtype": "int64", "shape": _INPUT_DOCS[n][0], "meaning": _INPUT_DOCS[n][1]} for n in inputs],
        "outputs": [{"name": OUTPUT, "dtype": "float32", "shape": ["batch"], "meaning": "click logit; sigmoid(logit) is the click probability"}],
        "dims": {"batch": "any size >= 1", "hist": "any size >= 0 (every row padded to the batch's longest history)"},
        "vocab": {"n_users": vocab.n_users, "n_items": vocab.n_items, "n_cates": vocab.n_cates},
        "versions": _versions(fmt),
        "check": {
            "max_abs_diff": worst, "tolerance": tolerance, "rows": n_rows,
            "against": "the eager model (what ctrbench evaluate scores) on random batches with variable and empty "
                       "histories and a sample of the run's evaluation split, read back from the written file",
        },
        **out,
    }


def export_model(
    model: CTRModel, vocab: Vocab, formats: list[str], out_dir: str | Path, *,
    batches: list[Batch] | None = None, transform=None, item_lookup: torch.Tensor | None = None,
    tolerance: float = TOLERANCE, explicit: bool = True, extra_info=None, console=None, name: str | None = None,
) -> list[Exported]:
    """Write ``model``'s artifact in each of ``formats`` into ``out_dir`` (``FILES``), each with its
    JSON; returns what was written. ``batches``: the check batches (default ``check_batches``);
    ``transform``: the regularizer's evaluation transform the eager scores go through, carried into
    the artifact as ``item_lookup``; ``extra_info(fmt)``: more JSON fields.

    A format that cannot express the model is never written. When ``explicit`` (the formats were
    named) or nothing was written, that is a one-line ``FormatUnsupported`` naming the formats that
    do work; with ``format=all`` (not ``explicit``) it is a note beside the formats written."""
    out_dir = Path(out_dir)
    batches = check_batches(vocab) if batches is None else batches
    expected = [eager_logits(model, b, transform) for b in batches]
    n_rows = sum(len(b) for b in batches)
    artifacts = _Artifacts(model, vocab, item_lookup)
    written: list[Exported] = []
    failed: dict[str, FormatUnsupported] = {}
    for fmt in formats:
        path = out_dir / FILES[fmt]
        json_path = path.with_name(path.name + ".json")
        t0 = time.perf_counter()
        try:
            worst = build_checked(artifacts, fmt, path, batches, expected, float(tolerance),
                                  before_rename=lambda p=json_path: p.unlink(missing_ok=True))
        except FormatUnsupported as e:
            failed[fmt] = e
            continue
        info = artifact_info(fmt, path, vocab, worst, float(tolerance), n_rows)
        if extra_info is not None:
            info = {**info, **extra_info(fmt)}
        atomic_write_text(json_path, json.dumps(info, indent=2, default=str))
        written.append(Exported(fmt, path, json_path, worst, info["sha256"], info["size_bytes"], info))
        log.info(f"exported {fmt} to {path} ({info['size_bytes']:,} bytes, max |exported - eager| = {worst:.2g}, "
                 f"{time.perf_counter() - t0:.1f} s)")
    _report(written, failed, console)
    unexpressed = {f: e for f, e in failed.items() if not e.missing_runtime}
    if unexpressed and (explicit or not written):
        fmt, e = next(iter(unexpressed.items()))
        tried = tuple(failed) + tuple(w.format for w in written)
        works = sorted({w.format for w in written} | set(working_formats(artifacts, batches, expected, float(tolerance), exclude=tried)),
                       key=FORMATS.index)
        offer = f"formats that work for it: {', '.join(works)}" if works else "no export format works for it"
        model_name = name or type(model).__name__
        raise FormatUnsupported(f"model {model_name} cannot be exported as {fmt}: {e.reason}; {offer}", fmt, e.reason)
    missing = [e for e in failed.values() if e.missing_runtime]
    if missing and (explicit or not written):
        raise missing[0]
    return written


def _report(written: list[Exported], failed: dict[str, FormatUnsupported], console) -> None:
    if console is None:
        return
    from rich.table import Table

    if written:
        t = Table(title="exported")
        for col in ("format", "file", "size", "max |exported - eager|"):
            t.add_column(col)
        for w in written:
            t.add_row(w.format, str(w.path), f"{w.size:,} B", f"{w.max_abs_diff:.2g}")
        console.print(t)
    for fmt, e in failed.items():
        console.print(f"not exported as {fmt}: {e.reason}", markup=False)


# ---- a run folder ----------------------------------------------------------------------------------
def parse_formats(value) -> list[str]:
    """``format=`` as a list of formats: one name, a list of names, or ``all``."""
    if value is None:
        raise ConfigError(f"format=null: expected one of {', '.join(FORMATS)} or all")
    names = [str(v) for v in value] if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [str(value)]
    names = [n.strip().lower() for part in names for n in part.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"format={value!r}: expected one of {', '.join(FORMATS)} or all")
    if "all" in names:
        return list(FORMATS)
    for n in names:
        if n not in FORMATS:
            raise ConfigError(f"format={n!r} is not an export format: expected one of {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(names))


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: DictConfig
    model: CTRModel
    dataset: ProcessedDataset
    dataset_dir: Path
    checkpoint: Path
    state: dict
    metrics: dict | None
    item_lookup: torch.Tensor | None
    transform: object


def load_run(run_dir: str | Path, data_dir: str | Path, checkpoint_name: str = "best") -> LoadedRun:
    """A run folder's config, dataset (prepared on demand, as ``ctrbench evaluate`` does) and model
    with the checkpoint's weights (eval mode); the regularizer's evaluation transform, which the
    artifact carries (``reg=filter``'s item lookup)."""
    from ctrbench.data.prepare import load_dataset
    from ctrbench.train import checkpoint
    from ctrbench.train.build import build_model, build_regularizer
    from ctrbench.train.regularizers import Filter, Regularizer

    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"run folder '{run}' does not exist")
    if checkpoint_name not in ("best", "last"):
        raise ConfigError(f"checkpoint={checkpoint_name!r}: expected best or last")
    ckpt = run / f"{checkpoint_name}.pt"
    for needed in (run / "config.yaml", ckpt):
        if not needed.exists():
            raise DataError(f"'{run}' has no {needed.name}: expected a run folder written by `ctrbench train`")
    run_cfg = OmegaConf.load(run / "config.yaml")
    ds = load_dataset(run_cfg.dataset, data_dir)
    model = build_model(run_cfg.model, run_cfg.act, ds.vocab)
    state = checkpoint.load(ckpt, map_location="cpu")
    if "model" not in state:
        raise DataError(f"'{ckpt}' holds no model weights: expected a checkpoint written by `ctrbench train`")
    model.load_state_dict(state["model"])
    model.eval()
    reg = build_regularizer(run_cfg.reg)
    item_lookup, transform = None, None
    if type(reg).transform is not Regularizer.transform:
        reg.setup(model, ds, int(run_cfg.dataset.max_len))
        if isinstance(reg, Filter):
            item_lookup = reg._lookup
            transform = functools.partial(reg.transform, training=False)
        else:
            probe = random_batch(ds.vocab, 3, 4, torch.Generator().manual_seed(0))
            if reg.transform(probe, training=False) is not probe:
                reason = f"reg={run_cfg.reg.get('name')} rewrites evaluation batches in a way no artifact carries"
                raise FormatUnsupported(f"{reason}; no export format works for this run", "all", reason)
    metrics = None
    if (run / "metrics.json").exists():
        try:
            metrics = json.loads((run / "metrics.json").read_text())
        except ValueError:
            log.warning(f"'{run / 'metrics.json'}' is not valid JSON: the export records no metrics")
    name, digest = ds.manifest.get("name", ds.name), ds.manifest.get("config_hash")
    dataset_dir = Path(data_dir) / "processed" / f"{name}-{digest}"
    return LoadedRun(run, run_cfg, model, ds, dataset_dir, ckpt, state, metrics, item_lookup, transform)


def _sample_batch(loaded: LoadedRun, rows: int = 64, seed: int = 0) -> Batch | None:
    """A random sample of the run's test split (else valid, else train), histories cut as evaluation
    cuts them (at most 200 positions: a check batch)."""
    from ctrbench.data.batches import Batcher, eval_max_len

    ds, cfg = loaded.dataset, loaded.cfg
    max_len = int(cfg.dataset.max_len)
    for split in ("test", "valid", "train"):
        n = len(ds.splits[split]) if split in ds.splits else 0
        if n:
            cut = max_len if split == "train" else eval_max_len(ds, cfg.dataset.get("eval_max_len", max_len))
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:rows]
            return Batcher(ds, split, max(1, len(idx)), min(cut, 200)).gather(idx)
    return None


def _versions(fmt: str) -> dict:
    out = {"ctrbench": ctrbench.__version__, "torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__}
    if fmt == "onnx":
        import importlib.metadata

        for p in ONNX_PACKAGES:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[p] = importlib.metadata.version(p)
    return out


def example_batch(vocab: Vocab) -> Batch:
    """The three rows recorded in each JSON with their eager logits: histories of 0, 2 and 4 behaviours."""
    b = random_batch(vocab, 3, 4, torch.Generator().manual_seed(7))
    b.hist_len = torch.tensor([0, 2, 4])
    b.hist_mask = torch.arange(4).unsqueeze(0) < b.hist_len.unsqueeze(1)
    b.hist_item, b.hist_cate = b.hist_item * b.hist_mask, b.hist_cate * b.hist_mask
    return b


def run_info(loaded: LoadedRun) -> dict:
    """What the JSON says about the run: model, history cut, where the id maps are, the run's config,
    metrics and checkpoint, and a three-row example with its eager logits."""
    max_len = int(loaded.cfg.dataset.max_len)
    ex = example_batch(loaded.dataset.vocab)
    d = loaded.dataset_dir
    keys = d.with_name(d.name + ".keys")
    return {
        "model": loaded.cfg.model.get("name"),
        "variant": loaded.model.variant(),
        "history": {
            "order": "oldest first; real behaviours first, then padding",
            "max_len": max_len,
            "eval_max_len": loaded.cfg.dataset.get("eval_max_len", max_len),
            "note": "the run saw the last max_len behaviours of each training history (eval_max_len in evaluation; null: all)",
        },
        "id_maps": {
            "dataset_dir": str(d.resolve()),
            "manifest": str((d / "manifest.json").resolve()),
            "item_categories": str((d / "items.parquet").resolve()),
            "ids": "dense integers from 1 in sorted raw-key order (ctrbench/data/encode.py); 0 is padding / unknown",
            # raw key -> id: user/item/cate.parquet (row i holds the key of id i + 1), cached there by
            # `ctrbench predict` (ids=raw) once it has rebuilt them from the raw files; null until then
            "raw_keys": str(keys.resolve()) if keys.is_dir() else None,
        },
        "item_filter": None if loaded.item_lookup is None else {
            "reg": "filter", "kept_items": int((loaded.item_lookup > 0).sum()),
            "note": "applied inside the artifact: other items score as the unknown item 0, as in evaluation"},
        "run": {
            "dir": str(loaded.run_dir.resolve()),
            "checkpoint": loaded.checkpoint.name,
            "checkpoint_step": loaded.state.get("step"),
            "checkpoint_sha256": file_digest(loaded.checkpoint),
        },
        "config": OmegaConf.to_container(loaded.cfg, resolve=False),
        "metrics": loaded.metrics,
        "example": {
            "inputs": {n: t.tolist() for n, t in zip(INPUTS, batch_inputs(ex))},
            "logits": [float(v) for v in eager_logits(loaded.model, ex, loaded.transform)],
        },
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export_run(cfg: DictConfig, console=None) -> list[Exported]:
    """``ctrbench export``: the run's artifacts in the formats asked for; returns what was written."""
    from ctrbench.config_checks import check_missing

    check_missing(cfg)
    if not cfg.get("run_dir"):
        raise ConfigError("no run folder given: expected `ctrbench export RUN_DIR [format=torchscript|onnx|pt2|all]`")
    setting = cfg.get("format", "torchscript")
    formats = parse_formats(setting)
    explicit = not (isinstance(setting, str) and setting.strip().lower() == "all")
    tolerance = cfg.get("tolerance", TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"tolerance={tolerance!r} is invalid: expected a number > 0")
    loaded = load_run(cfg.run_dir, cfg.paths.data_dir, str(cfg.get("checkpoint", "best")))
    out_dir = Path(cfg.output) if cfg.get("output") else loaded.run_dir / "export"
    vocab = loaded.dataset.vocab
    batches = check_batches(vocab, width=min(int(loaded.cfg.dataset.max_len), 50))
    sample = _sample_batch(loaded)
    if sample is not None:
        batches.append(sample)
    info = run_info(loaded)
    return export_model(
        loaded.model, vocab, formats, out_dir, batches=batches, transform=loaded.transform, item_lookup=loaded.item_lookup,
        tolerance=float(tolerance), explicit=explicit, extra_info=lambda fmt: info, console=console, name=info["model"],
    )
