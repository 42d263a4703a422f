"""Protocols: how behaviour streams become (user, target, label, hist_end) samples and splits.

``DINProtocol`` is the DIN authors' Amazon protocol (``din/build_dataset.py``; papers.md §1.2):
for a user with time-ordered behaviours b_1..b_n, the history of position i is b_1..b_i and the
target is b_{i+1}. Positions i = 1..n-2 are training targets and i = n-1 (predicting the last
behaviour) is the test target. Each position gets the real next behaviour as a positive and one
negative drawn **uniformly** from the item ids outside the user's **whole** stream, drawn once with
a fixed seed. Users with fewer than 3 behaviours have no training position and are dropped (and
counted).

Our addition (the paper has no validation split): the last ``valid_positions`` training positions
of each user who keeps at least one training position are moved to a validation split, used for
early stopping and model selection, so that the test split is never used to pick a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ctrbench.data.schema import SPLITS, Samples, Streams
from ctrbench.errors import ConfigError, DataError


def user_of_behaviour(offsets: np.ndarray) -> np.ndarray:
    """The user id of every behaviour of a CSR stream."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def sample_uniform_negatives(
    users: np.ndarray,
    streams: Streams,
    n_items: int,
    rng: np.random.Generator,
    max_rounds: int = 1000,
) -> np.ndarray:
    """One item per entry of ``users``, uniform over ids 1..n_items-1, never an item in that user's
    whole stream. Vectorised rejection sampling: redraw only the rejected entries each round."""
    if n_items < 2:
        raise DataError(f"cannot sample negatives from a vocabulary of {n_items - 1} items")
    # A user whose stream covers (almost) every item cannot get a negative.
    distinct = _distinct_items_per_user(streams)
    if np.any(distinct[users] >= n_items - 1):
        bad = int(users[np.argmax(distinct[users] >= n_items - 1)])
        raise DataError(f"user {bad} has interacted with every item: no negative can be drawn")
    # Sorted keys (user, item) of every behaviour, for membership tests.
    owner = user_of_behaviour(streams.offsets)
    keys = np.unique(owner * np.int64(n_items) + streams.item)
    out = rng.integers(1, n_items, size=len(users), dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        cand = users[todo] * np.int64(n_items) + out[todo]
        pos = np.searchsorted(keys, cand)
        pos[pos == len(keys)] = 0
        clash = keys[pos] == cand
        todo = todo[clash]
        if todo.size == 0:
            return out
        out[todo] = rng.integers(1, n_items, size=todo.size, dtype=np.int64)
    raise DataError("negative sampling did not finish: histories cover nearly all items")


def _distinct_items_per_user(streams: Streams) -> np.ndarray:
    owner = user_of_behaviour(streams.offsets)
    pairs = np.unique(np.stack([owner, streams.item]), axis=1)
    return np.bincount(pairs[0], minlength=len(streams.offsets) - 1)


@dataclass
class DINProtocol:
    """papers.md §1.2, with a validation carve-out (see the module docstring)."""

    seed: int = 1234
    valid_positions: int = 1
    min_behaviours: int = 3

    name = "din"

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        if not _is_int(self.valid_positions) or self.valid_positions < 0:
            raise ConfigError(f"dataset.protocol.valid_positions must be an integer >= 0, got {self.valid_positions!r}")
        if not _is_int(self.min_behaviours) or self.min_behaviours < 3:
            raise ConfigError(f"dataset.protocol.min_behaviours must be an integer >= 3 for the DIN protocol, got {self.min_behaviours!r}")

    def build(self, streams: Streams, item_cate: np.ndarray) -> tuple[dict[str, Samples], dict]:
        n_items = len(item_cate)
        rng = np.random.default_rng(self.seed)
        lengths = streams.lengths()
        kept = np.flatnonzero(lengths >= self.min_behaviours)
        n_dropped = int(np.count_nonzero((lengths > 0) & (lengths < self.min_behaviours)))
        if kept.size == 0:
            raise DataError(f"no user has at least {self.min_behaviours} behaviours: nothing to train on")

        # Positions i = 1..n-1 of each kept user; the target is the behaviour at stream index i.
        n_pos = lengths[kept] - 1
        user = np.repeat(kept, n_pos)
        first = np.repeat(np.cumsum(n_pos) - n_pos, n_pos)
        i = np.arange(len(user), dtype=np.int64) - first + 1  # 1..n-1 within each user
        n_of_row = np.repeat(lengths[kept], n_pos)
        target = streams.item[streams.offsets[user] + i]

        # One fixed negative per position (the DIN code draws one per position, then uses it).
        neg = sample_uniform_negatives(user, streams, n_items, rng)

        is_test = i == n_of_row - 1
        # The last `valid_positions` training positions of a user go to validation, provided the
        # user keeps at least one training position.
        n_train_pos = n_of_row - 2
        n_valid = np.minimum(self.valid_positions, np.maximum(n_train_pos - 1, 0))
        is_valid = ~is_test & (i > n_train_pos - n_valid)
        is_train = ~is_test & ~is_valid

        def pairs(mask: np.ndarray) -> Samples:
            return _pairs(user[mask], target[mask], neg[mask], i[mask], item_cate)

        splits = {"train": pairs(is_train), "valid": pairs(is_valid), "test": pairs(is_test)}
        info = {
            "protocol": self.name,
            "users_kept": int(kept.size),
            "users_dropped_too_few_behaviours": n_dropped,
            "negatives": "uniform over items outside the user's whole stream, fixed",
        }
        return splits, info


def _pairs(user: np.ndarray, pos: np.ndarray, neg: np.ndarray, hist_end: np.ndarray, item_cate: np.ndarray) -> Samples:
    """A positive row and its negative row per entry (positive first), sharing the history."""
    k = len(user)
    items = np.empty(2 * k, dtype=np.int64)
    items[0::2], items[1::2] = pos, neg
    label = np.zeros(2 * k, dtype=np.float32)
    label[0::2] = 1.0
    return Samples(user=np.repeat(user, 2), item=items, cate=item_cate[items], label=label, hist_end=np.repeat(hist_end, 2))


def _split_users(users: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random assignment of ``users`` to (test, valid): the first ``round(f_test·n)`` of a
    permutation go to test, the next ``round(f_valid·(n − n_test))`` to valid. Returns two masks
    aligned with ``users``."""
    f_test, f_valid = fractions
    n = len(users)
    perm = rng.permutation(n)
    n_test = int(round(f_test * n))
    n_valid = int(round(f_valid * (n - n_test)))
    is_test = np.zeros(n, dtype=bool)
    is_valid = np.zeros(n, dtype=bool)
    is_test[perm[:n_test]] = True
    is_valid[perm[n_test : n_test + n_valid]] = True
    return is_test, is_valid


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 1.0):
        raise ConfigError(f"dataset.protocol.{name} must be a number in [0, 1), got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seed(seed) -> None:
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"dataset.protocol.seed must be an integer >= 0, got {seed!r}")


def sample_popular_negatives(positives: np.ndarray, streams: Streams, rng: np.random.Generator, max_rounds: int = 1000) -> np.ndarray:
    """One item per positive, drawn in proportion to its number of behaviours (the DIEN code draws
    from the list of every review's item), redrawn only when it equals the positive."""
    pool = streams.item
    if np.unique(pool).size < 2:
        raise DataError("cannot sample negatives: the behaviours contain fewer than 2 distinct items")
    out = pool[rng.integers(0, len(pool), size=len(positives))]
    todo = np.flatnonzero(out == positives)
    for _ in range(max_rounds):
        if todo.size == 0:
            return out
        out[todo] = pool[rng.integers(0, len(pool), size=todo.size)]
        todo = todo[out[todo] == positives[todo]]
    raise DataError("negative sampling did not finish: one item dominates the behaviours")


@dataclass
class DIENProtocol:
    """The DIEN code's Amazon protocol (papers.md §2.2): **one target per user**, the last behaviour,
    with history = every earlier behaviour; one negative drawn in proportion to item popularity and
    rejected only when it equals the positive (so it may be in the history, as in the code); users
    split at random (seeded) into test (``test_fraction``, the code's 1/10) and the rest. Users with
    fewer than 2 behaviours have no history and are dropped (the code drops empty-history lines).
    Training histories are cut to the last 100 behaviours by ``dataset.max_len`` (this protocol's
    config sets 100, the code's ``maxlen``); validation and test histories are not cut
    (``dataset.eval_max_len: null``, as the code's ``prepare_data``, which cuts only training
    batches; an integer there cuts them too). The cuts are the Batcher's; the samples keep every
    earlier behaviour.

    Our addition: ``valid_fraction`` of the non-test users form a validation split, so that a model
    is never selected on the test users (the code selects on test)."""

    seed: int = 1234
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    min_behaviours: int = 2

    name = "dien"

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        _check_fraction("test_fraction", self.test_fraction)
        _check_fraction("valid_fraction", self.valid_fraction)
        if not _is_int(self.min_behaviours) or self.min_behaviours < 2:
            raise ConfigError(f"dataset.protocol.min_behaviours must be an integer >= 2 for the DIEN protocol, got {self.min_behaviours!r}")

    def build(self, streams: Streams, item_cate: np.ndarray) -> tuple[dict[str, Samples], dict]:
        rng = np.random.default_rng(self.seed)
        lengths = streams.lengths()
        kept = np.flatnonzero(lengths >= self.min_behaviours)
        if kept.size == 0:
            raise DataError(f"no user has at least {self.min_behaviours} behaviours: nothing to train on")
        n_dropped = int(np.count_nonzero((lengths > 0) & (lengths < self.min_behaviours)))
        hist_end = lengths[kept] - 1
        pos = streams.item[streams.offsets[kept] + hist_end]
        neg = sample_popular_negatives(pos, streams, rng)
        is_test, is_valid = _split_users(kept, (self.test_fraction, self.valid_fraction), rng)
        is_train = ~is_test & ~is_valid
        splits = {
            name: _pairs(kept[m], pos[m], neg[m], hist_end[m], item_cate)
            for name, m in (("train", is_train), ("valid", is_valid), ("test", is_test))
        }
        info = {
            "protocol": self.name,
            "users_kept": int(kept.size),
            "users_dropped_too_few_behaviours": n_dropped,
            "users_per_split": {"train": int(is_train.sum()), "valid": int(is_valid.sum()), "test": int(is_test.sum())},
            "negatives": "popularity-weighted over all behaviours, rejecting only the positive, fixed",
        }
        return splits, info


@dataclass
class MovieLensProtocol:
    """The DIN paper's MovieLens protocol (papers.md §1.1): every rating is a sample whose label is
    1 for a rating >= ``positive_min_rating`` (4: "rated above 3") and whose history is the user's
    earlier rated movies in time order, whatever their rating (the paper does not say; we keep all,
    documented); users are split at random (seeded) into train and test users, test fraction
    38,493 / 138,493 as for ML-20M. A user's first rating has an empty history and is kept, so the
    sample count equals the rating count as in the paper's Table 2.

    Our addition: ``valid_fraction`` of the training users form a validation split (model selection
    never looks at test users)."""

    seed: int = 1234
    test_fraction: float = 38493 / 138493
    valid_fraction: float = 0.05
    positive_min_rating: float = 4.0

    name = "movielens"

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        _check_fraction("test_fraction", self.test_fraction)
        _check_fraction("valid_fraction", self.valid_fraction)
        r = self.positive_min_rating
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            raise ConfigError(f"dataset.protocol.positive_min_rating must be a finite number, got {r!r}")

    def build(self, streams: Streams, item_cate: np.ndarray) -> tuple[dict[str, Samples], dict]:
        if streams.rating is None:
            raise DataError("the MovieLens protocol needs ratings, and this source has none (use dataset/protocol=din)")
        rng = np.random.default_rng(self.seed)
        lengths = streams.lengths()
        users = np.flatnonzero(lengths > 0)
        is_test_u, is_valid_u = _split_users(users, (self.test_fraction, self.valid_fraction), rng)
        split_of_user = np.zeros(len(lengths), dtype=np.int8)  # 0 train, 1 valid, 2 test
        split_of_user[users[is_valid_u]] = 1
        split_of_user[users[is_test_u]] = 2
        owner = user_of_behaviour(streams.offsets)
        position = np.arange(streams.n_behaviours, dtype=np.int64) - streams.offsets[owner]
        label = (streams.rating >= self.positive_min_rating).astype(np.float32)
        splits = {}
        for code, name in enumerate(SPLITS):
            m = split_of_user[owner] == code
            splits[name] = Samples(
                user=owner[m], item=streams.item[m], cate=streams.cate[m], label=label[m], hist_end=position[m]
            )
        info = {
            "protocol": self.name,
            "users_per_split": {"train": int((~is_test_u & ~is_valid_u).sum()), "valid": int(is_valid_u.sum()), "test": int(is_test_u.sum())},
            "label": f"rating >= {self.positive_min_rating}",
            "history": "every earlier rating, in time order (ties in file order)",
        }
        return splits, info
