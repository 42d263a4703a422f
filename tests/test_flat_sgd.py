"""trainer.flat_sgd: plain SGD's zeroing, clipping and update over one flat buffer give torch's
clip_grad_norm_ + SGD updates up to float rounding, keep the parameters' identity and views through
load_state_dict, and are used only where they hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.train import flat_sgd, sparse_grads

from conftest import assert_same_training, fast_trainer, first_steps


class _Net(nn.Module):
    """An embedding table (row-wise gradients when ``sparse``), a small one (dense), an MLP, a PReLU
    slope and a parameter no step uses."""

    def __init__(self, sparse: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.items = nn.Embedding(40, 4, padding_idx=0, sparse=sparse)
        self.cats = nn.Embedding(6, 4)
        self.mlp = nn.Sequential(nn.Linear(8, 5), nn.PReLU(5), nn.Linear(5, 1))
        self.unused = nn.Parameter(torch.randn(3))
        self.double()

    def forward(self, ids, cats):
        return self.mlp(torch.cat([self.items(ids).sum(1), self.cats(cats)], 1)).squeeze(1)


def _batches(steps: int):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        yield torch.randint(0, 40, (8, 5), generator=g), torch.randint(0, 6, (8,), generator=g), torch.rand(8, generator=g).round().double()


@pytest.mark.parametrize("max_norm", [0.05, None, 1e3])  # clipping active, no clipping, never clipping
@pytest.mark.parametrize("sparse", [False, True])
def test_flat_steps_equal_torchs_clip_and_sgd(max_norm, sparse):
    """Six steps with a learning rate that changes between steps (as a scheduler changes it):
    the same losses, norms and weights as torch's per-parameter clip_grad_norm_ and SGD.step, in
    float64 to 1e-12; the unused parameter does not move."""
    results = {}
    for flat in (False, True):
        model = _Net(sparse)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        ids = {id(p) for p in model.parameters()}
        stepper = flat_sgd.FlatSGD(model, opt) if flat else None
        assert {id(p) for p in model.parameters()} == ids  # the same Parameter objects
        if flat:
            opt = stepper
            assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups[0]["params"]) == (2 if sparse else 1)
        params = list(model.parameters())
        losses, norms = [], []
        for i, (x, c, y) in enumerate(_batches(6)):
            opt.param_groups[0]["lr"] = 1.0 / (1 + i)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.binary_cross_entropy_with_logits(model(x, c), y)
            loss.backward()
            if max_norm is not None:
                clip = sparse_grads.clip_grad_norm_ if sparse else torch.nn.utils.clip_grad_norm_
                norms.append(float(opt.clip_grad_norm_(max_norm) if flat else clip(params, max_norm)))
            opt.step()
            losses.append(float(loss.detach()))
        results[flat] = losses, norms, {k: v.clone() for k, v in model.state_dict().items()}
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-12)
    assert results[True][1] == pytest.approx(results[False][1], rel=1e-12)
    for k, v in results[False][2].items():
        torch.testing.assert_close(results[True][2][k], v, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results[True][2]["unused"], _Net(sparse).unused)


def test_parameters_and_gradients_are_views_into_the_buffers_and_stay_so_after_load_state_dict():
    model = _Net(sparse=True)
    saved = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    stepper = flat_sgd.FlatSGD(model, torch.optim.SGD(model.parameters(), lr=0.5))
    weights, = stepper.flat
    grads = weights.grad
    assert stepper.tables == [model.items.weight]
    assert stepper.param_groups[0]["params"] == [weights, model.items.weight]
    dense = [p for p in model.parameters() if p is not model.items.weight]
    assert weights.numel() == sum(p.numel() for p in dense)
    for p in dense:
        assert p.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == grads.untyped_storage().data_ptr()
    assert model.items.weight.untyped_storage().data_ptr() != weights.untyped_storage().data_ptr()
    model.load_state_dict(saved)  # copies into the views (as resuming a run does)
    assert model.mlp[0].weight.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr()
    torch.testing.assert_close(model.mlp[0].weight, saved["mlp.0.weight"])
    x, c, _ = next(_batches(1))
    stepper.zero_grad()
    model(x, c).sum().backward()
    g = model.mlp[0].weight.grad.clone()
    assert model.mlp[0].weight.grad.untyped_storage().data_ptr() == grads.untyped_storage().data_ptr()
    stepper.step()
    torch.testing.assert_close(model.mlp[0].weight, saved["mlp.0.weight"] - 0.5 * g)
    stepper.zero_grad()
    assert not grads.any() and model.items.weight.grad is None


def test_large_dense_tables_and_row_wise_tables_keep_their_own_gradients(monkeypatch):
    """A table of MIN_OWN_TABLE weights or more (its backward builds a whole new gradient buffer)
    and a row-wise table stay outside the flat buffer; smaller dense tables go in."""
    monkeypatch.setattr(flat_sgd, "MIN_OWN_TABLE", 40 * 4)
    model = _Net(sparse=False)
    stepper = flat_sgd.FlatSGD(model, torch.optim.SGD(model.parameters(), lr=1.0))
    assert stepper.tables == [model.items.weight]  # 40 x 4 = MIN_OWN_TABLE
    weights, = stepper.flat
    assert model.cats.weight.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr()
    x, c, _ = next(_batches(1))
    stepper.zero_grad()
    model(x, c).sum().backward()
    assert model.items.weight.grad.untyped_storage().data_ptr() != weights.grad.untyped_storage().data_ptr()
    dense = [p.grad.clone() for p in model.parameters()]
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in dense]))
    assert float(stepper.clip_grad_norm_(0.1)) == pytest.approx(float(expected), rel=1e-12)
    coef = 0.1 / (float(expected) + 1e-6)
    assert stepper.clip_coef == pytest.approx(coef, rel=1e-12)
    for p, g in zip(model.parameters(), dense):  # the factor goes into the step, not into the gradients
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    before = [p.detach().clone() for p in model.parameters()]
    stepper.step()
    for p, b, g in zip(model.parameters(), before, dense):
        torch.testing.assert_close(p.detach(), b - coef * g, rtol=1e-12, atol=1e-15)
    assert stepper.clip_coef == 1.0  # the next step is unclipped unless clip_grad_norm_ says otherwise
    stepper.zero_grad()
    assert model.items.weight.grad is None


def test_which_optimizers_step_over_flat_buffers():
    p = [nn.Parameter(torch.zeros(2))]
    assert flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0), False, False, False)
    assert not flat_sgd.resolve("false", torch.optim.SGD(p, lr=1.0), False, False, False)
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0, momentum=0.9), False, False, False)
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0, weight_decay=1e-4), False, False, False)
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0, maximize=True), False, False, False)
    assert not flat_sgd.resolve("auto", torch.optim.Adam(p), False, False, False)
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0), True, False, False)  # DDP
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0), False, True, False)  # compiled
    assert not flat_sgd.resolve("auto", torch.optim.SGD(p, lr=1.0), False, False, True)  # fp16 loss scaling
    with pytest.raises(ConfigError, match=r"trainer.flat_sgd='yes' is invalid: expected auto or false"):
        flat_sgd.resolve("yes", torch.optim.SGD(p, lr=1.0), False, False, False)


@pytest.mark.parametrize("row", ["din_table3/din", "din_table3/wdl"])
def test_table_setup_trains_the_same_with_flat_and_torchs_steps(tiny_dataset, tmp_path, row):
    """The din_table3 setup (SGD lr 1, batch 32, clip 5), 30 steps each way: the same losses and
    weights up to float32 rounding; the run records which step it took."""
    runs = {}
    for setting in ("false", "auto"):
        t = fast_trainer(tiny_dataset, tmp_path / setting, "+experiment=din_table3", f"+row={row}", f"trainer.flat_sgd={setting}")
        assert (t.flat is not None) == (setting == "auto")
        runs[setting] = first_steps(t)
    assert_same_training(runs["auto"], runs["false"])


def test_adam_runs_keep_torchs_step(tiny_dataset, tmp_path):
    assert fast_trainer(tiny_dataset, tmp_path / "run").flat is None


def test_a_flat_run_records_its_step_and_saves_plain_weights(tiny_dataset, tmp_path):
    """A din_table3 run end to end: metrics.json says optimizer_step flat, and best.pt (written from
    views into the flat buffer) holds each weight at its own shape and value, loadable into a fresh
    model."""
    import json

    from ctrbench.train import checkpoint
    from ctrbench.train.build import build_model

    t = fast_trainer(tiny_dataset, tmp_path / "run", "+experiment=din_table3", "+row=din_table3/wdl", "trainer.max_steps=30",
                     "trainer.eval_every=30", "trainer.selection=last")
    metrics = t.fit()
    assert metrics["optimizer_step"] == "flat"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["optimizer_step"] == "flat"
    saved = checkpoint.load(tmp_path / "run" / "best.pt")["model"]
    fresh = build_model(t.cfg.model, t.cfg.act, tiny_dataset.vocab)
    fresh.load_state_dict(saved)
    for k, v in t.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
