"""How often each id occurs in the training samples: n_j of the DIN paper's Eqs. 4-7 (MBA), and the
frequencies that the filter regularizer ranks ids by.

Counted once, vectorised, over the ``train`` split as the model sees it: an id occurs once for every
training sample whose **target** it is, plus once for every training sample whose **history** (the
most recent ``max_len`` behaviours before the target) contains it; a behaviour repeated in one
history counts each time. Users occur once per training sample.
"""

from __future__ import annotations

import numpy as np

from ctrbench.data.schema import ProcessedDataset


def history_window_counts(dataset: ProcessedDataset, max_len: int, split: str = "train") -> np.ndarray:
    """For every behaviour of the flat stream, in how many samples of ``split`` it is in the history.

    A sample of user u sees the behaviours ``[max(hist_start, hist_end - max_len), hist_end)`` of u's
    stream. Each sample adds +1 where its window starts and -1 where it ends (flat positions), and
    the running sum over the flat stream is the count: two bincounts and one cumsum.
    """
    s = dataset.splits[split]
    st = dataset.streams
    n_beh = st.n_behaviours
    if len(s) == 0 or n_beh == 0:
        return np.zeros(n_beh, dtype=np.int64)
    base = st.offsets[s.user].astype(np.int64)
    end = s.hist_end.astype(np.int64)
    begin = np.maximum(s.history_start().astype(np.int64), end - max_len)
    real = end > begin
    delta = np.bincount(base[real] + begin[real], minlength=n_beh + 1) - np.bincount(base[real] + end[real], minlength=n_beh + 1)
    return np.cumsum(delta[:n_beh]).astype(np.int64)


def id_frequencies(dataset: ProcessedDataset, max_len: int, split: str = "train") -> dict[str, np.ndarray]:
    """n_j for every id of each field: ``item``, ``cate`` and ``user`` (arrays indexed by id)."""
    s = dataset.splits[split]
    st, v = dataset.streams, dataset.vocab
    in_history = history_window_counts(dataset, max_len, split)
    item = np.bincount(s.item, minlength=v.n_items) + np.bincount(st.item, weights=in_history, minlength=v.n_items).astype(np.int64)
    cate = np.bincount(s.cate, minlength=v.n_cates) + np.bincount(st.cate, weights=in_history, minlength=v.n_cates).astype(np.int64)
    user = np.bincount(s.user, minlength=v.n_users)
    for counts in (item, cate, user):
        counts[0] = 0  # padding / unknown
    return {"item": item.astype(np.int64), "cate": cate.astype(np.int64), "user": user.astype(np.int64)}
