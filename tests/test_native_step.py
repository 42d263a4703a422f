"""The one-weight tables stepped natively (``trainer.native_step``, train/native_step.py,
nn/native_first_order.py, nn/csrc/lr_step.c): LR's whole step and Wide&Deep's and DeepFM's first-order
parts give autograd's losses, norms and weights with FlatSGD up to float rounding, clipping included;
the same checks (a non-finite loss or norm stops training with the weights as they were); where it
applies; what it refuses."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ctrbench.errors import ConfigError, TrainingDiverged
from ctrbench.nn import native
from ctrbench.train import native_step
from ctrbench.train.loop import Trainer
from conftest import assert_native_trains_the_same, compose_train, fast_trainer

TABLE3_LR = ("+experiment=din_table3", "+row=din_table3/lr")


@pytest.mark.parametrize("model", [[], ["model.pooling=sum", "model.use_user=true"]], ids=["mean", "sum-user"])
def test_native_step_trains_as_autograd_does(tiny_dataset, tmp_path, model):
    """30 steps of the table setup (SGD, lr 1, batch 32, clipping at 5) each way."""

    def check(t, native_on):
        assert (t.native_lr is not None) == native_on

    assert_native_trains_the_same(tiny_dataset, tmp_path, "native_step", *TABLE3_LR, *model, check=check)


@pytest.mark.parametrize("row", ["wdl", "deepfm"])
def test_first_order_parts_train_as_autograd_does(tiny_dataset, tmp_path, row):
    """Wide&Deep's wide part (first order and crosses) and DeepFM's first order stepped natively
    (FlatSGD counts and moves their scratch), 30 steps of the table setup each way (DeepFM at lr 0.1: at lr 1 it diverges, in either
    form, and float rounding grows into visible differences within 20 steps)."""

    def check(t, native_on):
        parts = native_step.first_order_parts(t.model)
        assert len(parts) == 1 and t.native_lr is None
        assert (parts[0].native_rows is not None) == native_on == bool(t.optimizer.native_rows)
        if native_on:  # Wide&Deep's whole wide part, its two cross tables included; DeepFM's first order
            assert (parts[0].native_rows.weights[5] is not None) == (row == "wdl")

    lr = ["optim.lr=0.1"] if row == "deepfm" else []
    assert_native_trains_the_same(tiny_dataset, tmp_path, "native_step", "+experiment=din_table3", f"+row=din_table3/{row}", *lr, check=check)


def _random_weights(t: Trainer, scale: float) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in t.model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("clip", [0.05, None], ids=["clipped", "no-clip"])
@pytest.mark.parametrize("model", [[], ["model.pooling=sum", "model.use_user=true"]], ids=["mean", "sum-user"])
def test_one_step_from_random_weights_is_autograds(tiny_dataset, tmp_path, clip, model):
    """From random weights, one step gives autograd's loss, gradient norm and weights to float
    rounding, with a clipping factor well below 1 (the BCE gradient bounds the norm near 1, so the
    clipping threshold is low) and without clipping."""
    overrides = [*TABLE3_LR, *model, "optim.lr=3.0", f"trainer.grad_clip={clip if clip else 'null'}"]
    runs = {}
    for setting in ("true", "false"):
        t = fast_trainer(tiny_dataset, tmp_path / setting, *overrides, f"trainer.native_step={setting}")
        _random_weights(t, 2.0)
        start = {k: v.clone() for k, v in t.model.state_dict().items()}
        _, batch = next(iter(t.train_batches))
        if setting == "true":
            _, sumsq = t.native_lr.gradients(batch)
            t.native_lr.discard()
            norm = math.sqrt(sumsq)
        else:
            t.optimizer.zero_grad()
            t.model.train()
            out = t.model(batch)
            torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.label).backward()
            norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in t.model.parameters() if p.grad is not None])))
            t.optimizer.zero_grad()
        loss = t.train_step(batch)
        runs[setting] = (loss, norm, {k: v.clone() for k, v in t.model.state_dict().items()})
    (loss_n, norm_n, w_n), (loss_a, norm_a, w_a) = runs["true"], runs["false"]
    assert clip is None or norm_a > 2 * clip
    assert loss_n == pytest.approx(loss_a, rel=1e-6) and norm_n == pytest.approx(norm_a, rel=1e-5)
    for k in w_a:
        torch.testing.assert_close(w_n[k], w_a[k], rtol=1e-6, atol=1e-6)
    assert sum(int((w_n[k] != v).sum()) for k, v in start.items()) > 0  # the step moved the weights


@pytest.mark.parametrize("row", ["wdl", "deepfm"])
def test_one_clipped_step_of_a_first_order_part_is_autograds(tiny_dataset, tmp_path, row):
    """From random weights of the natively stepped part (Wide&Deep: the whole model, crosses
    included), one step clipped at 0.05: the global norm (FlatSGD's, with the native scratch's share)
    and every weight as autograd gives them, to float rounding."""
    runs = {}
    for setting in ("true", "false"):
        t = fast_trainer(tiny_dataset, tmp_path / setting, "+experiment=din_table3", f"+row=din_table3/{row}", "trainer.grad_clip=0.05",
                         f"trainer.native_step={setting}")
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in native_step.first_order_parts(t.model)[0].parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        norms = []
        clip = t.optimizer.clip_grad_norm_

        def measured(max_norm, clip=clip, norms=norms):
            norm = clip(max_norm)
            norms.append(float(norm))
            return norm

        t.optimizer.clip_grad_norm_ = measured
        _, batch = next(iter(t.train_batches))
        loss = t.train_step(batch)
        runs[setting] = (loss, norms[0], {k: v.clone() for k, v in t.model.state_dict().items()})
    (loss_n, norm_n, w_n), (loss_a, norm_a, w_a) = runs["true"], runs["false"]
    assert norm_a > 0.1 and norm_n == pytest.approx(norm_a, rel=1e-5)
    assert loss_n == pytest.approx(loss_a, rel=1e-6)
    for k in w_a:
        torch.testing.assert_close(w_n[k], w_a[k], rtol=1e-6, atol=1e-6)


def test_where_it_applies(tiny_dataset, tmp_path):
    def native_on(*overrides, row="lr"):
        t = fast_trainer(tiny_dataset, tmp_path / "run", "+experiment=din_table3", f"+row=din_table3/{row}", *overrides)
        assert t.cfg.model.name == row
        return t.native_tables

    assert native_on()  # auto: LR under plain SGD
    assert native_on("reg=filter", "reg.min_count=2")  # a batch transform, no penalty
    assert native_on(row="wdl") and native_on(row="deepfm")  # their first-order parts
    assert not native_on(row="pnn")
    assert not native_on("trainer.native_step=false")
    assert not native_on("optim=adam")  # auto: silently the autograd step
    assert not native_on("reg=l2")
    assert not native_on("trainer.flat_sgd=false")
    for overrides, why in ((["optim=adam"], "the native step is plain SGD's"), (["reg=l2"], "reg=l2 adds a penalty to the loss"),
                           (["model=base"], "the native step exists for model=lr, wdl and deepfm"),
                           (["optim.momentum=0.9"], "the native step is plain SGD's")):
        with pytest.raises(ConfigError, match=f"trainer.native_step=true cannot be used here: {why}.*; use auto or false"):
            fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR, *overrides, "trainer.native_step=true")
    with pytest.raises(ConfigError, match="trainer.native_step='yes' is invalid: expected auto, true or false"):
        fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR, "trainer.native_step=yes")


def test_without_the_native_library(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "unavailable_reason", lambda: "no C compiler found ($CC, cc, gcc or clang)")
    assert not fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR).native_tables  # auto: a warning, autograd
    with pytest.raises(ConfigError, match=r"the native kernels are unavailable: no C compiler found.*; use auto or false"):
        fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR, "trainer.native_step=true")


@pytest.mark.parametrize("fault", ["nan_at_step", "nan_grad_at_step"])
def test_a_non_finite_step_stops_training_with_the_weights_as_they_were(tiny_dataset, tmp_path, fault):
    t = fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR, f"trainer.fault_injection.{fault}=3")
    assert t.native_lr is not None
    batches = iter(t.train_batches)
    for _ in range(2):
        t.train_step(next(batches)[1])
        t.progress.step += 1
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    what = "the loss became nan" if fault == "nan_at_step" else "the gradient norm became nan"
    with pytest.raises(TrainingDiverged, match=f"{what} at step 3"):
        t.train_step(next(batches)[1])
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(int(g.count_nonzero()) == 0 for g in t.native_lr.rows.grads if g is not None)  # the scratch is clean again
    assert all(int(m.count_nonzero()) == 0 for m in t.native_lr.rows.marks if m is not None)


def test_an_id_outside_a_table_is_refused_and_changes_nothing(tiny_dataset, tmp_path):
    t = fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR)
    _, batch = next(iter(t.train_batches))
    batch.hist_item[0, 0] = t.model.u_item.num_embeddings  # one past the table (a real position: the first)
    assert bool(batch.hist_mask[0, 0])
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(ValueError, match="NativeLRStep: a batch holds an id outside its table"):
        t.train_step(batch)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(int(g.count_nonzero()) == 0 for g in t.native_lr.rows.grads if g is not None)


def test_a_run_records_its_step(tiny_dataset, tmp_path):
    for setting, recorded in (("auto", "native_lr"), ("false", "autograd")):
        run = tmp_path / setting
        run.mkdir()
        t = Trainer(compose_train("+debug=fast", "device=cpu", *TABLE3_LR, "trainer.max_steps=20", f"trainer.native_step={setting}",
                                  f"paths.data_dir={tmp_path / 'data'}"), run)
        t.setup(tiny_dataset)
        metrics = t.fit()
        assert metrics["training_step"] == recorded
        assert json.loads((run / "metrics.json").read_text())["training_step"] == recorded
    base = Trainer(compose_train("+debug=fast", "device=cpu", "model=din", "trainer.max_steps=2", f"paths.data_dir={tmp_path / 'data'}"),
                   tmp_path / "din")
    base.setup(tiny_dataset)
    assert not base.native_tables and base.native_lr is None
    assert native_step.why_not(base.model, base.optimizer, base.reg, base.device, None) == ""


def test_a_copy_of_a_model_leaves_the_runs_buffers_behind(tiny_dataset, tmp_path):
    """``copy.deepcopy`` (export copies the model) and pickling leave ``native_rows`` behind: the copy
    computes its first-order part with torch ops, the same values."""
    import copy
    import io
    import pickle

    t = fast_trainer(tiny_dataset, tmp_path / "run", "+experiment=din_table3", "+row=din_table3/deepfm")
    part = native_step.first_order_parts(t.model)[0]
    assert part.native_rows is not None
    clone = copy.deepcopy(t.model)
    assert native_step.first_order_parts(clone)[0].native_rows is None
    pickled = pickle.loads(pickle.dumps(t.model))
    assert native_step.first_order_parts(pickled)[0].native_rows is None
    torch.save(t.model, io.BytesIO())
    _, batch = next(iter(t.train_batches))
    t.model.train()
    clone.train()
    torch.testing.assert_close(part(batch), native_step.first_order_parts(clone)[0](batch), rtol=1e-6, atol=1e-6)


def test_the_batchers_views_are_read_in_place(tiny_dataset, tmp_path):
    """The Batcher's batches of 32 are views into a group's wider gather: the kernels read their
    history rows at the group's stride, with no copy, and give what a contiguous copy gives."""
    from ctrbench.data.schema import Batch
    from dataclasses import fields

    t = fast_trainer(tiny_dataset, tmp_path / "run", *TABLE3_LR)
    batch = next(b for _, b in t.train_batches if b.hist_item.stride(0) > b.hist_item.shape[1])
    rows = t.native_lr.rows
    B, L, ld, ts = rows.prepare(batch)
    assert ld == batch.hist_item.stride(0) > L and ts[3].data_ptr() == batch.hist_item.data_ptr()
    copy = Batch(**{f.name: (None if getattr(batch, f.name) is None else getattr(batch, f.name).contiguous()) for f in fields(batch)})
    assert rows.prepare(copy)[2] == L
    part = t.model
    assert torch.equal(rows.forward(rows.prepare(batch), part.bias), rows.forward(rows.prepare(copy), part.bias))
