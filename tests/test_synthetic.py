"""The built-in synthetic dataset: deterministic, and its oracle is the exact click probability."""

import numpy as np
import pytest

from ctrbench.data.protocols import DINProtocol
from ctrbench.data.sources.synthetic import SyntheticSource
from ctrbench.errors import ConfigError

from conftest import TINY_SOURCE


def build(**kw):
    return SyntheticSource(**{**TINY_SOURCE, **kw}).build(DINProtocol())


def test_same_seed_same_data_other_seed_other_data():
    s1, ic1, a, _ = build(seed=3)
    s2, ic2, b, _ = build(seed=3)
    np.testing.assert_array_equal(s1.item, s2.item)
    np.testing.assert_array_equal(ic1, ic2)
    for k in a:
        for col, v in a[k].columns().items():
            np.testing.assert_array_equal(v, b[k].columns()[col])
    s3, _, c, _ = build(seed=4)
    assert not np.array_equal(a["train"].label, c["train"].label) or not np.array_equal(s1.item, s3.item)


def test_streams_shape_and_ids():
    streams, item_cate, splits, _ = build()
    lengths = streams.lengths()
    assert lengths[0] == 0 and lengths[1:].min() >= TINY_SOURCE.get("min_len", 4)
    assert lengths.max() <= TINY_SOURCE["max_len"]
    assert streams.item.min() >= 1 and streams.item.max() < len(item_cate)
    assert (streams.cate == item_cate[streams.item]).all() and item_cate[0] == 0
    # timestamps strictly increase within each user
    d = np.diff(streams.time)
    starts = streams.offsets[1:-1][lengths[1:] > 0]
    inside = np.ones(len(d), bool)
    inside[starts[1:] - 1] = False
    assert (d[inside] > 0).all()


def test_oracle_score_is_the_click_probability():
    src = SyntheticSource(**TINY_SOURCE)
    rng = np.random.default_rng(src.seed)
    world = src._world(rng)
    streams = src._streams(world, rng, src.users_for("din"))
    _, _, splits, _ = src.build(DINProtocol())
    s = splits["test"]
    # recompute p for one sample by hand from the module's formula
    i = 0
    u, t, k = s.user[i], s.item[i], s.hist_end[i]
    h = streams.item[streams.offsets[u] : streams.offsets[u] + k]
    sim = world["item_vec"][h] @ world["item_vec"][t]
    A = np.sum(np.exp(-(k - 1 - np.arange(k)) / src.tau) * np.exp(src.kappa * (sim - 1)))
    z = src.bias + src.beta * np.log1p(A) + src.gamma * world["pop_z"][t]
    assert s.score[i] == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-5)


def test_labels_follow_the_click_probability():
    _, _, splits, _ = build(n_users=3000)
    s = splits["train"]
    # Bernoulli(p): in bins of p, the click rate matches the mean p
    bins = np.digitize(s.score, [0.2, 0.4, 0.6, 0.8])
    for b in np.unique(bins):
        m = bins == b
        if m.sum() > 2000:
            assert abs(s.label[m].mean() - s.score[m].mean()) < 0.03


def test_bad_synthetic_config():
    with pytest.raises(ConfigError, match="n_cates"):
        SyntheticSource(n_items=20, n_cates=50)


def test_user_count_follows_the_protocol_unless_set():
    from ctrbench.data.protocols import DIENProtocol

    src = SyntheticSource()
    assert src.n_users is None
    assert src.users_for("din") == 20_000 and src.users_for("movielens") == 20_000
    assert src.users_for("dien") == 192_403  # DIEN paper Table 1, Electronics: one sample per user
    assert SyntheticSource(n_users=500).users_for("dien") == 500
    tiny = {k: v for k, v in TINY_SOURCE.items() if k != "n_users"}
    streams, _, splits, info = SyntheticSource(**tiny, n_users=400).build(DIENProtocol())
    assert info["synthetic_users"] == 400 and len(streams.offsets) == 402
    assert sum(len(s) for s in splits.values()) == 2 * 400  # one positive and one negative per user
