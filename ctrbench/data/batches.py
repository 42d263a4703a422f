"""The Batcher: whole batches gathered by array indexing, padded to the batch's longest history.

No per-sample Python and no per-row Dataset + collate: a batch is a vector of sample indices, and
its histories are one gather from the flat behaviour stream:

    start_b = offsets[user_b] + max(hist_start_b, hist_end_b - max_len)   (the most recent max_len behaviours;
    len_b   = hist_end_b - (start_b - offsets[user_b])                     hist_start_b = 0 unless windowed)
    hist[b, j] = stream[start_b + j]  for j < len_b, else 0       (post-padding, oldest first)

With ``bucket > 1`` a shuffled epoch is cut into chunks of ``bucket`` batches and each chunk is
sorted by history length before it is cut into batches (whose order is then shuffled), so that
little of a batch is padding while batches stay random.

Evaluation (unshuffled) walks the samples sorted by history length. With ``max_positions`` its
batches hold at most ``batch_size`` rows *and* at most ``max_positions`` history positions
(rows x the batch's longest history; ``position_bounds``): batches of long histories get fewer
rows, so that a model whose work grows with every position (DIN's attention MLP) keeps its
activations in the cores' caches.

Training order is a pure function of ``(seed, epoch)``, and DIEN's negative behaviours of the i-th
batch of an epoch are drawn from a generator seeded by ``(seed, epoch, i)``: the Batcher holds no
state besides its epoch, so a resumed run skips the batches it has done (``iterate(start=k)``) and
sees exactly the batches, negatives included, that an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from ctrbench.data.schema import Batch, ProcessedDataset
from ctrbench.errors import ConfigError


# Batches smaller than this are gathered in groups of about this many rows (Batcher.iterate).
GATHER_ROWS = 1024


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
        shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_positions: int | None = None,
    ) -> None:
        """``shard``: maps a batch's indices to this process's part of them (distributed training:
        every rank walks the same batches and gathers only its slice). ``max_positions``
        (unshuffled batchers only): also cap each batch's rows x longest history (``position_bounds``)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        if max_positions is not None and (not isinstance(max_positions, int) or max_positions < 1):
            raise ConfigError(f"max_positions must be a positive integer or None, got {max_positions!r}")
        if max_positions is not None and shuffle:
            raise ConfigError("max_positions applies to evaluation order (shuffle=False) only")
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
        self.shard = shard
        self.max_positions = max_positions
        self._bounds: list[tuple[int, int]] | None = None  # position-capped cuts of the sorted order, made once
        self._item_cate = torch.from_numpy(np.array(dataset.item_cate, dtype=np.int64))
        self._n_items = len(dataset.item_cate)
        st = dataset.streams
        self._offsets = torch.from_numpy(np.ascontiguousarray(st.offsets, dtype=np.int64))
        # Flat streams with one trailing 0 so that padded positions can gather a harmless index.
        self._s_item = torch.from_numpy(np.concatenate([st.item, [0]]).astype(np.int64, copy=False))
        self._s_cate = torch.from_numpy(np.concatenate([st.cate, [0]]).astype(np.int64, copy=False))
        self._pad = st.n_behaviours
        self.user = torch.from_numpy(s.user.astype(np.int64))
        self.item = torch.from_numpy(s.item.astype(np.int64))
        self.cate = torch.from_numpy(s.cate.astype(np.int64))
        self.label = torch.from_numpy(s.label.astype(np.float32))
        hist_end = torch.from_numpy(s.hist_end.astype(np.int64))
        first = torch.from_numpy(s.history_start().astype(np.int64))  # 0 unless the source stores windows
        begin = torch.maximum(first, hist_end - max_len)
        self.hist_len = torch.clamp(hist_end - begin, min=0)
        self.hist_start = self._offsets[self.user] + begin
        self.n = len(s)

    def __len__(self) -> int:
        if self.max_positions is not None:
            return len(self.position_cuts())
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

    def position_cuts(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each batch in the sorted evaluation order under ``max_positions``."""
        if self._bounds is None:
            self._bounds = position_bounds(self.hist_len[self.order()], self.batch_size, int(self.max_positions))
        return self._bounds

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Index tensors of the batches of the current epoch, from its ``start``-th batch on (the
        earlier ones are skipped without being gathered)."""
        order = self.order()
        if self.max_positions is not None:
            for a, b in self.position_cuts()[start:]:
                yield order[a:b]
            return
        starts = list(range(0, self.n, self.batch_size))
        if self.drop_last and self.n % self.batch_size:
            starts = starts[:-1]
        if self.shuffle and self.bucket > 1:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7)
            starts = [starts[i] for i in torch.randperm(len(starts), generator=g).tolist()]
        for s in starts[start:]:
            yield order[s : s + self.batch_size]

    def batch_seed(self, i: int) -> int:
        """The seed of the random draws (DIEN's negatives) of the i-th batch of the current epoch."""
        return ((self.seed * 1_000_003 + self.epoch) * 1_000_033 + i) % (2**63 - 1) + 1

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, Batch]]:
        """``(indices, Batch)`` of the current epoch from its ``start``-th batch on; the i-th batch's
        negatives come from a generator seeded by ``batch_seed(i)``."""
        gen = torch.Generator() if self.negative_history else None
        if gen is None and self.batch_size < GATHER_ROWS:
            # small batches (the papers' 32) are gathered a group at a time: one gather of about
            # GATHER_ROWS rows, each batch a slice of it, the same as gathering it alone (gather_each)
            group: list[torch.Tensor] = []
            for idx in self.batches(start):
                group.append(self.shard(idx) if self.shard is not None else idx)
                if len(group) * self.batch_size >= GATHER_ROWS:
                    yield from zip(group, self.gather_each(group))
                    group = []
            if group:
                yield from zip(group, self.gather_each(group))
            return
        for i, idx in enumerate(self.batches(start), start):
            if self.shard is not None:
                idx = self.shard(idx)
            if gen is not None:
                gen.manual_seed(self.batch_seed(i))
            yield idx, self.gather(idx, generator=gen)

    def gather(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """The Batch of the samples ``idx`` (integer indices, any order, any size); ``generator``
        draws the negative behaviours when they are asked for (torch's global generator when None)."""
        # index_select rather than t[idx]: the same gathers, 3x faster on CPU for the [B, L] grid of a
        # group of training batches (advanced indexing goes through a general N-d kernel)
        idx = torch.as_tensor(idx, dtype=torch.int64)
        hist_len = self.hist_len.index_select(0, idx)
        L = max(int(hist_len.max()), 1) if len(idx) else 1
        j = torch.arange(L)
        mask = j[None, :] < hist_len[:, None]
        pos = torch.where(mask, self.hist_start.index_select(0, idx)[:, None] + j[None, :], self._pad)
        flat = pos.reshape(-1)
        hist_item = self._s_item.index_select(0, flat).view_as(pos)
        neg_item = neg_cate = None
        if self.negative_history:
            neg_item, neg_cate = self.negative_behaviours(hist_item, mask, generator)
        return Batch(
            user=self.user.index_select(0, idx),
            item=self.item.index_select(0, idx),
            cate=self.cate.index_select(0, idx),
            label=self.label.index_select(0, idx),
            hist_item=hist_item,
            hist_cate=self._s_cate.index_select(0, flat).view_as(pos),
            hist_mask=mask,
            hist_len=hist_len,
            neg_hist_item=neg_item,
            neg_hist_cate=neg_cate,
        )

    def gather_each(self, idxs: list[torch.Tensor]) -> list[Batch]:
        """``[gather(idx) for idx in idxs]`` from one gather of all their samples: each Batch is a slice
        of it cut to its own longest history, so equal to what ``gather(idx)`` gives. Evaluation
        gathers a few batches at a time this way: the dozen small tensor operations of a gather then
        run once per group instead of once per batch. Batches with negative behaviours are gathered
        one by one (their draws belong to each batch)."""
        sizes = [len(idx) for idx in idxs]
        if self.negative_history or len(idxs) < 2 or min(sizes) == 0:
            return [self.gather(idx) for idx in idxs]
        whole = self.gather(torch.cat(idxs))
        # each batch's longest history (at least 1), for all of them in one call
        starts = np.cumsum([0, *sizes[:-1]])
        longest = np.maximum(np.maximum.reduceat(whole.hist_len.numpy(), starts), 1).tolist()
        # per-sample fields are [B], history fields [B, L]: the rows of each batch (views, split in one
        # call per field), and its history cut to its own L
        user, item, cate, label, hist_len = (t.split(sizes) for t in (whole.user, whole.item, whole.cate, whole.label, whole.hist_len))
        hist_item, hist_cate, hist_mask = (t.split(sizes) for t in (whole.hist_item, whole.hist_cate, whole.hist_mask))
        return [
            Batch(user=user[k], item=item[k], cate=cate[k], label=label[k], hist_item=hist_item[k].narrow(1, 0, n),
                  hist_cate=hist_cate[k].narrow(1, 0, n), hist_mask=hist_mask[k].narrow(1, 0, n), hist_len=hist_len[k])
            for k, n in enumerate(longest)
        ]

    def negative_behaviours(
        self, hist_item: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DIEN's auxiliary negatives: for every real history position an item drawn uniformly from
        the vocabulary other than the item at that position (a clash moves to the next id), with its
        own category; 0 at padded positions. Drawn from ``generator`` (training: one seeded per
        batch, see ``iterate``), else from torch's global generator."""
        if self._n_items < 3:
            raise ConfigError("DIEN's negative behaviours need at least 2 items in the vocabulary")
        neg = torch.randint(1, self._n_items, hist_item.shape, generator=generator)
        clash = neg == hist_item
        neg = torch.where(clash, neg % (self._n_items - 1) + 1, neg)
        neg = neg * mask
        return neg, self._item_cate[neg]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Batch]]:
        return self.iterate(0)

    def forever(self) -> Iterator[Batch]:
        """The batches of epoch 0, 1, 2, ... without end (benchmarks that time a number of steps)."""
        epoch = 0
        while True:
            self.set_epoch(epoch)
            for _, batch in self:
                yield batch
            epoch += 1


