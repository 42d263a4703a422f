"""BARS AmazonElectronics_x1 (reczoo/Datasets): the DIN authors' Electronics data, imported as-is.

Files: ``train.csv`` and ``test.csv`` (in ``raw_dir`` or one folder down), header
``label,user_id,item_id,cate_id,item_history,cate_history``; histories are ``^``-joined integer
ids (possibly empty), the category history aligned with the item history. They are the DIN
code's ``dataset.pkl`` converted to CSV (``convert_amazonelectronics_x1.py``; peers.md §3.1):
train rows are every position 1..n-2 of a user's stream with its positive and one fixed negative,
test rows each user's last position (one positive, one negative). No direct download link is
known: get them from https://github.com/reczoo/Datasets/tree/main/Amazon/AmazonElectronics_x1
(which points to the files on Hugging Face); their published md5 sums are checked and reported.

The rows are kept exactly (same targets, negatives, labels and histories), so results compare
with the BARS leaderboard. They do not go through ``encode`` and a protocol; instead:

- **Streams.** Our store keeps each user's history once. For one user the rows' histories are
  prefixes of one behaviour stream, so the stream is the user's longest history (over both files)
  and a row's ``hist_end`` is the length of its history. This is *verified*, vectorised: every
  history must equal the start of its user's stream (items and categories), else a DataError
  names the file and line of the first row (in file order, train before test) that differs. This
  check is structural and raises under ``on_bad_line=skip`` too. Behaviour time = position in
  the stream (0, 1, ...).
- **Rows with unrelated histories** (``dataset.source.histories=rows``; files written by other
  generators, such as the peers' speed-benchmark data, where every event draws its own history):
  no prefix check; a user's stream is their distinct histories one after another (the positive
  and negative of one event share theirs), and each row keeps its own window
  ``[hist_start, hist_end)`` of it.
- **Ids.** Raw ids map to dense ids from 1 (0 = padding) in sorted raw-id order: users; items
  (targets and histories); categories (target and history categories).
- **Item categories.** From the (item, category) pairs of the targets (train rows, then test
  rows) and then of the streams; the first pair of an item wins, and items seen with several
  categories are counted. A sample's ``cate`` is its row's own ``cate_id``.
- **Splits.** test = ``test.csv``. Validation (our carve-out, so that no model is selected on
  test; BARS validates on test): for each user, the train rows at the user's largest
  ``hist_end`` (their last training position, positive and negative), provided the user keeps at
  least one earlier training position (as ``DINProtocol`` does); train = the other train rows.
  ``dataset.protocol.valid=none`` keeps every train row for training (no validation split; use
  ``trainer.selection=last``).
  Rows keep file order within a split.
- **Malformed lines** (wrong field count, an id that is not an integer, a label outside {0, 1},
  item and category histories of different lengths) follow ``dataset.on_bad_line``; a wrong
  header is a DataError listing the expected columns.

Speed: ``pyarrow.csv`` with typed columns; the ``^`` strings are split with
``pyarrow.compute.split_pattern`` and flattened; everything after is numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ctrbench.checksums import file_digest
from ctrbench.data.download import RemoteFile
from ctrbench.data.encode import dense_ids
from ctrbench.data.schema import Samples, Streams
from ctrbench.data.sources.delimited import Field, Table, candidate_folders, int64_ok, read_delimited
from ctrbench.data.sources.raw import Events, ItemMeta, LineErrors
from ctrbench.data.sources.real import RealSource
from ctrbench.errors import ConfigError, DataError

COLUMNS = ("label", "user_id", "item_id", "cate_id", "item_history", "cate_history")
FIELDS = (
    Field("label"), Field("user_id"), Field("item_id"), Field("cate_id"),
    Field("item_history", "str"), Field("cate_history", "str"),
)
SEP = "^"
FILES = ("train.csv", "test.csv")
PAGE = "https://github.com/reczoo/Datasets/tree/main/Amazon/AmazonElectronics_x1"
PUBLISHED_MD5 = {"train.csv": "e9bf80b92985e463db18fdc753d347b5", "test.csv": "57a20e82fe736dd495f2eaf0669bf6d0"}
VALID_MODES = ("last_position", "none")
HISTORY_LAYOUTS = ("prefix", "rows")


@dataclass
class AsIsProtocol:
    """The 'protocol' of a dataset imported as-is (BARS): the files fix train and test; ``valid``
    says how validation is carved out of train (``last_position``: each user's last training
    position). Only ``BarsSource.build`` understands it."""

    valid: str = "last_position"

    name = "as_is"

    def __post_init__(self) -> None:
        if self.valid not in VALID_MODES:
            raise ConfigError(f"dataset.protocol.valid={self.valid!r}: expected one of {', '.join(VALID_MODES)}")

    def build(self, streams: Streams, item_cate: np.ndarray):
        raise ConfigError(
            "dataset.protocol=as_is only works with the BARS source (ctrbench.data.sources.bars.BarsSource), "
            "whose files carry their own train/test rows; pick another protocol (e.g. din) for this dataset"
        )


@dataclass
class _Rows:
    """One file's rows: raw ids, labels and histories (flattened in row order; row r's history is
    ``hist_*[start[r]:start[r] + hist_len[r]]``)."""

    table: Table
    label: np.ndarray
    user: np.ndarray
    item: np.ndarray
    cate: np.ndarray
    hist_len: np.ndarray
    hist_item: np.ndarray
    hist_cate: np.ndarray

    @property
    def path(self) -> Path:
        return self.table.path

    def __len__(self) -> int:
        return int(self.label.shape[0])


@dataclass
class _Histories:
    """The split ``^`` strings of one history column: per row its length; the flattened element
    texts, the row each came from, and their integer values (None when one is not an integer)."""

    length: np.ndarray
    values: pa.Array
    row: np.ndarray
    ints: np.ndarray | None


def split_histories(column) -> _Histories:
    """Split a column of ``^``-joined ids (an empty string: an empty history), vectorised."""
    text = column.cast(pa.large_string())
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    lists = pc.split_pattern(text, pattern=SEP)
    empty = pc.equal(pc.binary_length(text), 0).to_numpy(zero_copy_only=False)
    length = np.where(empty, 0, pc.list_value_length(lists).to_numpy(zero_copy_only=False)).astype(np.int64)
    values = pc.list_flatten(lists)
    row = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    if empty.any():  # an empty history splits into one empty element: drop it
        keep = ~empty[row]
        values, row = values.filter(pa.array(keep)), row[keep]
    try:
        ints = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        ints = None
    return _Histories(length=length, values=values, row=row, ints=ints)


def _not_int(h: _Histories) -> dict[int, str]:
    """{row: its first history element that is not an integer}."""
    if h.ints is not None:
        return {}
    ok = int64_ok(h.values)
    out: dict[int, str] = {}
    for e in np.flatnonzero(~ok).tolist():
        out.setdefault(int(h.row[e]), h.values[e].as_py())
    return out


def _row_problems(table: Table, items: _Histories, cates: _Histories) -> dict[int, str]:
    """{row: what is wrong with it}: a label outside {0, 1}, a history element that is not an
    integer, item and category histories of different lengths (the first problem of a row)."""
    problems: dict[int, str] = {}
    label = table.columns["label"]
    for r in np.flatnonzero((label != 0) & (label != 1)).tolist():
        problems[r] = f"label={int(label[r])} is not 0 or 1"
    for name, h in (("item_history", items), ("cate_history", cates)):
        for r, value in _not_int(h).items():
            problems.setdefault(r, f"{name} has an element {value[:40]!r} that is not an integer")
    for r in np.flatnonzero(items.length != cates.length).tolist():
        problems.setdefault(r, f"item_history has {items.length[r]} ids but cate_history has {cates.length[r]}")
    return problems


def read_rows(path: Path, errors: LineErrors) -> _Rows:
    """Read and check one BARS file (see the module docstring)."""
    table = read_delimited(path, FIELDS, errors, delimiter=",", header=COLUMNS)
    items, cates = split_histories(table.columns["item_history"]), split_histories(table.columns["cate_history"])
    problems = _row_problems(table, items, cates)
    if problems:
        table = table.reject(np.fromiter(problems, dtype=np.int64), problems.__getitem__, errors)
        if len(table) == 0:
            raise DataError(f"{path} has no valid rows ({errors.count} bad lines skipped)")
        items, cates = split_histories(table.columns["item_history"]), split_histories(table.columns["cate_history"])
    c = table.columns
    return _Rows(
        table=table, label=c["label"], user=c["user_id"], item=c["item_id"], cate=c["cate_id"],
        hist_len=items.length,
        hist_item=items.ints, hist_cate=cates.ints,
    )




def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    np.cumsum(x[:-1], out=out[1:])
    return out


@dataclass
class _Imported:
    """Both files, with dense ids and the reconstructed streams."""

    files: list[_Rows]
    user_keys: np.ndarray
    item_keys: np.ndarray
    cate_keys: np.ndarray
    uid: np.ndarray  # per row (train rows, then test rows)
    iid: np.ndarray
    cid: np.ndarray
    streams: Streams
    item_cate: np.ndarray
    category_conflicts: int
    hist_start: np.ndarray | None = None  # per row, ``histories=rows`` only: where its window starts
    hist_end: np.ndarray | None = None  #     in its user's stream, and where it ends


def build_streams(files: list[_Rows], uid: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, raw item stream, raw category stream): each user's stream is their longest
    history; every row's history is then verified to be a prefix of it."""
    hist_len = np.concatenate([f.hist_len for f in files])
    flat_item = np.concatenate([f.hist_item for f in files])
    flat_cate = np.concatenate([f.hist_cate for f in files])
    start = _exclusive_cumsum(hist_len)

    order = np.lexsort((np.arange(len(uid)), -hist_len, uid))
    group_first = np.flatnonzero(np.diff(uid[order], prepend=-1) != 0)
    longest = order[group_first]  # one row per user, users ascending
    stream_len = np.zeros(n_users, dtype=np.int64)
    stream_len[uid[longest]] = hist_len[longest]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(stream_len, out=offsets[1:])
    src = np.repeat(start[longest] - offsets[uid[longest]], hist_len[longest]) + np.arange(offsets[-1], dtype=np.int64)
    stream_item, stream_cate = flat_item[src], flat_cate[src]

    # Element e of row r sits at stream position offsets[u_r] + (e - start[r]).
    at = np.repeat(offsets[uid] - start, hist_len) + np.arange(len(flat_item), dtype=np.int64)
    differs = (flat_item != stream_item[at]) | (flat_cate != stream_cate[at])
    if differs.any():
        _prefix_error(files, start, int(np.argmax(differs)))
    return offsets, stream_item, stream_cate


