"""Raw keys -> dense ids and per-user streams: the step every real source shares.

Ids are assigned in **sorted raw-key order**, from 1 (0 is padding / unknown), as the DIN code's
``build_map`` does (papers.md §1.2, step 3), so they do not depend on the order of lines in a file.
Items are the items that occur in the behaviours; an item without metadata (or with an empty
category) gets the unknown category 0 and is counted. Each user's behaviours are ordered by time,
ties kept in file order (a stable sort).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctrbench.data.schema import Streams
from ctrbench.data.sources.raw import Events, ItemMeta
from ctrbench.errors import DataError


def dense_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(id of every entry, 1-based, in sorted key order; the sorted distinct keys)."""
    codes, uniques = pd.factorize(keys, sort=True)
    if (codes < 0).any():
        raise DataError("a key is missing (null) where every behaviour needs one")
    return codes.astype(np.int64) + 1, np.asarray(uniques)


def item_categories(item_keys: np.ndarray, meta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The category id of each item (``item_cate``, index 0 the unknown item), the category keys in
    id order, and which items have a category: each item's first metadata row; an item without one,
    or with an empty category, gets the unknown category 0."""
    item_cate_key = np.full(len(item_keys), None, dtype=object)
    if meta is not None and len(meta.item):
        m = pd.DataFrame({"item": meta.item, "cate": meta.cate}).drop_duplicates("item", keep="first")
        pos = pd.Index(item_keys).get_indexer(m["item"].to_numpy())
        hit = pos >= 0
        item_cate_key[pos[hit]] = m["cate"].to_numpy()[hit]
    as_text = pd.Series(item_cate_key, dtype=object).where(lambda c: c.notna(), "").astype(str).to_numpy()
    known = as_text != ""
    item_cate = np.zeros(len(item_keys) + 1, dtype=np.int64)
    cate_keys = np.array([], dtype=object)
    if known.any():
        cid, cate_keys = dense_ids(as_text[known])
        item_cate[1:][known] = cid
    return item_cate, cate_keys, known


def encode(events: Events, meta: ItemMeta | None) -> tuple[Streams, np.ndarray, dict]:
    """(streams, category id of every item id, a report of what was encoded)."""
    if len(events) == 0:
        raise DataError("the source has no behaviours")
    uid, user_keys = dense_ids(events.user)
    iid, item_keys = dense_ids(events.item)
    n_users, n_items = len(user_keys) + 1, len(item_keys) + 1

    item_cate, cate_keys, known = item_categories(item_keys, meta)

    order = np.lexsort((np.arange(len(events)), events.time, uid))
    uid, iid, time = uid[order], iid[order], np.asarray(events.time, dtype=np.int64)[order]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(uid, minlength=n_users))
    rating = None if events.rating is None else np.asarray(events.rating, dtype=np.float32)[order]
    streams = Streams(offsets=offsets, item=iid, cate=item_cate[iid], time=time, rating=rating)
    report = {
        "behaviours": int(len(events)),
        "users": int(n_users - 1),
        "items": int(n_items - 1),
        "categories": int(len(cate_keys)),
        "items_without_category": int((~known).sum()),
    }
    return streams, item_cate, report
