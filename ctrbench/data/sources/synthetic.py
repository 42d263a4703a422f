"""The built-in synthetic dataset: Amazon-like behaviour streams with a known click probability.

The world (all of it drawn from one seeded ``numpy`` generator, so the same config gives the
same bytes):

* **Categories and items.** ``n_cates`` categories, each with a latent direction ``c_k`` in R^d;
  ``n_items`` items spread over the categories with long-tail (Zipf) category sizes; an item's latent
  vector is its category's direction plus item-level noise, ``v_i = normalise(c_k + noise)``, and its
  popularity is long-tailed (Zipf, exponent ``item_zipf``).
* **Users and drifting interests.** Each user has 2..``max_interests`` interests (categories). Each
  step, with probability ``drift`` one interest is replaced by a new category, so what a user likes
  changes over the stream; with probability ``stay`` the user keeps the interest of the previous
  step (sessions), otherwise picks one of their interests. The behaviour is an item of that
  category, drawn by popularity.
* **Samples.** The streams go through the DIN protocol (``protocols.DINProtocol``): for every
  position a candidate that is the real next behaviour and one uniform negative.
* **Labels: a known click probability.** The label of candidate item t after history h_1..h_k is
  drawn as ``y ~ Bernoulli(p(t, h))`` with

      match_j  = exp(kappa * (v_t . v_{h_j} - 1))            (1 for the same item, small for unrelated)
      recency_j = exp(-(k - j) / tau)                        (recent behaviours count more)
      A(t, h)  = sum_j recency_j * match_j                   (intensity of the target's interest)
      p(t, h)  = sigmoid(bias + beta * log(1 + A) + gamma * pop_t)

  where ``pop_t`` is the standardised log-popularity of t. ``p`` depends only on what a model can
  see: the target and the history. It rewards relating the target to the *relevant* behaviours
  (the few that match it: target attention) and to *recent* ones (interest evolution), and cannot
  be written as a function of a sum-pooled history. Because p is known, the Bayes-optimal score of
  every sample is known, and ``prepare`` reports the oracle AUC and GAUC of each split: no model can
  do better in expectation.

* **Why these defaults.** ``drift`` 0.2 and ``stay`` 0.7 make interests change within a stream in
  sessions; ``tau`` 1.5 makes the last few behaviours decide. On the default test split the oracle
  GAUC is 0.851, while the same click model with the recency removed (``tau`` -> infinity: order
  ignored) scores 0.837, so the order of the history is worth about 0.014 GAUC to a model that can
  read it (DIEN's recurrent interest evolution) over one that cannot (DIN's attention pooling). With
  the earlier defaults (``drift`` 0.05, ``stay`` 0.5, ``tau`` 8, ``beta`` 2.2) that headroom was
  0.0025, within the noise between seeds.

* **How many users: by protocol.** ``n_users`` null (the default) means 20,000 users under the DIN
  protocol (about 22 training samples per user: 440k) and **192,403 under the DIEN protocol**, the
  DIEN paper's Electronics user count (papers.md §2.1, DIEN Table 1), because that protocol keeps
  one sample per user: 20,000 users would give 32,400 training samples, a tenth of the paper's, on
  which the recurrent models overfit and rank below DIN (docs/results/dien_table4_synthetic_20k_users.md). A
  number set explicitly is used under every protocol. ``prepare`` records the count used
  (``synthetic_users`` in the dataset's info).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ctrbench.data.schema import Samples, Streams
from ctrbench.errors import ConfigError

#: Users generated when ``n_users`` is null, by protocol name; any other protocol gets DEFAULT_USERS.
USERS_BY_PROTOCOL = {"dien": 192_403}  # DIEN paper Table 1, Electronics (papers.md §2.1): one sample per user
DEFAULT_USERS = 20_000

INT_FIELDS = ("n_users", "n_items", "n_cates", "min_len", "max_len", "latent_dim", "max_interests", "seed")
FLOAT_FIELDS = ("mean_len", "item_noise", "item_zipf", "cate_zipf", "drift", "stay", "kappa", "tau", "bias", "beta", "gamma")


@dataclass
class SyntheticSource:
    n_users: int | None = None  # None: by protocol, USERS_BY_PROTOCOL / DEFAULT_USERS
    n_items: int = 3000
    n_cates: int = 60
    min_len: int = 4
    max_len: int = 50
    mean_len: float = 14.0
    latent_dim: int = 8
    item_noise: float = 0.6
    item_zipf: float = 1.0
    cate_zipf: float = 0.8
    max_interests: int = 4
    drift: float = 0.2
    stay: float = 0.7
    kappa: float = 4.0
    tau: float = 1.5
    bias: float = -1.6
    beta: float = 3.0
    gamma: float = 0.25
    seed: int = 0

    name = "synthetic"

    def __post_init__(self) -> None:
        for key in INT_FIELDS:
            v = getattr(self, key)
            if key == "n_users" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not -(2**31) < v < 2**31:
                raise ConfigError(f"dataset.source.{key}={v!r} is invalid for the synthetic dataset: expected an integer below 2**31")
        for key in FLOAT_FIELDS:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"dataset.source.{key}={v!r} is invalid for the synthetic dataset: expected a finite number")
        k = "dataset.source."
        checks = {  # key: (valid?, what is expected; naming the other key of a constraint)
            "n_users": (self.n_users is None or self.n_users >= 1, ">= 1, or null for the protocol's default"),
            "n_items": (self.n_items >= 10, ">= 10"),
            "n_cates": (1 <= self.n_cates <= self.n_items, f"from 1 to {k}n_items={self.n_items}"),
            "min_len": (self.min_len >= 3, ">= 3"),
            "max_len": (self.max_len >= self.min_len, f">= {k}min_len={self.min_len}"),
            "mean_len": (self.min_len <= self.mean_len <= self.max_len, f"from {k}min_len={self.min_len} to {k}max_len={self.max_len}"),
            "max_interests": (self.max_interests >= 1, ">= 1"),
            "drift": (0.0 <= self.drift <= 1.0, "in [0, 1]"),
            "stay": (0.0 <= self.stay <= 1.0, "in [0, 1]"),
            "tau": (self.tau > 0, "> 0"),
            "latent_dim": (self.latent_dim >= 1, ">= 1"),
            "seed": (self.seed >= 0, ">= 0"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"{k}{key}={getattr(self, key)!r} is out of range for the synthetic dataset: expected {expected}")

    def config(self) -> dict:
        return asdict(self)

    def users_for(self, protocol_name: str) -> int:
        """The number of users to generate under the named protocol (``n_users`` when set)."""
        if self.n_users is not None:
            return self.n_users
        return USERS_BY_PROTOCOL.get(protocol_name, DEFAULT_USERS)

    # ---- the world -------------------------------------------------------------------------
    def _world(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        d = self.latent_dim
        cate_dir = _normalise(rng.standard_normal((self.n_cates, d)))
        # Long-tail category sizes; every category gets at least one item.
        cate_w = 1.0 / np.arange(1, self.n_cates + 1) ** self.cate_zipf
        cate_w = rng.permutation(cate_w / cate_w.sum())
        extra = rng.choice(self.n_cates, size=self.n_items - self.n_cates, p=cate_w)
        item_cate0 = rng.permutation(np.concatenate([np.arange(self.n_cates), extra]))  # 0-based
        item_vec = _normalise(cate_dir[item_cate0] + self.item_noise * rng.standard_normal((self.n_items, d)) / np.sqrt(d))
        pop = 1.0 / np.arange(1, self.n_items + 1) ** self.item_zipf
        pop = rng.permutation(pop)
        # Ids from 1; row 0 is padding.
        item_cate = np.concatenate([[0], item_cate0 + 1]).astype(np.int64)
        item_vec = np.concatenate([np.zeros((1, d)), item_vec]).astype(np.float32)
        pop = np.concatenate([[0.0], pop])
        log_pop = np.log(pop[1:])
        pop_z = np.concatenate([[0.0], (log_pop - log_pop.mean()) / log_pop.std()]).astype(np.float32)
        cate_pop = np.bincount(item_cate, weights=pop, minlength=self.n_cates + 1)
        return {"item_cate": item_cate, "item_vec": item_vec, "pop": pop, "pop_z": pop_z, "cate_pop": cate_pop}

    def _streams(self, world: dict[str, np.ndarray], rng: np.random.Generator, n_users: int) -> Streams:
        U, C = n_users, self.n_cates
        # Stream lengths: min_len + geometric tail, capped at max_len.
        extra_mean = max(self.mean_len - self.min_len, 1e-9)
        lengths = np.minimum(self.min_len + rng.geometric(1.0 / (1.0 + extra_mean), size=U) - 1, self.max_len)
        T = int(lengths.max())
        # Per-category item samplers by popularity: items sorted by category, cumulative weights.
        item_cate, pop = world["item_cate"], world["pop"]
        order = np.argsort(item_cate[1:], kind="stable") + 1
        cate_sorted = item_cate[order]
        starts = np.searchsorted(cate_sorted, np.arange(1, C + 2))
        cum = np.cumsum(pop[order])
        cate_p = world["cate_pop"][1:] / world["cate_pop"][1:].sum()

        n_int = rng.integers(2 if self.max_interests >= 2 else 1, self.max_interests + 1, size=U)
        interests = rng.choice(C, size=(U, self.max_interests), p=cate_p) + 1  # 1-based cate ids
        current = interests[np.arange(U), rng.integers(0, n_int)]
        items = np.zeros((U, T), dtype=np.int64)
        rows = np.arange(U)
        for t in range(T):
            drift = rng.random(U) < self.drift
            slot = rng.integers(0, n_int)
            interests[rows[drift], slot[drift]] = rng.choice(C, size=int(drift.sum()), p=cate_p) + 1
            switch = rng.random(U) >= self.stay
            pick = interests[rows, rng.integers(0, n_int)]
            current = np.where(switch | drift, pick, current)
            # Item of category `current`, by popularity: invert the within-category cumulative weights.
            lo, hi = starts[current - 1], starts[current]
            base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
            u = base + rng.random(U) * (cum[hi - 1] - base)
            idx = np.minimum(np.searchsorted(cum, u, side="right"), hi - 1)
            items[:, t] = order[np.maximum(idx, lo)]
        valid = np.arange(T)[None, :] < lengths[:, None]
        flat_item = items[valid]
        offsets = np.concatenate([[0, 0], np.cumsum(lengths)]).astype(np.int64)  # user 0 is padding
        # Timestamps: increasing within a user (a day apart with jitter), from a common epoch.
        gaps = rng.integers(3600, 3 * 86400, size=flat_item.shape[0]).astype(np.int64)
        owner_start = np.repeat(offsets[1:-1], lengths)
        csum = np.cumsum(gaps)
        time = 1_400_000_000 + csum - np.concatenate([[0], csum])[owner_start]
        return Streams(offsets=offsets, item=flat_item, cate=item_cate[flat_item], time=time)

    # ---- the click model ---------------------------------------------------------------------
    def click_probability(self, samples: Samples, streams: Streams, world: dict[str, np.ndarray], chunk: int = 65536) -> np.ndarray:
        """p(t, h) of the module docstring for every sample, vectorised in chunks."""
        vec, pop_z = world["item_vec"], world["pop_z"]
        out = np.empty(len(samples), dtype=np.float64)
        for s in range(0, len(samples), chunk):
            e = min(s + chunk, len(samples))
            u, t, k = samples.user[s:e], samples.item[s:e], samples.hist_end[s:e]
            L = int(k.max())
            j = np.arange(L)[None, :]
            mask = j < k[:, None]
            pos = np.where(mask, streams.offsets[u][:, None] + j, 0)
            h = np.where(mask, streams.item[pos], 0)
            sim = np.einsum("bd,bld->bl", vec[t], vec[h])
            match = np.exp(self.kappa * (sim - 1.0))
            recency = np.exp(-(k[:, None] - 1 - j) / self.tau)
            A = np.sum(np.where(mask, recency * match, 0.0), axis=1)
            z = self.bias + self.beta * np.log1p(A) + self.gamma * pop_z[t]
            out[s:e] = 1.0 / (1.0 + np.exp(-z))
        return out

    # ---- the Source interface ----------------------------------------------------------------
    def build(self, protocol) -> tuple[Streams, np.ndarray, dict[str, Samples], dict]:
        rng = np.random.default_rng(self.seed)
        world = self._world(rng)
        n_users = self.users_for(getattr(protocol, "name", ""))
        streams = self._streams(world, rng, n_users)
        splits, info = protocol.build(streams, world["item_cate"])
        info["synthetic_users"] = n_users
        label_rng = np.random.default_rng([self.seed, 1])
        for name in ("train", "valid", "test"):
            s = splits[name]
            p = self.click_probability(s, streams, world)
            s.score = p.astype(np.float32)
            s.label = (label_rng.random(len(s)) < p).astype(np.float32)
        info["labels"] = "Bernoulli(p) from the synthetic click model; score = p (Bayes-optimal)"
        return streams, world["item_cate"], splits, info


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)
