"""DIEN's recurrences in native loops (ctrbench/nn/csrc/gru_scan.c, loaded by ctrbench/nn/native.py):
the same values and gradients as the torch recurrences (float64 to 1e-12, gradcheck), nn.GRU's own
formula for the interest extractor, the same training as the torch ops, and what happens where the
library cannot be built."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.nn import native
from ctrbench.nn.gru_scan import NativeGRUScan, attentional_gru_scan
from ctrbench.nn.sequence import EvolvingGRU, run_gru
from conftest import assert_native_trains_the_same, fast_trainer

needs_library = pytest.mark.skipif(native.library() is None, reason=f"native recurrences unavailable: {native.unavailable_reason()}")

LENGTHS = [7, 3, 0, 1, 5, 7, 2, 6, 6]  # 9 rows: two blocks of 4 and a partial one; an empty row; full rows
GATES = ["augru", "agru", "plain", "both"]  # u' = g1 u, u' = g0, u' = u (masked), u' = g0 + g1 u


def _inputs(kind: str, dtype=torch.float64, H: int = 5, D: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    B, T = len(LENGTHS), max(LENGTHS)
    x = torch.randn(B, T, D, dtype=dtype, requires_grad=True)
    W = torch.randn(3 * H, D, dtype=dtype, requires_grad=True)
    bx = torch.randn(3 * H, dtype=dtype, requires_grad=True)
    U = torch.randn(3 * H, H, dtype=dtype, requires_grad=True)
    lengths = torch.tensor(LENGTHS)
    m = (torch.arange(T)[None, :] < lengths[:, None]).to(dtype)
    a = torch.rand(B, T, dtype=dtype, requires_grad=True)
    g0, g1 = {"augru": (None, a * m), "agru": (a * m, None), "plain": (None, m), "both": (a * m, m - a * m)}[kind]
    return x, W, bx, U, lengths, m, a, g0, g1


def _time_major(g):
    return None if g is None else g.t().unsqueeze(-1)


@needs_library
@pytest.mark.parametrize("kind", GATES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_native_scan_matches_the_torch_scan(kind, dtype, tol):
    """h_T and the gradients of x, W, bx, U and the attention against ``attentional_gru_scan`` (the
    torch recurrence over the padded batch, masked, on the input projection W x + bx), rows of every
    length."""
    x, W, bx, U, lengths, m, a, g0, g1 = _inputs(kind, dtype)
    h_seq, h_last = NativeGRUScan.apply(x, W, bx, U, None, g0, g1, lengths)
    xs = torch.nn.functional.linear(x, W, bx)
    want = attentional_gru_scan(xs.transpose(0, 1), U, _time_major(g0), _time_major(g1))
    torch.testing.assert_close(h_last, want, rtol=tol, atol=tol)
    w = torch.randn_like(h_last)
    wrt = [x, W, bx, U] + ([a] if kind != "plain" else [])
    got = torch.autograd.grad((h_last * w).sum(), wrt, retain_graph=True)
    ref = torch.autograd.grad((want * w).sum(), wrt)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol)
    # the sequence output: h_t at real positions, 0 past each row's length
    assert (h_seq[2] == 0).all() and (h_seq[3, 1:] == 0).all() and (h_seq[1, 3:] == 0).all() and (h_seq[1, :3] != 0).all()
    torch.testing.assert_close(h_seq[0, -1], h_last[0], rtol=0, atol=0)


@needs_library
def test_native_scan_gradcheck():
    """Every input's gradient (x, W, bx, U, bh, g0, g1; a gradient of both outputs) by finite
    differences, H and D not multiples of the kernel's vector width."""
    torch.manual_seed(0)
    B, T, H, D = 6, 4, 3, 5
    lengths = torch.tensor([4, 0, 2, 4, 1, 3])
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    W = torch.randn(3 * H, D, dtype=torch.double, requires_grad=True)
    bx = torch.randn(3 * H, dtype=torch.double, requires_grad=True)
    U = torch.randn(3 * H, H, dtype=torch.double, requires_grad=True)
    bh = torch.randn(3 * H, dtype=torch.double, requires_grad=True)
    for with_g0, with_g1 in ((False, True), (True, False), (True, True), (False, False)):
        g0 = torch.rand(B, T, dtype=torch.double, requires_grad=True) if with_g0 else None
        g1 = torch.rand(B, T, dtype=torch.double, requires_grad=True) if with_g1 else None
        assert torch.autograd.gradcheck(lambda *t: NativeGRUScan.apply(*t, lengths), (x, W, bx, U, bh, g0, g1))


