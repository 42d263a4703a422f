"""The DIN protocol (papers.md §1.2) on a tiny hand-made stream."""

import numpy as np
import pytest

from ctrbench.data.protocols import DINProtocol, sample_uniform_negatives
from ctrbench.data.schema import Streams
from ctrbench.errors import ConfigError, DataError


def hand_streams():
    # user 0: padding; user 1: items 5,6,7,8 (n=4); user 2: 1,2 (n=2, dropped); user 3: 3,4,5 (n=3)
    offsets = np.array([0, 0, 4, 6, 9])
    item = np.array([5, 6, 7, 8, 1, 2, 3, 4, 5])
    item_cate = np.arange(30) % 3
    return Streams(offsets, item, item_cate[item], np.arange(9)), item_cate


def test_din_protocol_positions_and_splits():
    streams, item_cate = hand_streams()
    splits, info = DINProtocol(valid_positions=1).build(streams, item_cate)
    tr, va, te = splits["train"], splits["valid"], splits["test"]
    # user 1 (n=4): positions 1,2 train-candidates, 3 test; the last train position (2) -> valid.
    # user 3 (n=3): position 1 train (kept: a user keeps >= 1 training position), 2 test.
    assert tr.user.tolist() == [1, 1, 3, 3]
    assert tr.hist_end.tolist() == [1, 1, 1, 1]
    assert tr.item[0::2].tolist() == [6, 4]  # the real next behaviour is the positive
    assert va.user.tolist() == [1, 1] and va.hist_end.tolist() == [2, 2] and va.item[0] == 7
    assert te.user.tolist() == [1, 1, 3, 3] and te.hist_end.tolist() == [3, 3, 2, 2]
    assert te.item[0::2].tolist() == [8, 5]
    for s in splits.values():
        assert s.label[0::2].tolist() == [1.0] * (len(s) // 2)
        assert s.label[1::2].tolist() == [0.0] * (len(s) // 2)
        assert (s.cate == item_cate[s.item]).all()
    assert info["users_dropped_too_few_behaviours"] == 1 and info["users_kept"] == 2


def test_negatives_avoid_the_users_whole_stream_and_are_fixed():
    streams, item_cate = hand_streams()
    a, _ = DINProtocol(seed=7).build(streams, item_cate)
    b, _ = DINProtocol(seed=7).build(streams, item_cate)
    for split in a:
        np.testing.assert_array_equal(a[split].item, b[split].item)
        negs, users = a[split].item[1::2], a[split].user[1::2]
        for u, n in zip(users, negs):
            whole = streams.item[streams.offsets[u] : streams.offsets[u + 1]]
            assert n not in whole and 1 <= n < len(item_cate)


def test_negative_sampler_uniform_over_allowed_items():
    # one user who has items 1..5 out of 1..9: negatives uniform over 6..9
    streams = Streams(np.array([0, 0, 5]), np.arange(1, 6), np.zeros(5, int), np.arange(5))
    neg = sample_uniform_negatives(np.full(40000, 1), streams, 10, np.random.default_rng(0))
    counts = np.bincount(neg, minlength=10)
    assert counts[:6].sum() == 0
    assert np.allclose(counts[6:] / 40000, 0.25, atol=0.01)


def test_no_validation_when_asked():
    streams, item_cate = hand_streams()
    splits, _ = DINProtocol(valid_positions=0).build(streams, item_cate)
    assert len(splits["valid"]) == 0 and len(splits["train"]) == 6


def test_user_who_saw_every_item_is_an_error():
    streams = Streams(np.array([0, 0, 3]), np.array([1, 2, 3]), np.zeros(3, int), np.arange(3))
    with pytest.raises(DataError, match="every item"):
        DINProtocol().build(streams, np.zeros(4, int))


def test_bad_protocol_values():
    with pytest.raises(ConfigError, match="valid_positions"):
        DINProtocol(valid_positions=-1)
