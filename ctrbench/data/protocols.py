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

from dataclasses import dataclass

import numpy as np

from ctrbench.data.schema import Samples, Streams
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
        if not isinstance(self.valid_positions, int) or self.valid_positions < 0:
            raise ConfigError(f"dataset.protocol.valid_positions must be an integer >= 0, got {self.valid_positions!r}")
        if self.min_behaviours < 3:
            raise ConfigError(f"dataset.protocol.min_behaviours must be >= 3 for the DIN protocol, got {self.min_behaviours}")

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
            u, t, ng, h = user[mask], target[mask], neg[mask], i[mask]
            k = len(u)
            items = np.empty(2 * k, dtype=np.int64)
            items[0::2], items[1::2] = t, ng
            label = np.zeros(2 * k, dtype=np.float32)
            label[0::2] = 1.0
            return Samples(
                user=np.repeat(u, 2),
                item=items,
                cate=item_cate[items],
                label=label,
                hist_end=np.repeat(h, 2),
            )

        splits = {"train": pairs(is_train), "valid": pairs(is_valid), "test": pairs(is_test)}
        info = {
            "protocol": self.name,
            "users_kept": int(kept.size),
            "users_dropped_too_few_behaviours": n_dropped,
            "negatives": "uniform over items outside the user's whole stream, fixed",
        }
        return splits, info
