"""MBA (DIN paper Eqs. 4-7), L2, DiFacto, feature dropout and the filter, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctrbench.data.schema import Batch, ProcessedDataset, Samples, Streams, Vocab
from ctrbench.errors import ConfigError
from ctrbench.nn.layers import field_embedding
from ctrbench.train.frequencies import history_window_counts, id_frequencies
from ctrbench.train.regularizers import L2, MBA, DiFacto, FeatureDropout, Filter


def hand_dataset():
    # user 1 stream: items 3, 4, 3 ; user 2 stream: items 5, 6
    offsets = np.array([0, 0, 3, 5])
    item = np.array([3, 4, 3, 5, 6])
    item_cate = np.array([0, 1, 1, 1, 2, 2, 2])
    streams = Streams(offsets, item, item_cate[item], np.arange(5))
    train = Samples(
        user=np.array([1, 1, 2]), item=np.array([4, 6, 6]), cate=item_cate[[4, 6, 6]],
        label=np.array([1, 0, 1], np.float32), hist_end=np.array([1, 3, 1]),
    )
    empty = train.take(np.arange(0))
    return ProcessedDataset("hand", Vocab(3, 7, 3), streams, item_cate, {"train": train, "valid": empty, "test": empty})


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.item = field_embedding(7, 2, "item")
        self.cate = field_embedding(3, 2, "cate")
        with torch.no_grad():
            self.item.weight.copy_(torch.arange(14, dtype=torch.float32).reshape(7, 2) / 10)
            self.cate.weight.copy_(torch.ones(3, 2))


def hand_batch():
    # targets 4 and 6; histories [3] and [3, 4, 3]
    return Batch(
        user=torch.tensor([1, 1]), item=torch.tensor([4, 6]), cate=torch.tensor([1, 2]), label=torch.tensor([1.0, 0.0]),
        hist_item=torch.tensor([[3, 0, 0], [3, 4, 3]]), hist_cate=torch.tensor([[1, 0, 0], [1, 1, 1]]),
        hist_mask=torch.tensor([[True, False, False], [True, True, True]]), hist_len=torch.tensor([1, 3]),
    )


def test_frequencies_count_targets_and_history_windows():
    ds = hand_dataset()
    # sample (u1, h=1): history [3]; (u1, h=3): [3, 4, 3]; (u2, h=1): [5]
    assert history_window_counts(ds, max_len=10).tolist() == [2, 1, 1, 1, 0]
    assert history_window_counts(ds, max_len=2).tolist() == [1, 1, 1, 1, 0]  # truncation to the last 2
    n = id_frequencies(ds, max_len=10)
    # item 3: 3 history occurrences; 4: target once + history once; 5: history once; 6: target twice
    assert n["item"].tolist() == [0, 0, 0, 3, 2, 1, 2]
    assert n["user"].tolist() == [0, 2, 1]


def test_frequencies_count_windowed_histories():
    ds = hand_dataset()
    # hist_start: (u1, 1..3) is history [4, 3]; (u1, 0..1) is [3]; (u2, 1..1) is empty
    ds.splits["train"].hist_start = np.array([0, 1, 1])
    assert history_window_counts(ds, max_len=10).tolist() == [1, 1, 1, 0, 0]
    assert history_window_counts(ds, max_len=1).tolist() == [1, 0, 1, 0, 0]  # the last 1 of [4, 3] is 3


def test_mba_gradient_is_lambda_w_over_n_for_rows_in_the_batch_only():
    ds, model = hand_dataset(), Tiny()
    reg = MBA(lam=0.01)
    reg.setup(model, ds, max_len=10)
    reg.penalty(model, hand_batch()).backward()
    g = model.item.weight.grad
    n = {3: 3, 4: 2, 6: 2}
    w = model.item.weight.detach()
    for j in range(7):
        if j in n:
            torch.testing.assert_close(g[j], 0.01 * w[j] / n[j])
        else:
            assert torch.count_nonzero(g[j]) == 0  # not in the batch: exactly no gradient
    # categories: ids 1, 2 in the batch (n_cate counted the same way)
    ncate = id_frequencies(ds, 10)["cate"]
    gc = model.cate.weight.grad
    for j in (1, 2):
        torch.testing.assert_close(gc[j], 0.01 * model.cate.weight.detach()[j] / ncate[j])
    assert torch.count_nonzero(gc[0]) == 0


def test_l2_penalty_and_gradient():
    model = Tiny()
    reg = L2(lam=0.1)
    reg.setup(model, hand_dataset(), 10)
    p = reg.penalty(model, hand_batch())
    expected = 0.1 * (model.item.weight.pow(2).sum() + model.cate.weight.pow(2).sum())
    torch.testing.assert_close(p, expected)
    p.backward()
    torch.testing.assert_close(model.item.weight.grad, 0.2 * model.item.weight.detach())


def test_difacto_gradient_counts_occurrences():
    model = Tiny()
    reg = DiFacto(lam=0.01)
    reg.setup(model, hand_dataset(), 10)
    reg.penalty(model, hand_batch()).backward()
    # item occurrences in the batch: 3 x3, 4 x2, 6 x1; batch size 2
    w, g = model.item.weight.detach(), model.item.weight.grad
    for j, c in {3: 3, 4: 2, 6: 1}.items():
        torch.testing.assert_close(g[j], 0.01 * c * w[j] / 2)
    assert torch.count_nonzero(g[[0, 1, 2, 5]]) == 0


def test_feature_dropout_train_only_and_compacts():
    torch.manual_seed(0)
    reg = FeatureDropout(rate=0.5)
    b = hand_batch()
    assert reg.transform(b, training=False) is b
    out = reg.transform(b, training=True)
    for row in range(2):
        kept = out.hist_item[row][out.hist_mask[row]].tolist()
        original = b.hist_item[row][b.hist_mask[row]].tolist()
        assert out.hist_len[row] == len(kept) and (out.hist_item[row][~out.hist_mask[row]] == 0).all()
        # kept ids are a subsequence of the original history, in order
        it = iter(original)
        assert all(any(k == o for o in it) for k in kept)
    rates = []
    big = Batch(torch.zeros(1000, dtype=torch.long), torch.zeros(1000, dtype=torch.long), torch.zeros(1000, dtype=torch.long),
                torch.zeros(1000), torch.ones(1000, 20, dtype=torch.long), torch.ones(1000, 20, dtype=torch.long),
                torch.ones(1000, 20, dtype=torch.bool), torch.full((1000,), 20))
    rates.append(1 - reg.transform(big, True).hist_mask.float().mean().item())
    assert abs(rates[0] - 0.5) < 0.02
    with pytest.raises(ConfigError, match="reg.rate"):
        FeatureDropout(rate=1.5)


def test_filter_maps_rare_items_to_zero_everywhere():
    ds = hand_dataset()
    reg = Filter(top_k=2)
    reg.setup(Tiny(), ds, 10)  # frequencies: item 3 -> 3, 4 -> 2, 6 -> 2 (tie: lower id wins), 5 -> 1
    out = reg.transform(hand_batch(), training=False)
    assert out.item.tolist() == [4, 0]
    assert out.hist_item.tolist() == [[3, 0, 0], [3, 4, 3]]
    assert out.hist_mask.tolist() == hand_batch().hist_mask.tolist()
    assert reg.transform(hand_batch(), training=True).item.tolist() == [4, 0]
    reg2 = Filter(top_k=None, min_count=2)
    reg2.setup(Tiny(), ds, 10)
    assert reg2.transform(hand_batch(), False).item.tolist() == [4, 6] and reg2.kept_items == 3
    with pytest.raises(ConfigError, match="reg.top_k"):
        Filter(top_k=0)
