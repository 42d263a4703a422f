"""The Batcher: padding to the batch's longest history, masks, max_len truncation, bucketing."""

import numpy as np
import pytest
import torch

from ctrbench.data.batches import Batcher, position_bounds
from ctrbench.data.schema import ProcessedDataset, Samples, Streams, Vocab
from ctrbench.errors import ConfigError


def hand_dataset():
    # user 1: items 11..15; user 2: items 21..23
    offsets = np.array([0, 0, 5, 8])
    item = np.array([11, 12, 13, 14, 15, 21, 22, 23])
    streams = Streams(offsets, item, item // 10, np.arange(8))
    s = Samples(
        user=np.array([1, 2, 1, 2]), item=np.array([15, 23, 14, 22]), cate=np.array([1, 2, 1, 2]),
        label=np.array([1, 1, 0, 0], np.float32), hist_end=np.array([4, 2, 3, 1]),
    )
    item_cate = np.arange(30) // 10
    return ProcessedDataset("hand", Vocab(3, 30, 3), streams, item_cate, {"train": s, "valid": s.take(np.arange(0)), "test": s})


def test_histories_padding_and_mask():
    b = Batcher(hand_dataset(), "train", batch_size=4, max_len=10)
    batch = b.gather(torch.arange(4))
    assert batch.hist_item.tolist() == [[11, 12, 13, 14], [21, 22, 0, 0], [11, 12, 13, 0], [21, 0, 0, 0]]
    assert batch.hist_cate.tolist() == [[1, 1, 1, 1], [2, 2, 0, 0], [1, 1, 1, 0], [2, 0, 0, 0]]
    assert batch.hist_mask.tolist() == [[True] * 4, [True, True, False, False], [True] * 3 + [False], [True] + [False] * 3]
    assert batch.hist_len.tolist() == [4, 2, 3, 1]
    # padded only to the longest history of *this* batch
    assert b.gather(torch.tensor([1, 3])).hist_item.shape == (2, 2)


def test_gather_each_equals_one_gather_per_batch():
    ds = hand_dataset()
    s = ds.splits["train"]
    # a fifth sample without history: a batch of it alone is padded to width 1, as gather pads it
    ds.splits["test"] = Samples(
        user=np.append(s.user, 1), item=np.append(s.item, 12), cate=np.append(s.cate, 1),
        label=np.append(s.label, np.float32(1)), hist_end=np.append(s.hist_end, 0),
    )
    b = Batcher(ds, "test", batch_size=2, max_len=3)
    idxs = [torch.tensor([0, 2]), torch.tensor([4]), torch.tensor([3, 1]), torch.tensor([2])]
    together = b.gather_each(idxs)
    assert len(together) == len(idxs)
    for idx, got in zip(idxs, together):
        want = b.gather(idx)
        for name in ("user", "item", "cate", "label", "hist_item", "hist_cate", "hist_mask", "hist_len"):
            assert torch.equal(getattr(got, name), getattr(want, name)), (idx.tolist(), name)
        assert got.neg_hist_item is None
    assert together[1].hist_item.shape == (1, 1) and together[0].hist_item.shape == (2, 3)


def test_position_bounds_hand_computed():
    # sorted lengths 0 (counts as 1), 1, 2, 2, 3, 3, 3, 5; at most 3 rows and 6 positions per batch
    lens = torch.tensor([0, 1, 2, 2, 3, 3, 3, 5])
    # [0,1,2]: 3 rows x 2 = 6; [2,3]: 2 x 3 = 6 (a third row would make 3 x 3 = 9); [3,3]: 6; [5]: 5
    assert position_bounds(lens, 3, 6) == [(0, 3), (3, 5), (5, 7), (7, 8)]
    assert position_bounds(lens, 8, 100) == [(0, 8)]  # only the row cap
    assert position_bounds(lens, 2, 100) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert position_bounds(lens, 3, 4) == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7), (7, 8)]  # a row over budget stands alone
    assert position_bounds(torch.tensor([], dtype=torch.int64), 3, 6) == []