def position_bounds(sorted_len: torch.Tensor, max_rows: int, max_positions: int) -> list[tuple[int, int]]:
    """Cut rows sorted by history length (non-decreasing) into consecutive batches, each as long as
    it can be with at most ``max_rows`` rows and rows x its longest history (the last row's, an
    empty history counting as 1, as a gather pads it to) at most ``max_positions``; a batch has at
    least one row. ``(start, stop)`` per batch. Greedy, with a binary search per batch: the count
    is monotone because both factors are."""
    lens = sorted_len.clamp(min=1).tolist()
    n, out, s = len(lens), [], 0
    while s < n:
        lo, hi = 1, min(max_rows, n - s)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * lens[s + mid - 1] <= max_positions:
                lo = mid
            else:
                hi = mid - 1
        out.append((s, s + lo))
        s += lo
    return out


def eval_max_len(dataset: ProcessedDataset, setting) -> int:
    """How many of the most recent behaviours an evaluation sample's history keeps.

    ``setting`` is ``dataset.eval_max_len``, read with the training cut ``dataset.max_len`` as its
    default (the DIN protocol and the others have no such key); ``None`` means no cut, every earlier
    behaviour (the DIEN protocol: the DIEN code's ``prepare_data`` cuts training histories to
    ``maxlen=100`` and leaves test histories whole, papers.md §2.2); an integer >= 1 cuts there."""
    if setting is None:
        lengths = dataset.streams.lengths()
        return max(1, int(lengths.max()) if lengths.size else 1)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"dataset.eval_max_len={setting!r} is invalid: expected an integer >= 1 or null (no cut)")
    return setting
