"""The data contract every stage shares: vocabulary sizes, behaviour streams, sample tables, Batch.

Ids are dense integers from 1 in every id space (user, item, category); 0 is padding / unknown.

A processed dataset stores each user's time-ordered behaviour stream once, in CSR layout
(``offsets`` into flat ``item`` / ``cate`` / ``time`` arrays). A sample is a row
``(user, item, cate, label, hist_end)``: its history is the first ``hist_end`` behaviours of that
user's stream, of which a model sees the most recent ``max_len``. A source whose rows carry
histories that are not prefixes of one stream per user (BARS files written by other generators)
adds ``hist_start``: the history is then behaviours ``hist_start .. hist_end - 1`` of the user's
stream, each distinct history stored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

SPLITS = ("train", "valid", "test")
SAMPLE_COLUMNS = ("user", "item", "cate", "label", "hist_end")


@dataclass(frozen=True)
class Vocab:
    """Sizes of the id spaces, *including* the padding id 0 (so a table has ``n_items`` rows)."""

    n_users: int
    n_items: int
    n_cates: int


@dataclass
class Streams:
    """Per-user behaviour streams in CSR layout; user u's behaviours are ``[offsets[u], offsets[u+1])``.

    ``offsets`` has ``n_users + 1`` entries (row 0 is the padding user, with an empty stream).
    """

    offsets: np.ndarray  # int64 [n_users + 1]
    item: np.ndarray  # int64 [n_behaviours]
    cate: np.ndarray  # int64 [n_behaviours]
    time: np.ndarray  # int64 [n_behaviours]
    rating: np.ndarray | None = None  # float32 [n_behaviours], sources with explicit ratings (MovieLens)

    @property
    def n_behaviours(self) -> int:
        return int(self.item.shape[0])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class Samples:
    """One split's sample table (columns of equal length). ``score`` is optional: the known click
    probability of a synthetic sample (its Bayes-optimal score), absent for real data.
    ``hist_start`` is optional: where the history starts in the user's stream (0 when absent)."""

    user: np.ndarray
    item: np.ndarray
    cate: np.ndarray
    label: np.ndarray
    hist_end: np.ndarray
    score: np.ndarray | None = None
    hist_start: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        out = {c: getattr(self, c) for c in SAMPLE_COLUMNS}
        for optional in ("score", "hist_start"):
            if getattr(self, optional) is not None:
                out[optional] = getattr(self, optional)
        return out

    def history_start(self) -> np.ndarray:
        """Where each sample's history starts in its user's stream (zeros without ``hist_start``)."""
        return self.hist_start if self.hist_start is not None else np.zeros(len(self), dtype=np.int64)

    def take(self, index: np.ndarray) -> "Samples":
        return Samples(
            **{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index]) for f in fields(self)}
        )


@dataclass
class ProcessedDataset:
    """A prepared dataset held in memory: what ``load`` returns and the ``Batcher`` reads."""

    name: str
    vocab: Vocab
    streams: Streams
    item_cate: np.ndarray  # int64 [n_items]: category of each item id (0 for padding)
    splits: dict[str, Samples]
    manifest: dict = field(default_factory=dict)


@dataclass
class Batch:
    """What every model consumes. Histories are padded to the longest in the batch (``L``);
    padded positions hold id 0 and ``hist_mask`` False."""

    user: torch.Tensor  # int64 [B]
    item: torch.Tensor  # int64 [B]
    cate: torch.Tensor  # int64 [B]
    label: torch.Tensor  # float32 [B]
    hist_item: torch.Tensor  # int64 [B, L]
    hist_cate: torch.Tensor  # int64 [B, L]
    hist_mask: torch.Tensor  # bool [B, L]
    hist_len: torch.Tensor  # int64 [B]
    neg_hist_item: torch.Tensor | None = None  # int64 [B, L], DIEN's auxiliary negatives
    neg_hist_cate: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def map(self, fn) -> "Batch":
        """The batch with ``fn`` applied to every tensor (absent fields stay None)."""
        return Batch(**{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name))) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """The batch in page-locked host memory, so that a ``to(cuda, non_blocking=True)`` copy runs
        asynchronously (from pageable memory CUDA copies through a staging buffer and waits)."""
        return self.map(torch.Tensor.pin_memory)

    def to_device(self, device: torch.device) -> "Batch":
        """The batch on the device the model runs on: for a GPU page-locked first and copied
        without waiting; on the CPU as it is."""
        gpu = device.type == "cuda"
        return (self.pin_memory() if gpu else self).to(device, non_blocking=gpu)