def test_evaluation_batches_under_a_position_budget():
    ds = hand_dataset()  # test histories of lengths 4, 2, 3, 1
    b = Batcher(ds, "test", batch_size=3, max_len=10, max_positions=6)
    got = [idx.tolist() for idx in b.batches()]
    # sorted by length: 3 (len 1), 1 (len 2), 2 (len 3), 0 (len 4): [3, 1] (2 x 2), [2] (3), [0] (4)
    assert got == [[3, 1], [2], [0]] and len(b) == 3
    assert [idx.tolist() for idx in b.batches(start=1)] == [[2], [0]]
    for idx in b.batches():
        assert len(idx) * int(b.hist_len[idx].max()) <= 6
    assert [idx.tolist() for idx in Batcher(ds, "test", batch_size=3, max_len=10).batches()] == [[3, 1, 2], [0]]


def test_max_len_keeps_the_most_recent_behaviours():
    b = Batcher(hand_dataset(), "train", batch_size=4, max_len=2)
    batch = b.gather(torch.arange(4))
    assert batch.hist_item.tolist() == [[13, 14], [21, 22], [12, 13], [21, 0]]


def test_every_sample_once_per_epoch_and_bucketing_reduces_padding():
    rng = np.random.default_rng(0)
    n_users, per = 200, 30
    lengths = rng.integers(3, per, n_users)
    offsets = np.concatenate([[0, 0], np.cumsum(lengths)])
    item = rng.integers(1, 100, offsets[-1])
    streams = Streams(offsets, item, item % 5, np.arange(offsets[-1]))
    users = np.repeat(np.arange(1, n_users + 1), 2)
    hist_end = np.minimum(rng.integers(1, per, len(users)), lengths[users - 1])
    s = Samples(users, rng.integers(1, 100, len(users)), np.zeros(len(users), int), np.zeros(len(users), np.float32), hist_end)
    ds = ProcessedDataset("r", Vocab(n_users + 1, 100, 5), streams, np.arange(100) % 5, {"train": s})

    def padding(bucket):
        b = Batcher(ds, "train", 16, 50, shuffle=True, bucket=bucket, seed=1)
        seen, cells, real = [], 0, 0
        for idx, batch in b:
            seen.append(idx)
            cells += batch.hist_mask.numel()
            real += int(batch.hist_mask.sum())
        seen = torch.cat(seen).sort().values
        assert seen.tolist() == list(range(len(s)))
        return 1 - real / cells

    assert padding(bucket=10) < padding(bucket=0)


def test_shuffle_depends_on_seed_and_epoch_only():
    ds = hand_dataset()
    a = Batcher(ds, "train", 2, 10, shuffle=True, seed=3)
    b = Batcher(ds, "train", 2, 10, shuffle=True, seed=3)
    assert torch.equal(a.order(), b.order())
    a.set_epoch(1)
    orders = {tuple(a.order().tolist())}
    for e in range(2, 8):
        a.set_epoch(e)
        orders.add(tuple(a.order().tolist()))
    assert len(orders) > 1


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": -1}, "batch size"), ({"max_len": 0}, "max_len"), ({"batch_size": 0}, "batch size"),
    ({"max_positions": 0}, "max_positions"), ({"max_positions": 8.5}, "max_positions"),
    ({"max_positions": 16, "shuffle": True}, "evaluation order"),
])
def test_bad_batcher_args(kw, match):
    args = {"batch_size": 4, "max_len": 5, **kw}
    with pytest.raises(ConfigError, match=match):
        Batcher(hand_dataset(), "train", **args)


@pytest.mark.parametrize("batch_size, start", [(32, 0), (32, 5), (7, 3), (2048, 0)])
def test_training_batches_gathered_in_groups_equal_one_gather_each(tiny_dataset, batch_size, start):
    """Small training batches are gathered a group at a time (GATHER_ROWS): each equals the batch
    gathered alone, in the same order, from any starting batch."""
    b = Batcher(tiny_dataset, "train", batch_size, 20, shuffle=True, seed=3)
    b.set_epoch(2)
    got = list(b.iterate(start))
    want = list(b.batches(start))
    assert len(got) == len(want) > 0
    for (idx, batch), ref in zip(got, want):
        assert torch.equal(idx, ref)
        alone = b.gather(ref)
        for name in ("user", "item", "cate", "label", "hist_item", "hist_cate", "hist_mask", "hist_len"):
            assert torch.equal(getattr(batch, name), getattr(alone, name)), name