@needs_library
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_gate_layout_is_the_reordered_copy_bit_for_bit(dtype):
    """``torch_gates``: the kernel reads nn.GRU's (r, z, n) rows itself (z negated into u) and writes
    the gradients back in that layout: exactly what the reordered, negated copies of the weights give
    through the scan's own layout, values and every gradient, to the bit."""
    torch.manual_seed(1)
    H, D = 5, 3
    B, T = len(LENGTHS), max(LENGTHS)
    x = torch.randn(B, T, D, dtype=dtype)
    params = [torch.randn(3 * H, D, dtype=dtype), torch.randn(3 * H, dtype=dtype), torch.randn(3 * H, H, dtype=dtype),
              torch.randn(3 * H, dtype=dtype)]
    lengths = torch.tensor(LENGTHS)
    order = torch.cat([torch.arange(H, 2 * H), torch.arange(H), torch.arange(2 * H, 3 * H)])
    sign = torch.ones(3 * H, dtype=dtype)
    sign[:H] = -1

    def run(torch_gates: bool):
        xi = x.clone().requires_grad_()
        ps = [p.clone().requires_grad_() for p in params]
        if torch_gates:
            W, bx, U, bh = ps
        else:
            W, bx, U, bh = (p[order] * (sign[:, None] if p.dim() == 2 else sign) for p in ps)
        h_seq, h_last = NativeGRUScan.apply(xi, W, bx, U, bh, None, None, lengths, torch_gates)
        g = torch.autograd.grad((h_seq * torch.arange(h_seq.numel(), dtype=dtype).view_as(h_seq).cos()).sum() + h_last.sum(), [xi, *ps])
        return [h_seq, h_last, *g]

    for got, want in zip(run(True), run(False)):
        assert torch.equal(got, want)


@needs_library
def test_run_gru_native_is_torchs_gru():
    """The interest extractor: nn.GRU's formula (gates r, z, n; b_hn inside r * (...)) on the native
    scan, values and every gradient (input and the four parameters) in float64."""
    torch.manual_seed(0)
    gru = nn.GRU(6, 5, batch_first=True).double()
    x = torch.randn(len(LENGTHS), max(LENGTHS), 6, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor(LENGTHS)
    want, got = run_gru(gru, x, lengths), run_gru(gru, x, lengths, native=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(want)
    ref = torch.autograd.grad((want * w).sum(), [x, *gru.parameters()])
    new = torch.autograd.grad((got * w).sum(), [x, *gru.parameters()])
    for g, r in zip(new, ref):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@needs_library
@pytest.mark.parametrize("kind, formula", [("augru", "paper"), ("augru", "code"), ("agru", "paper"), ("aigru", "paper")])
def test_evolving_gru_native_matches(kind, formula):
    torch.manual_seed(1)
    g = EvolvingGRU(3, 4, kind, formula).double()
    x = torch.randn(9, 6, 3, dtype=torch.double, requires_grad=True)
    a = torch.rand(9, 6, dtype=torch.double, requires_grad=True)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 1, 0, 5, 6, 2, 4, 4])[:, None]
    w = torch.randn(9, 4, dtype=torch.double)
    results = []
    for native_flag in (False, True):
        out = g(x, a, mask, native=native_flag)
        results.append((out, *torch.autograd.grad((out * w).sum(), [x, a, *g.parameters()])))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@needs_library
def test_a_nan_input_gives_a_nan_state():
    """A NaN stays NaN through the kernel's exp (the trainer's NaN checks see it)."""
    x, W, bx, U, lengths, *_ = _inputs("plain", torch.float32)
    x = x.detach().clone()
    x[0, 2, 0] = float("nan")
    _, h_last = NativeGRUScan.apply(x, W.detach(), bx.detach(), U.detach(), None, None, None, lengths)
    assert torch.isnan(h_last[0]).any() and torch.isfinite(h_last[1:]).all()


@needs_library
@pytest.mark.parametrize("evolution", ["augru", "gru_att"])
def test_dien_trains_the_same_with_native_and_torch_recurrences(tiny_dataset, tmp_path, evolution):
    """The dien_table2 setup (Adam), 30 steps each way: the same losses and weights up to float32
    rounding."""
    def check(t, native):
        assert t.model.native_recurrence == native

    assert_native_trains_the_same(tiny_dataset, tmp_path, "native_recurrence", "+experiment=dien_table2", "+row=dien_table2/dien",
                                  f"model.evolution={evolution}", check=check)


