"""Adam on row-wise embedding gradients (train/row_adam.py, nn/csrc/adam_rows.c): torch's fused Adam
update of every row, to the bit where torch's CPU vectors are AVX2 (the order of operations was
matched there), from a gradient that holds only the batch's rows; asked for with
trainer.sparse_embeddings=true (+experiment=dien_table2 and dien_table4 do)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ctrbench.errors import ConfigError
from ctrbench.nn import native
from ctrbench.train import row_adam, sparse_grads

from conftest import assert_same_training, fast_trainer, first_steps

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C compiler for the native kernels")

# where the order of operations was checked against torch's fused kernel (this project's machines)
BITWISE = torch.backends.cpu.get_cpu_capability() == "AVX2"


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    if BITWISE:
        assert torch.equal(a, b), (a - b).abs().max().item()
    else:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _twins(rows: int, dim: int, dtype, **adam):
    torch.manual_seed(0)
    emb, lin = nn.Embedding(rows, dim, padding_idx=0).to(dtype), nn.Linear(dim, 1).to(dtype)
    emb2, lin2 = copy.deepcopy(emb), copy.deepcopy(lin)
    emb2.sparse = True
    dense = torch.optim.Adam([*emb.parameters(), *lin.parameters()], fused=True, **adam)
    rows_ = row_adam.RowAdam(torch.optim.Adam([*emb2.parameters(), *lin2.parameters()], fused=True, **adam))
    return (emb, lin, dense), (emb2, lin2, rows_)


def _train(model, steps: int, rows: int, seed: int = 1) -> None:
    emb, lin, opt = model
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, rows, (16, 9), generator=g)  # repeated rows, padding (0), untouched rows
        y = torch.rand(16, 9, 1, generator=g, dtype=emb.weight.dtype)
        opt.zero_grad(set_to_none=True)
        ((lin(emb(ids)) - y) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("rows, dim", [(802, 18), (301, 7), (13, 3)])  # 14,436 / 2,107 / 39 weights: with and without a scalar tail
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("adam", [{"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.01}, {"lr": 0.003, "betas": (0.3, 0.99), "eps": 1e-6}])
def test_every_row_moves_as_torchs_dense_adam_moves_it(rows, dim, dtype, adam):
    dense, row_wise = _twins(rows, dim, dtype, **adam)
    _train(dense, 25, rows)
    _train(row_wise, 25, rows)
    _assert_same(row_wise[0].weight, dense[0].weight)
    _assert_same(row_wise[1].weight, dense[1].weight)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        _assert_same(row_wise[2].state[row_wise[0].weight][key], dense[2].state[dense[0].weight][key])
    assert row_wise[0].weight.grad.is_sparse  # the table's gradient held only the batch's rows


def test_rows_without_gradient_still_move():
    """Adam, not a lazy variant: a row no batch used after the first step keeps moving by its momentum."""
    _, (emb, lin, opt) = _twins(20, 4, torch.float64, lr=0.1)
    never_used = emb.weight[3].detach().clone()
    for ids in (torch.tensor([[5]]), torch.tensor([[7]]), torch.tensor([[7]])):
        before = emb.weight[5].clone()
        opt.zero_grad()
        lin(emb(ids)).sum().backward()
        opt.step()
        assert not torch.equal(emb.weight[5], before)
    assert torch.equal(emb.weight[3], never_used)  # never used: m = v = 0, no move


def test_state_dict_is_torchs_and_resumes_either_way():
    dense, row_wise = _twins(50, 4, torch.float32, lr=0.01)
    _train(dense, 5, 50)
    _train(row_wise, 5, 50)
    state = row_wise[2].state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    # a RowAdam checkpoint resumed by torch's Adam, and the other way round, go on as before
    swapped_dense = (copy.deepcopy(row_wise[0]), copy.deepcopy(row_wise[1]), None)
    swapped_dense[0].sparse = False
    opt = torch.optim.Adam([*swapped_dense[0].parameters(), *swapped_dense[1].parameters()], lr=0.01, fused=True)
    opt.load_state_dict(copy.deepcopy(state))  # load_state_dict keeps the tensors it is given
    swapped_rows = (copy.deepcopy(dense[0]), copy.deepcopy(dense[1]), None)
    swapped_rows[0].sparse = True
    opt2 = row_adam.RowAdam(torch.optim.Adam([*swapped_rows[0].parameters(), *swapped_rows[1].parameters()], lr=0.01, fused=True))
    opt2.load_state_dict(copy.deepcopy(dense[2].state_dict()))
    _train(dense, 5, 50, seed=2)
    _train(row_wise, 5, 50, seed=2)
    _train((*swapped_dense[:2], opt), 5, 50, seed=2)
    _train((*swapped_rows[:2], opt2), 5, 50, seed=2)
    _assert_same(swapped_dense[0].weight, row_wise[0].weight)
    _assert_same(swapped_rows[0].weight, dense[0].weight)


def test_a_dense_gradient_on_a_table_takes_torchs_step():
    """A regularizer's penalty on a table makes its gradient dense: torch's Adam steps it, as before."""
    dense, (emb, lin, opt) = _twins(30, 3, torch.float32, lr=0.01)
    for model in (dense, (emb, lin, opt)):
        e, l_, o = model
        o.zero_grad()
        (l_(e(torch.tensor([[1, 2]]))).sum() + e.weight.pow(2).sum()).backward()
        o.step()
    assert not emb.weight.grad.is_sparse
    _assert_same(emb.weight, dense[0].weight)


def test_rows_outside_the_table_are_refused_and_change_nothing():
    _, (emb, lin, opt) = _twins(10, 2, torch.float32, lr=0.01)
    before = emb.weight.detach().clone()
    emb.weight.grad = torch.sparse_coo_tensor(torch.tensor([[3, 10]]), torch.ones(2, 2), (10, 2), check_invariants=False)
    with pytest.raises(ValueError, match=r"the gradient of a \(10, 2\) table has rows outside it"):
        opt.step()
    assert torch.equal(emb.weight, before)
    assert float(opt.state[emb.weight]["step"]) == 0  # the state as it was, too


def test_which_adams_get_row_gradients(monkeypatch):
    p = [nn.Parameter(torch.zeros(2))]
    assert not sparse_grads.resolve("auto", torch.optim.Adam(p), False, False)  # only on request: the default run keeps its numbers
    assert sparse_grads.resolve("true", torch.optim.Adam(p), False, False)
    assert not sparse_grads.resolve("false", torch.optim.Adam(p), False, False)
    for kwargs, what in (({"amsgrad": True}, "amsgrad"), ({"maximize": True}, "maximize")):
        with pytest.raises(ConfigError, match=f"trainer.sparse_embeddings=true cannot be used here: Adam's {what}=true has no row-wise step"):
            sparse_grads.resolve("true", torch.optim.Adam(p, **kwargs), False, False)
    with pytest.raises(ConfigError, match="a CPU kernel"):
        sparse_grads.resolve("true", torch.optim.Adam(p), False, False, torch.device("cuda"))
    with pytest.raises(ConfigError, match="DDP"):
        sparse_grads.resolve("true", torch.optim.Adam(p), True, False)
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "unavailable_reason", lambda: "no C compiler found ($CC, cc, gcc or clang)")
    with pytest.raises(ConfigError, match=r"needs the native kernels, unavailable: no C compiler found.*; use auto or false"):
        sparse_grads.resolve("true", torch.optim.Adam(p), False, False)


def test_dien_trains_to_the_bit_with_row_and_dense_gradients(tiny_dataset, tmp_path):
    """DIEN (one lookup per table a step) under Adam, 30 steps each way: the same losses and weights
    (bit for bit on AVX2), every table row-wise in the RowAdam run."""
    runs = {}
    for setting in ("false", "true"):
        t = fast_trainer(tiny_dataset, tmp_path / setting, "model=dien", f"trainer.sparse_embeddings={setting}")
        assert isinstance(t.optimizer, row_adam.RowAdam) == (setting == "true")
        assert all(m.sparse == (setting == "true") for m in t.model.modules() if isinstance(m, nn.Embedding))
        runs[setting] = first_steps(t)
    if not BITWISE:
        assert_same_training(runs["true"], runs["false"])
        return
    assert runs["true"][0] == runs["false"][0]
    for k, v in runs["false"][1].items():
        assert torch.equal(runs["true"][1][k], v), k


@pytest.mark.parametrize("table, row", [("dien_table2", "dien"), ("dien_table4", "augru")])
def test_the_dien_tables_ask_for_it(tiny_dataset, tmp_path, table, row):
    t = fast_trainer(tiny_dataset, tmp_path / "run", f"+experiment={table}", f"+row={table}/{row}")
    assert t.sparse_embeddings and isinstance(t.optimizer, row_adam.RowAdam)