def build_window_streams(files: list[_Rows], uid: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``histories=rows``: (offsets, raw item stream, raw category stream, hist_start, hist_end) when
    a user's rows carry histories that are not prefixes of one stream. A user's stream is their
    distinct histories one after another (rows of one user with equal histories -- the positive
    and the negative of one event -- share one copy), and each row's history is its window
    ``[hist_start, hist_end)`` of that stream.

    Equal histories are found by a 64-bit polynomial hash of (user, items, categories) per row,
    then confirmed element by element against the first row of the same hash (a collision keeps
    its own copy)."""
    hist_len = np.concatenate([f.hist_len for f in files]).astype(np.int64)
    flat_item = np.concatenate([f.hist_item for f in files]).astype(np.int64)
    flat_cate = np.concatenate([f.hist_cate for f in files]).astype(np.int64)
    start = _exclusive_cumsum(hist_len)
    n = len(uid)
    pos_in_row = np.arange(len(flat_item), dtype=np.int64) - np.repeat(start, hist_len)
    with np.errstate(over="ignore"):
        mult = np.uint64(0x9E3779B97F4A7C15)
        power = np.cumprod(np.full(int(hist_len.max(initial=0)) + 1, mult, dtype=np.uint64))
        elem = (flat_item.astype(np.uint64) * np.uint64(1_000_003) + flat_cate.astype(np.uint64) + np.uint64(1)) * power[pos_in_row]
        h = np.zeros(n, dtype=np.uint64)
        rows = np.flatnonzero(hist_len > 0)  # a row's elements are contiguous: one segmented (wrapping) sum
        if len(rows):
            h[rows] = np.add.reduceat(elem, start[rows])
        h = h * np.uint64(31) + uid.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9) + hist_len.astype(np.uint64)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    rep = first[inverse.ravel()]  # the first row with the same hash
    cand = np.flatnonzero(rep != np.arange(n))
    same = np.zeros(n, dtype=bool)
    if len(cand):
        ok = (uid[cand] == uid[rep[cand]]) & (hist_len[cand] == hist_len[rep[cand]])
        cand = cand[ok]
        lens = hist_len[cand]
        same[cand[lens == 0]] = True
        cand, lens = cand[lens > 0], lens[lens > 0]
        if len(cand):
            within = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(_exclusive_cumsum(lens), lens)
            a = np.repeat(start[cand], lens) + within
            b = np.repeat(start[rep[cand]], lens) + within
            equal = (flat_item[a] == flat_item[b]) & (flat_cate[a] == flat_cate[b])
            same[cand] = np.logical_and.reduceat(equal, _exclusive_cumsum(lens))
    distinct = np.flatnonzero(~same)
    # Distinct histories grouped by user (file order within a user) make the streams.
    order = distinct[np.argsort(uid[distinct], kind="stable")]
    stream_len = np.bincount(uid[order], weights=hist_len[order], minlength=n_users).astype(np.int64)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(stream_len, out=offsets[1:])
    lens = hist_len[order]
    flat_start = _exclusive_cumsum(lens)  # where each distinct history lands in the flat stream
    src = np.repeat(start[order] - flat_start, lens) + np.arange(int(lens.sum()), dtype=np.int64)
    window_start = np.zeros(n, dtype=np.int64)
    window_start[order] = flat_start - offsets[uid[order]]
    hist_start = window_start[np.where(same, rep, np.arange(n))]
    return offsets, flat_item[src], flat_cate[src], hist_start, hist_start + hist_len


def _prefix_error(files: list[_Rows], start: np.ndarray, element: int) -> None:
    # A row with an empty history starts where the next row starts: side="right" finds the row
    # that owns the element.
    row = int(np.searchsorted(start, element, side="right") - 1)
    for f in files:
        if row < len(f):
            line = int(f.table.line_of(np.array([row]))[0])
            raise DataError(
                f"{f.path}, line {line}: the history of user {int(f.user[row])} is not a prefix of that user's "
                f"longest history (its behaviour {element - int(start[row]) + 1} differs, item or category); BARS rows of one "
                f"user must share one behaviour stream (for files whose rows carry unrelated histories, set "
                f"dataset.source.histories=rows)"
            )
        row -= len(f)
    raise AssertionError("row out of range")


def item_categories(item: np.ndarray, cate: np.ndarray, n_items: int, n_cates: int) -> tuple[np.ndarray, int]:
    """(category id of every item id, number of items seen with several categories) from
    (item, category) id pairs in priority order: the first pair of an item wins."""
    item_cate = np.zeros(n_items, dtype=np.int64)
    first = ~pd.Series(item).duplicated(keep="first").to_numpy()
    item_cate[item[first]] = cate[first]
    pairs = pd.unique(item * np.int64(n_cates) + cate)
    conflicts = int(np.count_nonzero(np.bincount(pairs // n_cates, minlength=n_items) > 1))
    return item_cate, conflicts


def import_rows(files: list[_Rows], histories: str = "prefix") -> _Imported:
    """Dense ids, streams and item categories of the rows of both files."""
    uid, user_keys = dense_ids(np.concatenate([f.user for f in files]))
    n_users = len(user_keys) + 1
    windows: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    if histories == "rows":
        offsets, stream_item_raw, stream_cate_raw, *win = build_window_streams(files, uid, n_users)
        windows = (win[0], win[1])
    else:
        offsets, stream_item_raw, stream_cate_raw = build_streams(files, uid, n_users)
    n_rows = len(uid)

    iid_all, item_keys = dense_ids(np.concatenate([f.item for f in files] + [stream_item_raw]))
    cid_all, cate_keys = dense_ids(np.concatenate([f.cate for f in files] + [stream_cate_raw]))
    iid, cid = iid_all[:n_rows], cid_all[:n_rows]
    item_cate, conflicts = item_categories(iid_all, cid_all, len(item_keys) + 1, len(cate_keys) + 1)

    lengths = np.diff(offsets)
    time = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    streams = Streams(offsets=offsets, item=iid_all[n_rows:], cate=cid_all[n_rows:], time=time)
    return _Imported(files, user_keys, item_keys, cate_keys, uid, iid, cid, streams, item_cate, conflicts, *windows)


def last_position_valid(user: np.ndarray, hist_end: np.ndarray, n_users: int) -> np.ndarray:
    """Mask of the train rows at their user's largest hist_end, for users with at least one
    smaller (earlier) training position."""
    largest = np.full(n_users, -1, dtype=np.int64)
    smallest = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.maximum.at(largest, user, hist_end)
    np.minimum.at(smallest, user, hist_end)
    return (hist_end == largest[user]) & (smallest[user] < largest[user])


@dataclass
class BarsSource(RealSource):
    """BARS AmazonElectronics_x1, imported as-is (see the module docstring)."""

    histories: str = "prefix"  # prefix: a user's rows share one stream (verified) | rows: any history per row

    dataset_name = "amazon_electronics_x1"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.histories not in HISTORY_LAYOUTS:
            raise ConfigError(f"dataset.source.histories={self.histories!r}: expected one of {', '.join(HISTORY_LAYOUTS)}")

    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:
        """``train.csv`` and ``test.csv``, together in ``raw_dir`` or one of its subfolders."""
        for folder in candidate_folders(Path(raw_dir), ["AmazonElectronics_x1"]):
            if all((folder / name).is_file() for name in FILES):
                return {"train": folder / FILES[0], "test": folder / FILES[1]}
        return None

    def needed_files(self) -> list[str]:
        return [f"{name} (header {','.join(COLUMNS)})" for name in FILES]

    def remote_files(self) -> list[RemoteFile]:
        return [RemoteFile(name=name, url=None, page=PAGE, md5=PUBLISHED_MD5[name]) for name in FILES]

    def _import(self, inputs: dict[str, Path]) -> tuple[_Imported, dict]:
        paths = [Path(inputs["train"]), Path(inputs["test"])]
        errors = [LineErrors(p, self.on_bad_line) for p in paths]
        files = [read_rows(p, e) for p, e in zip(paths, errors)]
        data = import_rows(files, self.histories)
        md5 = {p.name: file_digest(p, "md5") for p in paths}
        report = {
            "format": "BARS AmazonElectronics_x1 (" + ",".join(COLUMNS) + ")",
            "rows": {p.name: len(f) for p, f in zip(paths, files)},
            "md5": {name: {"md5": h, "matches_published": h == PUBLISHED_MD5.get(name)} for name, h in md5.items()},
            "item_category_conflicts": data.category_conflicts,
            "bad_lines": {role: e.report() for role, e in zip(("train", "test"), errors)},
        }
        return data, report

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta, dict]:
        """The reconstructed behaviour streams as raw-key events (time = position in the stream)
        and the item categories; ``build`` is the path that keeps the BARS rows."""
        data, report = self._import(inputs)
        s = data.streams
        user = np.repeat(np.arange(len(s.offsets) - 1), s.lengths())
        events = Events(user=data.user_keys[user - 1], item=data.item_keys[s.item - 1], time=s.time)
        has_cate = data.item_cate[1:] > 0
        meta = ItemMeta(item=data.item_keys[has_cate], cate=data.cate_keys[data.item_cate[1:][has_cate] - 1])
        return events, meta, report

    def build(self, protocol) -> tuple[Streams, np.ndarray, dict[str, Samples], dict]:
        name = getattr(protocol, "name", type(protocol).__name__)
        if name != AsIsProtocol.name:
            raise ConfigError(
                f"dataset '{self.dataset_name}': BARS data is imported as-is (its files fix the train/test rows and "
                f"negatives), so dataset.protocol must be as_is (ctrbench.data.sources.bars.AsIsProtocol), not {name!r}"
            )
        assert self._inputs is not None, "locate() first"
        data, report = self._import(self._inputs)
        splits, split_info = self._splits(data, getattr(protocol, "valid", "last_position"))
        s = data.streams
        encoded = {
            "behaviours": s.n_behaviours,
            "users": len(data.user_keys),
            "items": len(data.item_keys),
            "categories": len(data.cate_keys),
            "items_without_category": int(np.count_nonzero(data.item_cate[1:] == 0)),
        }
        info = {
            "protocol": AsIsProtocol.name,
            **split_info,
            "source": {"files": {k: str(v) for k, v in self._inputs.items()}, **report, "encoded": encoded},
        }
        return s, data.item_cate, splits, info

    @staticmethod
    def _splits(data: _Imported, valid: str) -> tuple[dict[str, Samples], dict]:
        if valid not in VALID_MODES:
            raise ConfigError(f"dataset.protocol.valid={valid!r}: expected one of {', '.join(VALID_MODES)}")
        label = np.concatenate([f.label for f in data.files]).astype(np.float32)
        if data.hist_end is not None:  # histories=rows: each row's window of its user's stream
            rows = Samples(user=data.uid, item=data.iid, cate=data.cid, label=label, hist_end=data.hist_end, hist_start=data.hist_start)
        else:
            hist_end = np.concatenate([f.hist_len for f in data.files])
            rows = Samples(user=data.uid, item=data.iid, cate=data.cid, label=label, hist_end=hist_end)
        n_train = len(data.files[0])
        train, test = rows.take(np.arange(n_train)), rows.take(np.arange(n_train, len(label)))
        if valid == "none":
            is_valid = np.zeros(len(train), dtype=bool)
        else:
            is_valid = last_position_valid(train.user, train.hist_end, len(data.user_keys) + 1)
        splits = {"train": train.take(np.flatnonzero(~is_valid)), "valid": train.take(np.flatnonzero(is_valid)), "test": test}
        info = {
            "valid": valid,
            "valid_users": int(np.unique(splits["valid"].user).size),
            "rows": {k: len(v) for k, v in splits.items()},
        }
        return splits, info
