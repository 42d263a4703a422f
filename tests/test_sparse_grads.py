"""Row-wise embedding gradients (trainer.sparse_embeddings): the same clipping and the same SGD updates
as dense gradients, up to float rounding; used only where that holds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.train import sparse_grads

from conftest import assert_same_training, fast_trainer, first_steps


def _twin_models(sparse: bool):
    torch.manual_seed(0)
    emb = nn.Embedding(50, 4, padding_idx=0, sparse=sparse).double()
    lin = nn.Linear(4, 1).double()
    return emb, lin


@pytest.mark.parametrize("max_norm", [0.05, 100.0])  # clipping active, and not
def test_clip_grad_norm_of_sparse_gradients_equals_torchs_on_dense(max_norm):
    ids = torch.tensor([[3, 3, 0, 7], [7, 12, 3, 0]])  # repeated rows and padding
    grads, norms = {}, {}
    for sparse in (False, True):
        emb, lin = _twin_models(sparse)
        (lin(emb(ids)).sum() ** 2).backward()
        params = [*emb.parameters(), *lin.parameters()]
        clip = sparse_grads.clip_grad_norm_ if sparse else torch.nn.utils.clip_grad_norm_
        norms[sparse] = float(clip(params, max_norm))
        grads[sparse] = [p.grad.to_dense() for p in params]
    assert norms[True] == pytest.approx(norms[False], rel=1e-14)
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_sgd_with_row_gradients_moves_only_the_batchs_rows_as_dense_sgd_does():
    ids = torch.tensor([[3, 3, 5], [9, 0, 5]])
    weights = {}
    for sparse in (False, True):
        emb, lin = _twin_models(sparse)
        opt = torch.optim.SGD([*emb.parameters(), *lin.parameters()], lr=1.0)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            lin(emb(ids)).sum().backward()
            (sparse_grads.clip_grad_norm_ if sparse else torch.nn.utils.clip_grad_norm_)([*emb.parameters(), *lin.parameters()], 0.5)
            opt.step()
        weights[sparse] = emb.weight.detach().clone()
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-14, atol=1e-15)


def test_which_optimizers_get_row_gradients():
    p = [nn.Parameter(torch.zeros(2))]
    assert sparse_grads.resolve("auto", torch.optim.SGD(p, lr=1.0), False, False)
    assert not sparse_grads.resolve("false", torch.optim.SGD(p, lr=1.0), False, False)
    assert not sparse_grads.resolve("auto", torch.optim.SGD(p, lr=1.0, momentum=0.9), False, False)
    assert not sparse_grads.resolve("auto", torch.optim.SGD(p, lr=1.0, weight_decay=1e-4), False, False)
    assert not sparse_grads.resolve("auto", torch.optim.Adam(p), False, False)
    assert not sparse_grads.resolve("auto", torch.optim.SGD(p, lr=1.0), True, False)  # DDP
    assert not sparse_grads.resolve("auto", torch.optim.SGD(p, lr=1.0), False, True)  # compiled
    with pytest.raises(ConfigError, match="trainer.sparse_embeddings=true cannot be used here: .*plain SGD .* and Adam"):
        sparse_grads.resolve("true", torch.optim.SGD(p, lr=1.0, momentum=0.9), False, False)
    with pytest.raises(ConfigError, match="trainer.sparse_embeddings='rows' is invalid"):
        sparse_grads.resolve("rows", torch.optim.SGD(p, lr=1.0), False, False)


def test_small_tables_keep_dense_gradients():
    model = nn.ModuleDict({"big": nn.Embedding(sparse_grads.MIN_ROW_TABLE, 1), "small": nn.Embedding(100, 18)})
    assert sparse_grads.use_row_gradients(model) == 1
    assert model["big"].sparse and not model["small"].sparse


def test_table_setup_trains_the_same_with_row_and_dense_gradients(tiny_dataset, tmp_path, monkeypatch):
    """DIN under din_table3's setup (SGD lr 1, batch 32, clip 5), 30 steps each way: the same losses
    and weights up to float32 rounding (the tiny tables made row-wise too)."""
    monkeypatch.setattr(sparse_grads, "MIN_ROW_TABLE", 0)
    runs = {}
    for setting in ("false", "auto"):
        t = fast_trainer(tiny_dataset, tmp_path / setting, "+experiment=din_table3", "+row=din_table3/din",
                         f"trainer.sparse_embeddings={setting}", "trainer.pack_histories=false")
        assert t.sparse_embeddings == (setting == "auto")
        assert all(m.sparse == (setting == "auto") for m in t.model.modules() if isinstance(m, nn.Embedding))
        runs[setting] = first_steps(t)
    assert_same_training(runs["auto"], runs["false"])


@pytest.mark.parametrize("overrides, packs", [((), False), (("+experiment=din_table3",), True),
                                              (("trainer.pack_histories=true",), True),
                                              (("+experiment=din_table3", "trainer.pack_histories=false"), False)])
def test_which_runs_pack_their_histories(tiny_dataset, tmp_path, overrides, packs):
    """auto: uniformly shuffled batches (the table setups) pack; the default, length-bucketed, does not."""
    t = fast_trainer(tiny_dataset, tmp_path / "run", *overrides)
    assert t.pack_histories == packs
    assert all(m.pack_histories == packs for m in t.model.modules() if hasattr(m, "pack_histories"))


def test_pack_histories_bad_value():
    from ctrbench.train.build import resolve_pack_histories

    with pytest.raises(ConfigError, match="trainer.pack_histories='yes' is invalid"):
        resolve_pack_histories("yes", 0)
