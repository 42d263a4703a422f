"""The Batcher: whole batches gathered by array indexing, padded to the batch's longest history.

No per-sample Python and no per-row Dataset + collate: a batch is a vector of sample indices, and
its histories are one gather from the flat behaviour stream:

    start_b = offsets[user_b] + max(hist_end_b - max_len, 0)      (the most recent max_len behaviours)
    len_b   = min(hist_end_b, max_len)
    hist[b, j] = stream[start_b + j]  for j < len_b, else 0       (post-padding, oldest first)

With ``bucket > 1`` a shuffled epoch is cut into chunks of ``bucket`` batches and each chunk is
sorted by history length before it is cut into batches (whose order is then shuffled), so that
little of a batch is padding while batches stay random.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ctrbench.data.schema import Batch, ProcessedDataset
from ctrbench.errors import ConfigError


class Batcher:
    def __init__(
        self,
        dataset: ProcessedDataset,
        split: str,
        batch_size: int,
        max_len: int,
        shuffle: bool = False,
        bucket: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        negative_history: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ConfigError(f"dataset.max_len must be a positive integer, got {max_len!r}")
        if split not in dataset.splits:
            raise ConfigError(f"unknown split {split!r}: expected one of {sorted(dataset.splits)}")
        s = dataset.splits[split]
        self.split = split
        self.batch_size = batch_size
        self.max_len = max_len
        self.shuffle = shuffle
        self.bucket = bucket
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.negative_history = negative_history
        self._item_cate = torch.from_numpy(np.array(dataset.item_cate, dtype=np.int64))
        self._n_items = len(dataset.item_cate)
        st = dataset.streams
        self._offsets = torch.from_numpy(np.ascontiguousarray(st.offsets, dtype=np.int64))
        # Flat streams with one trailing 0 so that padded positions can gather a harmless index.
        self._s_item = torch.from_numpy(np.concatenate([st.item, [0]]).astype(np.int64))
        self._s_cate = torch.from_numpy(np.concatenate([st.cate, [0]]).astype(np.int64))
        self._pad = st.n_behaviours
        self.user = torch.from_numpy(s.user.astype(np.int64))
        self.item = torch.from_numpy(s.item.astype(np.int64))
        self.cate = torch.from_numpy(s.cate.astype(np.int64))
        self.label = torch.from_numpy(s.label.astype(np.float32))
        hist_end = torch.from_numpy(s.hist_end.astype(np.int64))
        self.hist_len = torch.clamp(hist_end, max=max_len)
        self.hist_start = self._offsets[self.user] + (hist_end - self.hist_len)
        self.n = len(s)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """The sample order of the current epoch (shuffled and bucketed, or sorted by history length
        for evaluation, which makes padding minimal without changing any score)."""
        if not self.shuffle:
            return torch.argsort(self.hist_len, stable=True)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.bucket > 1:
            chunk = self.bucket * self.batch_size
            chunk_id = torch.arange(self.n) // chunk
            key = chunk_id * (self.max_len + 1) + self.hist_len[perm]
            perm = perm[torch.argsort(key, stable=True)]
        return perm

    def batches(self) -> Iterator[torch.Tensor]:
        """Index tensors of the batches of the current epoch."""
        order = self.order()
        starts = list(range(0, self.n, self.batch_size))
        if self.drop_last and self.n % self.batch_size:
            starts = starts[:-1]
        if self.shuffle and self.bucket > 1:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7)
            starts = [starts[i] for i in torch.randperm(len(starts), generator=g).tolist()]
        for s in starts:
            yield order[s : s + self.batch_size]

    def gather(self, idx: torch.Tensor) -> Batch:
        """The Batch of the samples ``idx`` (any order, any size)."""
        hist_len = self.hist_len[idx]
        L = max(int(hist_len.max()), 1) if len(idx) else 1
        j = torch.arange(L)
        mask = j[None, :] < hist_len[:, None]
        pos = torch.where(mask, self.hist_start[idx][:, None] + j[None, :], self._pad)
        hist_item = self._s_item[pos]
        neg_item = neg_cate = None
        if self.negative_history:
            neg_item, neg_cate = self.negative_behaviours(hist_item, mask)
        return Batch(
            user=self.user[idx],
            item=self.item[idx],
            cate=self.cate[idx],
            label=self.label[idx],
            hist_item=hist_item,
            hist_cate=self._s_cate[pos],
            hist_mask=mask,
            hist_len=hist_len,
            neg_hist_item=neg_item,
            neg_hist_cate=neg_cate,
        )

    def negative_behaviours(self, hist_item: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DIEN's auxiliary negatives: for every real history position an item drawn uniformly from
        the vocabulary other than the item at that position (a clash moves to the next id), with its
        own category; 0 at padded positions. Drawn from torch's global generator (seeded per run)."""
        if self._n_items < 3:
            raise ConfigError("DIEN's negative behaviours need at least 2 items in the vocabulary")
        neg = torch.randint(1, self._n_items, hist_item.shape)
        clash = neg == hist_item
        neg = torch.where(clash, neg % (self._n_items - 1) + 1, neg)
        neg = neg * mask
        return neg, self._item_cate[neg]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Batch]]:
        for idx in self.batches():
            yield idx, self.gather(idx)
