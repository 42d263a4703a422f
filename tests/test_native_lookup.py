"""DIEN's behaviour embeddings in native calls (nn/csrc/pair_lookup.c, nn/native_lookup.py): the
outputs and the row-wise gradients of torch's ops (index_selects, concatenation, split, the
history's mask, sparse embedding backwards), bit for bit and in the same order, so that RowAdam's
step is unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.data.schema import Vocab
from ctrbench.nn import native, native_lookup
from ctrbench.nn.layers import ItemEmbeddings
from ctrbench.nn.native_lookup import NativePairLookup

needs_library = pytest.mark.skipif(native.library() is None, reason=f"no native library here: {native.unavailable_reason()}")


class _Batch:
    """The fields target_history_negatives reads, as the Batcher lays them out: histories post-padded
    with id 0, some real positions of unknown id 0 too, negatives 0 at the padding."""

    def __init__(self, B=6, T=5, n_items=30, n_cates=7, seed=0):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([5, 0, 3, 1, 5, 2][:B])
        self.hist_mask = torch.arange(T)[None, :] < lengths[:, None]
        self.hist_len = lengths
        self.item = torch.randint(1, n_items, (B,), generator=g)
        self.cate = torch.randint(0, n_cates, (B,), generator=g)  # a target category of id 0: left out of the gradient
        self.hist_item = torch.randint(0, n_items, (B, T), generator=g) * self.hist_mask
        self.hist_cate = torch.randint(0, n_cates, (B, T), generator=g) * self.hist_mask
        self.neg_hist_item = torch.randint(1, n_items, (B, T), generator=g) * self.hist_mask
        self.neg_hist_cate = torch.randint(1, n_cates, (B, T), generator=g) * self.hist_mask


def _embeddings(dtype, sparse=True, n_items=30, n_cates=7):
    torch.manual_seed(0)
    emb = ItemEmbeddings(Vocab(n_users=5, n_items=n_items, n_cates=n_cates), 4).to(dtype)
    for t in emb.tables():
        t.sparse = sparse
    return emb


def _run(emb, batch, native_):
    for t in emb.tables():
        t.weight.grad = None
    outs = emb.target_history_negatives(batch, native=native_)
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    return outs, emb.item.weight.grad, emb.cate.weight.grad


@needs_library
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_and_gradient_rows_are_torchs_bit_for_bit(dtype):
    emb, batch = _embeddings(dtype), _Batch()
    with torch.no_grad():  # a padding row that is not zero: the history's mask still zeroes the padding
        emb.item.weight[0] = 1.0
    assert native_lookup.usable(emb.item, emb.cate)
    (o1, gi1, gc1), (o2, gi2, gc2) = _run(emb, batch, False), _run(emb, batch, True)
    for a, b in zip(o1, o2):
        assert a.shape == b.shape and torch.equal(a, b)
    for a, b in ((gi1, gi2), (gc1, gc2)):
        assert a.is_sparse and b.is_sparse and a.shape == b.shape
        assert torch.equal(a._indices(), b._indices()) and torch.equal(a._values(), b._values())
        assert 0 not in b._indices()  # the padding row never gets a gradient row


@needs_library
def test_an_unused_output_has_a_zero_gradient_and_frozen_tables_none():
    emb, batch = _embeddings(torch.float32), _Batch()
    for native_ in (False, True):
        for t in emb.tables():
            t.weight.grad = None
        e_a, e_h, e_neg = emb.target_history_negatives(batch, native=native_)
        e_a.sum().backward()  # the history and the negatives take no part
        grads = [t.weight.grad.coalesce().to_dense() for t in emb.tables()]
        if native_:
            assert all(torch.equal(a, b) for a, b in zip(grads, ref))
        ref = grads
    emb.item.weight.requires_grad_(False)
    for t in emb.tables():
        t.weight.grad = None
    e_a, e_h, e_neg = emb.target_history_negatives(batch, native=True)
    (e_a.sum() + e_h.sum()).backward()
    assert emb.item.weight.grad is None and emb.cate.weight.grad is not None


@needs_library
def test_an_id_outside_its_table_is_an_index_error():
    emb, batch = _embeddings(torch.float32), _Batch()
    batch.neg_hist_item[0, 0] = 30
    with pytest.raises(IndexError, match="item id outside"):
        emb.target_history_negatives(batch, native=True)


def test_where_it_does_not_apply_the_torch_ops_run(monkeypatch):
    monkeypatch.setattr(NativePairLookup, "apply", lambda *a: (_ for _ in ()).throw(AssertionError("native")))
    batch = _Batch()
    _run(_embeddings(torch.float32, sparse=False), batch, True)  # dense gradients
    _run(_embeddings(torch.float32), batch, False)  # not asked
    emb = _embeddings(torch.float32)
    emb.cate.padding_idx = None
    _run(emb, batch, True)  # another padding row
    assert not native_lookup.usable(None, emb.cate)
    half = _embeddings(torch.float32)
    half.item.to(torch.float16)
    assert not native_lookup.usable(half.item, half.cate)
    if native.library() is not None:
        with pytest.raises(AssertionError, match="native"):
            _run(_embeddings(torch.float32), batch, True)


@needs_library
def test_a_dien_run_with_row_adam_steps_the_same_with_the_native_lookup(tiny_dataset, tmp_path, monkeypatch):
    """The dien_table2 setup (RowAdam on row-wise gradients), 20 steps with the native recurrences,
    once with the native lookup and once with torch's: the same losses and weights, to the bit."""
    from conftest import fast_trainer, first_steps

    runs = []
    for use in (True, False):
        if not use:
            monkeypatch.setattr(native_lookup, "usable", lambda *a: False)
        t = fast_trainer(tiny_dataset, tmp_path / str(use), "+experiment=dien_table2", "+row=dien_table2/dien",
                         "trainer.native_recurrence=true")
        runs.append(first_steps(t, 20))
    (l1, w1), (l2, w2) = runs
    assert l1 == l2
    assert all(torch.equal(w1[k], w2[k]) for k in w2)
