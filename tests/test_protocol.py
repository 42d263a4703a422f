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


# ---- DIEN protocol (papers.md §2.2) ---------------------------------------------------------
from ctrbench.data.protocols import DIENProtocol, MovieLensProtocol, sample_popular_negatives  # noqa: E402


def many_users_streams(n_users=200, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 8, size=n_users)
    lengths[0] = 0  # the padding user
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    item = rng.integers(1, 50, size=offsets[-1])
    item_cate = np.arange(50) % 7
    rating = rng.integers(1, 6, size=offsets[-1]).astype(np.float32)
    return Streams(offsets, item, item_cate[item], np.arange(offsets[-1]), rating), item_cate


def test_dien_protocol_one_target_per_user_last_behaviour():
    streams, item_cate = hand_streams()
    splits, info = DIENProtocol(test_fraction=0.0, valid_fraction=0.0).build(streams, item_cate)
    tr = splits["train"]
    # every user with >= 2 behaviours: users 1 (n=4), 2 (n=2), 3 (n=3); target = last behaviour
    assert tr.user.tolist() == [1, 1, 2, 2, 3, 3]
    assert tr.hist_end.tolist() == [3, 3, 1, 1, 2, 2]
    assert tr.item[0::2].tolist() == [8, 2, 5]
    assert (tr.item[1::2] != tr.item[0::2]).all()  # the negative is never the positive
    assert tr.label.tolist() == [1.0, 0.0] * 3
    assert (tr.cate == item_cate[tr.item]).all()
    assert info["users_kept"] == 3 and info["users_dropped_too_few_behaviours"] == 0


def test_dien_protocol_user_split_is_seeded_and_disjoint():
    streams, item_cate = many_users_streams()
    a, info = DIENProtocol(seed=3).build(streams, item_cate)
    b, _ = DIENProtocol(seed=3).build(streams, item_cate)
    users = {s: set(a[s].user.tolist()) for s in a}
    assert not (users["train"] & users["test"]) and not (users["valid"] & users["test"]) and not (users["train"] & users["valid"])
    kept = int((streams.lengths() >= 2).sum())
    assert info["users_per_split"]["test"] == round(0.1 * kept)
    assert sum(len(u) for u in users.values()) == kept
    for s in a:
        np.testing.assert_array_equal(a[s].item, b[s].item)
        np.testing.assert_array_equal(a[s].user, b[s].user)


def test_popular_negatives_follow_behaviour_counts_and_skip_the_positive():
    # items 1 (x6), 2 (x3), 3 (x1): with positive 1, negatives are 2 or 3 in ratio 3:1
    streams = Streams(np.array([0, 10]), np.array([1] * 6 + [2] * 3 + [3]), np.zeros(10, int), np.arange(10))
    neg = sample_popular_negatives(np.ones(40000, dtype=np.int64), streams, np.random.default_rng(0))
    counts = np.bincount(neg, minlength=4)
    assert counts[1] == 0 and abs(counts[2] / counts[3] - 3.0) < 0.15


def test_dien_protocol_bad_values():
    with pytest.raises(ConfigError, match="test_fraction"):
        DIENProtocol(test_fraction=1.5)
    with pytest.raises(ConfigError, match="min_behaviours"):
        DIENProtocol(min_behaviours=1)


# ---- MovieLens protocol (papers.md §1.1) -----------------------------------------------------
def test_movielens_protocol_labels_histories_and_user_split():
    # user 1 rated items 5,6,7 with 5,3,4; user 2 rated 1,2 with 1,4
    offsets = np.array([0, 0, 3, 5])
    item = np.array([5, 6, 7, 1, 2])
    rating = np.array([5, 3, 4, 1, 4], dtype=np.float32)
    item_cate = np.arange(10) % 3
    streams = Streams(offsets, item, item_cate[item], np.arange(5), rating)
    splits, info = MovieLensProtocol(test_fraction=0.5, valid_fraction=0.0, seed=0).build(streams, item_cate)
    assert len(splits["valid"]) == 0
    everything = {s: splits[s] for s in ("train", "test") if len(splits[s])}
    assert sum(len(s) for s in everything.values()) == 5  # every rating is a sample
    by_user = {}
    for s in everything.values():
        for u, it, lab, h in zip(s.user, s.item, s.label, s.hist_end):
            by_user.setdefault(int(u), []).append((int(it), float(lab), int(h)))
    assert by_user[1] == [(5, 1.0, 0), (6, 0.0, 1), (7, 1.0, 2)]  # rating >= 4 -> 1; history = earlier ratings
    assert by_user[2] == [(1, 0.0, 0), (2, 1.0, 1)]
    assert set(splits["train"].user.tolist()).isdisjoint(splits["test"].user.tolist())
    assert info["users_per_split"]["test"] == 1


def test_movielens_protocol_needs_ratings():
    streams, item_cate = hand_streams()
    with pytest.raises(DataError, match="ratings"):
        MovieLensProtocol().build(streams, item_cate)


def test_movielens_protocol_split_fractions():
    streams, item_cate = many_users_streams(n_users=1001)
    splits, info = MovieLensProtocol(valid_fraction=0.1).build(streams, item_cate)
    n = int((streams.lengths() > 0).sum())
    n_test = round(38493 / 138493 * n)
    assert info["users_per_split"]["test"] == n_test
    assert info["users_per_split"]["valid"] == round(0.1 * (n - n_test))
    assert sum(len(s) for s in splits.values()) == streams.n_behaviours


@pytest.mark.parametrize("overrides, train_cut, eval_cut", [
    (("dataset/protocol=dien", "dataset.max_len=3"), 3, "longest"),   # the DIEN code: test histories whole
    (("dataset/protocol=dien", "dataset.max_len=3", "dataset.eval_max_len=5"), 3, 5),
    (("dataset.max_len=3",), 3, 3),                                    # other protocols: one cut for all
])
def test_evaluation_history_cut(tiny_dataset, tmp_path, overrides, train_cut, eval_cut):
    from conftest import fast_trainer

    t = fast_trainer(tiny_dataset, tmp_path / "run", *overrides)
    longest = int(tiny_dataset.streams.lengths().max())
    want = longest if eval_cut == "longest" else eval_cut
    assert t.train_batches.max_len == train_cut
    assert t.test_batches.max_len == want and t.select_batches.max_len == want
    seen = max(int(b.hist_len.max()) for _, b in t.test_batches)
    assert seen == min(want, max(int(e) for e in tiny_dataset.splits["test"].hist_end))
    assert max(int(b.hist_len.max()) for _, b in t.train_batches) <= train_cut


def test_evaluation_history_cut_bad_value():
    from conftest import compose_train
    from ctrbench.config_checks import check_train

    with pytest.raises(ConfigError, match="dataset.eval_max_len=0"):
        check_train(compose_train("dataset/protocol=dien", "dataset.eval_max_len=0"))
