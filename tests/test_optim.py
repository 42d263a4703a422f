"""LazyAdam (optim=lazy_adam): plain Adam on dense parameters, row-wise Adam on embedding tables."""

import math

import pytest
import torch
from torch import nn

from ctrbench.train.optim import LazyAdam


def test_dense_parameters_follow_torch_adam():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    oa, ob = torch.optim.Adam(a.parameters(), lr=0.01, weight_decay=0.1), LazyAdam(b.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(5):
        x = torch.randn(8, 5)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_dense_parameters_are_bit_identical_to_torch_adam(weight_decay):
    """The dense parameters of a model with a lazy table beside them (in the same parameter group):
    torch's own Adam, bit for bit, and the same state (moments and step) as ``torch.optim.Adam``
    keeps. The reference model's table gets a LazyAdam of its own, so both models see the same rows."""

    def model():
        return nn.ModuleDict({"emb": nn.Embedding(12, 4), "mlp": nn.Sequential(nn.Linear(4, 16), nn.PReLU(), nn.Linear(16, 1))})

    torch.manual_seed(0)
    a, b = model(), model()
    b.load_state_dict(a.state_dict())
    LazyAdam.mark_lazy(a)
    LazyAdam.mark_lazy(b)
    oa = torch.optim.Adam(a["mlp"].parameters(), lr=0.01, weight_decay=weight_decay)
    oa_emb = LazyAdam(a["emb"].parameters(), lr=0.01, weight_decay=weight_decay)
    ob = LazyAdam(b.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(30):
        ids, target = torch.randint(0, 12, (16,)), torch.randn(16, 1)
        for m, opts in ((a, (oa, oa_emb)), (b, (ob,))):
            for o in opts:
                o.zero_grad()
            (m["mlp"](m["emb"](ids)) - target).pow(2).mean().backward()
            for o in opts:
                o.step()
    for pa, pb in zip(a["mlp"].parameters(), b["mlp"].parameters()):
        assert torch.equal(pa, pb), (pa - pb).abs().max()
        sa, sb = oa.state[pa], ob.state[pb]
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
        assert float(sa["step"]) == float(sb["step"]) == 30
    assert torch.equal(a["emb"].weight, b["emb"].weight) and float(ob.state[b["emb"].weight]["step"]) == 30


def test_embedding_rows_outside_the_batch_do_not_move_and_rows_inside_follow_the_formula():
    torch.manual_seed(0)
    emb = nn.Embedding(6, 2, padding_idx=0)
    assert LazyAdam.mark_lazy(emb) == 1 and emb.sparse
    w0 = emb.weight.detach().clone()
    opt = LazyAdam(emb.parameters(), lr=0.1)
    ids = torch.tensor([2, 2, 4])
    emb(ids).sum().backward()  # gradient of row 2: 2 per element, row 4: 1
    assert emb.weight.grad.is_sparse
    opt.step()
    w = emb.weight.detach()
    for j in (0, 1, 3, 5):
        torch.testing.assert_close(w[j], w0[j])
    # first Adam step: m = (1 - b1) g, v = (1 - b2) g^2; update = lr * (m / bc1) / (sqrt(v / bc2) + eps) = lr * sign(g)
    for j in (2, 4):
        torch.testing.assert_close(w[j], w0[j] - 0.1 * torch.ones(2) / (1 + 1e-8 / 1.0), atol=1e-6, rtol=0)


def test_lazy_matches_torch_sparse_adam_over_several_steps():
    torch.manual_seed(1)
    a, b = nn.Embedding(10, 3, sparse=True), nn.Embedding(10, 3)
    b.load_state_dict(a.state_dict())
    LazyAdam.mark_lazy(b)
    oa, ob = torch.optim.SparseAdam(a.parameters(), lr=0.05), LazyAdam(b.parameters(), lr=0.05)
    for step in range(6):
        ids = torch.randint(0, 10, (7,))
        target = torch.randn(7, 3)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (m(ids) - target).pow(2).sum().backward()
            o.step()
    torch.testing.assert_close(a.weight, b.weight)


def test_a_dense_gradient_on_a_lazy_table_updates_only_its_nonzero_rows():
    emb = nn.Embedding(5, 2)
    LazyAdam.mark_lazy(emb)
    w0 = emb.weight.detach().clone()
    opt = LazyAdam(emb.parameters(), lr=0.1)
    emb.weight[torch.tensor([1, 3])].pow(2).sum().backward()  # a regularizer-style penalty: dense gradient
    assert not emb.weight.grad.is_sparse
    opt.step()
    moved = (emb.weight.detach() != w0).any(dim=1).tolist()
    assert moved == [False, True, False, True, False]
    assert math.isclose(opt.state[emb.weight]["step"].item(), 1.0)