@needs_library
def test_a_dien_run_records_its_recurrence(tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=dien", "trainer.max_steps=5", "trainer.eval_every=5", "trainer.selection=last")
    assert t.fit()["recurrence"] == "native"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["recurrence"] == "native"


def test_models_without_recurrences_ignore_the_setting(tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", "trainer.native_recurrence=true")  # DIN: nothing to run natively
    assert t.native_recurrence is False and t.model.native_recurrence is False


def test_the_setting_is_checked(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.native_recurrence='sometimes' is invalid: expected auto, true or false"):
        fast_trainer(tiny_dataset, tmp_path / "run", "model=dien", "trainer.native_recurrence=sometimes")


def test_without_the_library_auto_falls_back_and_true_is_an_error(tiny_dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "_reason", "no C compiler found ($CC, cc, gcc or clang)")
    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        t = fast_trainer(tiny_dataset, tmp_path / "auto", "model=dien")
    assert t.native_recurrence is False
    assert "the native recurrences could not be built: no C compiler found" in caplog.text
    with pytest.raises(ConfigError, match=r"trainer.native_recurrence=true: the native recurrences could not be built: no C compiler"):
        fast_trainer(tiny_dataset, tmp_path / "true", "model=dien", "trainer.native_recurrence=true")


def test_build_compiles_once_into_the_cache_folder(tmp_path, monkeypatch):
    """A fresh cache folder: the library is compiled there under a hashed name, loads, and a second
    build finds it instead of compiling again; no temporary file is left behind."""
    if native._compiler() is None:
        pytest.skip("no C compiler here")
    monkeypatch.setenv("CTRBENCH_KERNEL_DIR", str(tmp_path / "kernels"))
    path = native._build(native._compiler())
    assert path.parent == tmp_path / "kernels" and path.name.startswith("gru_scan-") and path.suffix == ".so"
    mtime = path.stat().st_mtime_ns
    assert native._build(native._compiler()) == path and path.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "kernels").iterdir()] == [path.name]


def test_a_failing_compiler_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    """A compiler that fails: ``library()`` returns None and says why; nothing is left in the cache."""
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: error: cannot compile' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("CTRBENCH_KERNEL_DIR", str(tmp_path / "kernels"))
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert native.unavailable_reason() == "RuntimeError: fakecc failed on gru_scan.c, dice.c, adam_rows.c, lr_step.c, aux_loss.c, pair_lookup.c, attention.c: fakecc: error: cannot compile"
        assert not any((tmp_path / "kernels").iterdir())
    finally:
        native.library.cache_clear()
        monkeypatch.undo()
        native.library()


def test_ctrbench_native_0_switches_it_off(monkeypatch):
    monkeypatch.setenv("CTRBENCH_NATIVE", "0")
    native.library.cache_clear()
    try:
        assert native.library() is None and native.unavailable_reason() == "CTRBENCH_NATIVE=0"
    finally:
        native.library.cache_clear()
        monkeypatch.undo()
        native.library()


def test_an_unusable_cache_folder_falls_back_to_a_temporary_one(tmp_path):
    """A cache folder that cannot be made (here: under a file) is replaced by one in the system's
    temporary folder, so a read-only home does not cost the native recurrences."""
    import tempfile

    (tmp_path / "a_file").write_text("")
    chosen = native._writable_dir(tmp_path / "a_file" / "kernels")
    assert chosen.parent == Path(tempfile.gettempdir()) and chosen.name.startswith("ctrbench-kernels-")


@needs_library
def test_mismatched_inputs_are_refused_before_the_kernel_runs():
    """The kernel reads raw pointers: a wrong dtype or shape must never reach it."""
    x, W, bx, U, lengths, *_ = _inputs("plain", torch.float64)
    with pytest.raises(TypeError, match="one dtype"):
        NativeGRUScan.apply(x, W.float(), bx, U, None, None, None, lengths)
    with pytest.raises(ValueError, match=r"W must be \[3H, D\]"):
        NativeGRUScan.apply(x, W[:, :2], bx, U, None, None, None, lengths)
    with pytest.raises(ValueError, match=r"lengths must be \[B\]"):
        NativeGRUScan.apply(x, W, bx, U, None, None, None, lengths[:-1])


def test_a_library_others_can_write_is_never_loaded(tmp_path, monkeypatch):
    """A cache folder writable by others (a shared temporary folder), or a cached file someone else
    could have replaced, is refused with a reason; nothing is loaded from it."""
    if native._compiler() is None:
        pytest.skip("no C compiler here")
    folder = tmp_path / "kernels"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setenv("CTRBENCH_KERNEL_DIR", str(folder))
    with pytest.raises(RuntimeError, match="writable by others: not loading code from it"):
        native._build(native._compiler())
    folder.chmod(0o700)
    path = native._build(native._compiler())
    path.chmod(0o775)  # group-writable (a umask of 002): accepted
    assert native._build(native._compiler()) == path
    path.chmod(0o757)
    with pytest.raises(RuntimeError, match="writable by others"):
        native._build(native._compiler())
