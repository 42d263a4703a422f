"""ctrbench.nn.embedding.Embedding: torch's nn.Embedding with an index_add_ backward on CPU; the same
values and bit-identical gradients (the same sums in the same order), torch's path elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.nn.embedding import Embedding


def _twins(rows: int, dim: int, padding_idx, dtype=torch.float32):
    torch.manual_seed(0)
    ours = Embedding(rows, dim, padding_idx=padding_idx).to(dtype)
    theirs = nn.Embedding(rows, dim, padding_idx=padding_idx).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("rows, dim, shape, padding_idx", [
    (50, 1, (7,), 0), (50, 4, (3, 9), 0), (50, 4, (3, 0), 0), (802, 18, (32, 40), 0), (20, 3, (2, 3, 5), None), (20, 3, (2, 5), -1),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_are_torchs_bit_for_bit(rows, dim, shape, padding_idx, dtype):
    ours, theirs = _twins(rows, dim, padding_idx, dtype)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, rows, shape, generator=g)
    if ids.numel():
        ids.view(-1)[::4] = ids.view(-1)[-1]  # repeated rows
    if padding_idx is not None:
        ids.view(-1)[::5] = ours.padding_idx  # and padding
    upstream = torch.randn(*shape, dim, generator=g, dtype=dtype)
    out = {}
    for name, table in (("ours", ours), ("theirs", theirs)):
        y = table(ids)
        (y * upstream).sum().backward()
        out[name] = (y.detach(), table.weight.grad)
    assert torch.equal(out["ours"][0], out["theirs"][0])
    assert torch.equal(out["ours"][1], out["theirs"][1])  # bit-identical, the padding row's zero included
    if padding_idx is not None:
        assert not out["ours"][1][ours.padding_idx].any()


def test_takes_the_index_add_path_only_where_it_is_torchs_gradient():
    """Under autograd on CPU with a dense gradient: the Function; without grad, sparse, scale by
    frequency: torch's own backward."""
    ids = torch.tensor([[1, 2, 2], [0, 3, 1]])
    assert Embedding(5, 2, padding_idx=0)(ids).grad_fn.name().endswith("_LookupBackward")
    with torch.no_grad():
        assert Embedding(5, 2)(ids).grad_fn is None
    assert Embedding(5, 2, sparse=True)(ids).grad_fn.name() == "EmbeddingBackward0"
    assert Embedding(5, 2, scale_grad_by_freq=True)(ids).grad_fn.name() == "EmbeddingBackward0"


def test_an_id_out_of_range_is_an_index_error():
    with pytest.raises(IndexError):
        Embedding(5, 2)(torch.tensor([5]))
