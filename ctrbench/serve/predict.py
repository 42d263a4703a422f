"""``ctrbench predict RUN_DIR input=FILE output=FILE``: score new rows with a run's selected checkpoint.

Input rows are requests: ``user``, ``item`` (the candidate) and ``hist_item`` (the user's behaviours,
a list, oldest first), optionally ``cate`` and ``hist_cate`` (when absent, each item's own category
from the dataset), ``label``, ``time`` / ``hist_time`` (no model reads times; they are carried to
the output like every other column). Files are CSV (a list is one field, its elements joined by
``list_sep``, ``"12|7|33"``), Parquet (list columns) or JSON lines (JSON arrays).

Ids are the raw keys of the dataset the run was trained on (``ids=raw``, the default), mapped by the
run's vocabulary (``Vocabulary``): dense ids from 1 in sorted raw-key order, as ``data/encode.py``
assigned them; a key the vocabulary does not hold maps to the unknown id 0 and is counted. With
``ids=processed`` the rows already hold ctrbench's dense ids (out-of-range ids map to 0, counted).

``ctrbench predict RUN_DIR split=valid|test`` scores a split of the run's own processed dataset
instead: exactly ``ctrbench evaluate``'s computation (its Batcher, batch sizes and order), so its
logits are the evaluation's, bit for bit.

**The path a file takes.** The input is read ``chunk_rows`` rows at a time (memory is bounded by a
chunk, not the file); each chunk's ids are mapped, its histories laid out as a CSR stream of one
"user" per row (a ``ProcessedDataset`` of that chunk), and scored by the evaluation path itself:
``train.evaluate.eval_batcher`` (the batch sizes ``evaluate`` picks), the Batcher's gather, the
regularizer's evaluation transform and the model (``evaluate.gathered_groups`` and
``score_groups``, the two halves of ``predict_logits``). Histories keep their most recent
``max_len`` behaviours (default: the run's evaluation cut, as ``evaluate`` applies). One I/O thread
reads, maps and gathers the next chunk while one is scored, and writes the chunks scored meanwhile;
the scoring thread only runs the model. With several chunks, the first and last are cut small
(``with_small_ends``), so that little of the reading and writing is left outside the scoring.
Output: the input's columns, ``score`` (the click probability, float64 sigmoid of the logit) and
``logit`` (float32, as evaluation keeps it), in input order; written under a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from omegaconf import DictConfig, OmegaConf

from ctrbench.data.schema import ProcessedDataset, Samples, Streams
from ctrbench.errors import ConfigError, DataError

log = logging.getLogger("ctrbench")

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
REQUIRED = ("user", "item", "hist_item")
OPTIONAL = ("cate", "hist_cate", "label", "time", "hist_time")
ID_SPACES = ("raw", "processed")
SPLITS = ("train", "valid", "test")
FIELDS = ("user", "item", "cate")
#: the columns predict appends to the rows
SCORE_COLUMNS = ("score", "logit")
#: ``predict_file`` scores the input's first and last rows as chunks of this many rows of their own
EDGE_ROWS = 4096


# ---- the run ----------------------------------------------------------------------------------
@dataclass
class ScoringRun:
    """A run folder loaded for scoring, as ``ctrbench evaluate`` loads it."""

    path: Path
    cfg: DictConfig  # the run's composed config
    dataset: ProcessedDataset
    model: torch.nn.Module
    reg: object  # the run's regularizer (its evaluation transform: reg=filter)
    device: torch.device
    step: int | None
    data_dir: Path

    @property
    def max_len(self) -> int:
        return int(self.cfg.dataset.max_len)

    def cut(self, split: str = "test") -> int:
        """How many of the most recent behaviours a row keeps: evaluate's cut for ``split``."""
        from ctrbench.data.batches import eval_max_len

        if split == "train":
            return self.max_len
        return eval_max_len(self.dataset, self.cfg.dataset.get("eval_max_len", self.max_len))

    @property
    def dataset_dir(self) -> Path:
        m = self.dataset.manifest
        return self.data_dir / "processed" / f"{m.get('name', self.dataset.name)}-{m.get('config_hash')}"


def load_run(run_dir, data_dir, device_cfg: DictConfig | None = None) -> ScoringRun:
    """The run folder's config, dataset (prepared on demand), model with ``best.pt``'s weights, in
    eval mode, and its regularizer, set up as ``ctrbench evaluate`` sets it up."""
    from ctrbench.data.prepare import load_dataset
    from ctrbench.run_checks import check_evaluable
    from ctrbench.train import checkpoint
    from ctrbench.train.build import build_model, build_regularizer
    from ctrbench.train.environment import resolve_device

    if not run_dir:
        raise ConfigError("no run folder given: expected `ctrbench predict RUN_DIR input=FILE output=FILE` or `ctrbench predict RUN_DIR split=test`")
    run = Path(str(run_dir))
    if not run.is_dir():
        raise DataError(f"run folder '{run}' does not exist")
    check_evaluable(run)
    run_cfg = OmegaConf.load(run / "config.yaml")
    device = resolve_device(device_cfg) if device_cfg is not None else torch.device("cpu")
    ds = load_dataset(run_cfg.dataset, data_dir)
    model = build_model(run_cfg.model, run_cfg.act, ds.vocab).to(device)
    state = checkpoint.load(run / "best.pt", map_location=device)
    model.load_state_dict(state["model"])
    model.eval()
    reg = build_regularizer(run_cfg.reg)
    reg.setup(model, ds, int(run_cfg.dataset.max_len))
    return ScoringRun(run, run_cfg, ds, model, reg, device, state.get("step"), Path(str(data_dir)))


def split_logits(run: ScoringRun, split: str, batch_size=None) -> np.ndarray:
    """The logits of every row of the run's ``split``, in the split's order: ``ctrbench evaluate``'s
    Batcher (``eval_batcher``, the same cut and batch sizes) and ``predict_logits``."""
    from ctrbench.train.evaluate import eval_batcher, predict_logits

    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    batcher = eval_batcher(run.dataset, split, batch_size, run.model, run.device, run.cut(split))
    return predict_logits(run.model, batcher, run.device, run.reg)


# ---- rows in processed ids ----------------------------------------------------------------------
@dataclass
class Rows:
    """A chunk of requests in ctrbench's dense ids: per row ``user``, ``item``, ``cate``; the
    histories flat (``hist_item``, ``hist_cate``) with ``lengths`` per row."""

    user: np.ndarray
    item: np.ndarray
    cate: np.ndarray
    hist_item: np.ndarray
    hist_cate: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


def rows_batcher(run: ScoringRun, rows: Rows, batch_size=None, max_len: int | None = None):
    """An evaluation Batcher over ``rows``: each row's history is a stream of its own (CSR, one
    "user" per row), so the Batcher's gather, batch sizes and order are evaluation's; the rows'
    real users are put back after its setup (they only feed a model's user embedding)."""
    from ctrbench.train.evaluate import eval_batcher

    n = len(rows)
    offsets = np.zeros(n + 2, dtype=np.int64)  # stream 0 is the padding user's (empty), row r is stream r + 1
    np.cumsum(rows.lengths, out=offsets[2:])
    # no model reads times or labels: zero-stride zeros, nothing allocated
    streams = Streams(offsets=offsets, item=rows.hist_item, cate=rows.hist_cate, time=np.broadcast_to(np.int64(0), rows.hist_item.shape))
    samples = Samples(
        user=np.arange(1, n + 1, dtype=np.int64), item=rows.item, cate=rows.cate,
        label=np.broadcast_to(np.float32(0), (n,)), hist_end=rows.lengths.astype(np.int64),
    )
    ds = ProcessedDataset(run.dataset.name, run.dataset.vocab, streams, run.dataset.item_cate, {"rows": samples})
    batcher = eval_batcher(ds, "rows", batch_size, run.model, run.device, int(max_len or run.cut()))
    batcher.user = torch.from_numpy(np.array(rows.user, dtype=np.int64))  # a copy: the ids may be a read-only view
    return batcher


def rows_logits(run: ScoringRun, rows, batch_size=None, max_len: int | None = None) -> np.ndarray:
    """The logits (float32) of ``rows`` (``Rows``, or the Batcher ``rows_batcher`` made of them), in
    row order, by evaluation's path."""
    from ctrbench.train.evaluate import predict_logits

    if (len(rows) if isinstance(rows, Rows) else rows.n) == 0:
        return np.zeros(0, dtype=np.float32)
    batcher = rows if not isinstance(rows, Rows) else rows_batcher(run, rows, batch_size, max_len)
    return predict_logits(run.model, batcher, run.device, run.reg)


def gathered_rows(run: ScoringRun, rows: Rows, batch_size=None, max_len: int | None = None) -> tuple[int, list]:
    """(how many rows, evaluation's gathered groups of their batches: ``evaluate.gathered_groups``
    over ``rows_batcher``). ``predict_file``'s I/O thread prepares a chunk this way, so that the
    scoring thread only runs the model (``score_gathered``)."""
    from ctrbench.train.evaluate import gathered_groups

    if len(rows) == 0:
        return 0, []
    batcher = rows_batcher(run, rows, batch_size, max_len)
    with torch.inference_mode():
        return len(rows), list(gathered_groups(batcher, batcher.batches(), run.reg))


def score_gathered(run: ScoringRun, n: int, groups: list) -> np.ndarray:
    """The logits (float32, row order) of ``n`` rows from their gathered groups (``gathered_rows``):
    the same model calls and batches as ``rows_logits``, so the same logits."""
    from ctrbench.train.evaluate import score_groups

    out = torch.empty(n, dtype=torch.float32)
    run.model.eval()  # as load_run leaves it
    with torch.inference_mode():
        score_groups(run.model, groups, out, run.device)
    return out.numpy()


# ---- the vocabulary: raw keys -> dense ids -------------------------------------------------------
@dataclass
class Vocabulary:
    """Maps each field's values to dense ids. ``keys[field]``: the sorted distinct raw keys (key i
    has id i + 1); a field without keys takes its values as ids already (processed ids, and the
    synthetic source, whose raw ids are its ids). Unknown values, out-of-range ids and nulls map
    to 0 and are counted by the caller."""

    sizes: dict[str, int]
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    _index: dict = field(default_factory=dict, repr=False)

    def string_keyed(self, name: str) -> bool:
        k = self.keys.get(name)
        return k is not None and not np.issubdtype(k.dtype, np.integer)

    def lookup(self, name: str, values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
        """(ids int64, how many values were unknown) of ``values`` in field ``name``'s id space."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        n = len(values)
        if n == 0:
            return np.zeros(0, dtype=np.int64), 0
        keys = self.keys.get(name)
        if keys is None:
            return _ids_in_range(values, self.sizes[name])
        if name not in self._index:  # the keys as an Arrow array: hashed by Arrow's set lookup, in C++
            self._index[name] = pa.array(keys) if np.issubdtype(keys.dtype, np.integer) else pa.array([str(k) for k in keys], pa.string())
        key_array = self._index[name]
        if pa.types.is_integer(key_array.type):
            sentinel = np.iinfo(np.int64).min
            ints = _as_ints(values, missing=sentinel)
            bad = ints == sentinel  # nulls and text that is not an integer: unknown
            vals = pa.array(ints, pa.int64(), mask=bad if bad.any() else None)
        else:
            vals = values if pa.types.is_string(values.type) else values.cast(pa.string())
        pos = pc.index_in(vals, value_set=key_array)  # null where unknown
        ids = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        return ids, int(pos.null_count)


def _ids_in_range(values: pa.Array, size: int) -> tuple[np.ndarray, int]:
    """(ids int64, how many are 0) of ``values`` taken as ids already, those outside [0, size) and
    nulls made 0. An int64 array without nulls whose ids are all in range is used in place (a
    read-only view of the Arrow buffer, no copy: the histories are the bulk of an input)."""
    if pa.types.is_int64(values.type) and values.null_count == 0:
        ids = values.to_numpy(zero_copy_only=True)
    else:
        ids = _as_ints(values)
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        if not ids.flags.writeable:  # the view of the Arrow buffer; _as_ints' arrays are fresh already
            ids = ids.copy()
        ids[(ids < 0) | (ids >= size)] = 0
    return ids, ids.size - int(np.count_nonzero(ids))


def _as_ints(values: pa.Array, missing: int = 0) -> np.ndarray:
    """Integer ids from an Arrow array of integers, floats or strings; nulls and non-integers -> ``missing``."""
    t = values.type
    if pa.types.is_integer(t):
        return values.fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64, copy=True)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:  # the usual case, decimal digits: Arrow's cast, vectorised
            return pc.cast(values, pa.int64()).fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64, copy=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd

        num = pd.to_numeric(pd.Series(values.to_numpy(zero_copy_only=False)), errors="coerce").to_numpy(dtype=np.float64)
        whole = np.isfinite(num) & (num == np.floor(num))
        out = np.full(len(num), missing, dtype=np.int64)
        out[whole] = num[whole].astype(np.int64)
        return out
    if pa.types.is_null(t):
        return np.full(len(values), missing, dtype=np.int64)
    raise DataError(f"ids of type {t} are not understood: expected integers or strings")


def vocabulary(run: ScoringRun, ids: str = "raw") -> Vocabulary:
    """The run's vocabulary for ``ids`` (raw | processed). Raw keys are not part of the processed
    dataset: they are rebuilt from the source's raw files, exactly as ``encode`` derived them,
    checked against the processed dataset (vocabulary sizes, every item's category), and cached in
    ``<processed dataset>.keys/`` (keyed by the dataset's manifest checksum) for the next call."""
    v = run.dataset.vocab
    sizes = {"user": v.n_users, "item": v.n_items, "cate": v.n_cates}
    if ids not in ID_SPACES:
        raise ConfigError(f"ids={ids!r}: expected one of {', '.join(ID_SPACES)}")
    if ids == "processed":
        return Vocabulary(sizes)
    from ctrbench.data.prepare import _construct

    source = _construct(run.cfg.dataset.source, "dataset.source")
    if not hasattr(source, "locate"):  # a generated dataset (synthetic): its raw ids are its ids
        return Vocabulary(sizes)
    cached = _read_keys(run)
    if cached is not None:
        return Vocabulary(sizes, cached)
    log.info(f"rebuilding the raw-key vocabulary of {run.dataset.name} from its raw files (once; cached beside the processed dataset)")
    source.locate(run.data_dir, run.cfg.dataset.name)
    keys, item_cate = _raw_keys(source)
    expected = (v.n_users, v.n_items, v.n_cates)
    found = (len(keys["user"]) + 1, len(keys["item"]) + 1, len(keys["cate"]) + 1)
    if found[:2] != expected[:2] or found[2] > expected[2] or not np.array_equal(item_cate, np.asarray(run.dataset.item_cate)):
        raise DataError(
            f"the raw files of {run.dataset.name} no longer give the vocabulary the run was trained with "
            f"({found[0] - 1:,} users, {found[1] - 1:,} items, {found[2] - 1:,} categories against {expected[0] - 1:,}, "
            f"{expected[1] - 1:,}, {expected[2] - 1:,}, or other item categories): use ids=processed, or the raw files the dataset was built from"
        )
    _write_keys(run, keys)
    return Vocabulary(sizes, keys)


def _raw_keys(source) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(sorted raw keys of users, items, categories; the category id of every item id) as the
    source's build assigned them."""

    from ctrbench.data.encode import dense_ids, item_categories

    if hasattr(source, "_import"):  # BARS rows: ids over the rows and the streams (sources/bars.py)
        data, _ = source._import(source._inputs)
        return {"user": np.asarray(data.user_keys), "item": np.asarray(data.item_keys), "cate": np.asarray(data.cate_keys)}, data.item_cate
    events, meta, _ = source.read(source._inputs)
    _, user_keys = dense_ids(events.user)
    _, item_keys = dense_ids(events.item)
    item_cate, cate_keys, _ = item_categories(item_keys, meta)  # as encode() assigns them
    return {"user": np.asarray(user_keys), "item": np.asarray(item_keys), "cate": np.asarray(cate_keys, dtype=object)}, item_cate


def _keys_dir(run: ScoringRun) -> Path:
    return run.dataset_dir.with_name(run.dataset_dir.name + ".keys")


def _read_keys(run: ScoringRun) -> dict[str, np.ndarray] | None:
    import pyarrow.parquet as pq

    folder = _keys_dir(run)
    try:
        meta = json.loads((folder / "keys.json").read_text())
        if meta.get("manifest_sha256") != run.dataset.manifest.get("manifest_sha256"):
            return None
        return {f: pq.read_table(folder / f"{f}.parquet").column("key").to_numpy(zero_copy_only=False) for f in FIELDS}
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None


def _write_keys(run: ScoringRun, keys: dict[str, np.ndarray]) -> None:
    """Cache the keys beside the processed dataset (atomically: a temporary folder renamed into
    place); a folder that cannot be written only costs the rebuild next time."""
    import shutil

    import pyarrow.parquet as pq

    from ctrbench.atomic import make_temp_dir

    folder = _keys_dir(run)
    tmp = None
    try:
        tmp = make_temp_dir(folder.parent, f".{folder.name}.tmp-")
        for f in FIELDS:
            k = keys[f]
            arr = pa.array(k if np.issubdtype(k.dtype, np.integer) else [str(x) for x in k], type=None if np.issubdtype(k.dtype, np.integer) else pa.string())
            pq.write_table(pa.table({"key": arr}), tmp / f"{f}.parquet")
        (tmp / "keys.json").write_text(json.dumps({"manifest_sha256": run.dataset.manifest.get("manifest_sha256"), "dataset": run.dataset.name}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except OSError as e:
        log.warning(f"could not cache the raw-key vocabulary in {folder}: {e}")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- reading input ---------------------------------------------------------------------------------
def file_format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{what}='{path}': expected a .csv, .parquet or .jsonl file (by its extension)")
    return fmt


def read_chunks(path: Path, chunk_rows: int, vocab: Vocabulary) -> Iterator[pa.Table]:
    """The input file as tables of at most ``chunk_rows`` rows, read as they are needed. The id
    columns are read as the vocabulary's key type (strings keep leading zeros)."""
    import pyarrow.parquet as pq

    fmt = file_format(path, "input")
    if not path.is_file():
        raise DataError(f"input file '{path}' does not exist")
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, use_threads=False):
                yield pa.Table.from_batches([batch])
            return
        if fmt == "csv":
            yield from _rechunk(_csv_batches(path, vocab), chunk_rows)
            return
        yield from _jsonl_chunks(path, chunk_rows)
    except pa.ArrowException as e:
        raise DataError(f"input file '{path}' could not be read as {fmt}: {str(e).splitlines()[0]}") from None


def with_small_ends(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """``tables`` with small chunks at both ends (zero-copy slices), when there are several: the
    first table cut into ``rows``, ``4 rows``, ``16 rows``, ... rows, so that the scoring starts once
    a small chunk is prepared and each chunk is scored for longer than the next takes to prepare;
    the last table's end likewise in reverse (..., ``4 rows``, ``rows``), so that what is left to
    write after the last scoring is small. A single table stays whole (its rows are then batched
    exactly as evaluation batches them). One table is read ahead to find the last."""
    tables = iter(tables)
    held, ahead = next(tables, None), next(tables, None)
    if held is None or ahead is None:
        if held is not None:
            yield held
        return
    piece = rows
    while held.num_rows > piece:
        yield held.slice(0, piece)
        held = held.slice(piece)
        piece *= 4
    for table in itertools.chain([ahead], tables):
        yield held
        held = table
    tail, piece = [], rows
    while held.num_rows > piece:
        tail.append(held.slice(held.num_rows - piece))
        held = held.slice(0, held.num_rows - piece)
        piece *= 4
    yield held
    yield from reversed(tail)


def _csv_batches(path: Path, vocab: Vocabulary) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pacsv

    types = {}
    for name in ("user", "item", "cate"):
        types[name] = pa.string() if vocab.string_keyed(name) else pa.int64()
    for name in ("hist_item", "hist_cate", "hist_time"):
        types[name] = pa.string()
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20, use_threads=False),
                                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            return
        raise
    yield from reader


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    pending, n = [], 0
    for b in batches:
        pending.append(b)
        n += b.num_rows
        while n >= rows:
            t = pa.Table.from_batches(pending)
            yield t.slice(0, rows)
            rest = t.slice(rows)
            pending, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(pending)


def _jsonl_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    import io

    import pyarrow.json as pajson

    # types are inferred per chunk (an explicit schema would add absent columns as nulls); the
    # vocabulary's lookup reads integer and string ids alike, and the writer unifies the chunks
    opts = pajson.ParseOptions(newlines_in_values=False)
    with open(path, "rb") as f:
        while True:
            lines = [line for line in (f.readline() for _ in range(rows)) if line]
            if not lines:
                return
            body = b"".join(x for x in lines if x.strip())
            if body:
                yield pajson.read_json(io.BytesIO(body), read_options=pajson.ReadOptions(use_threads=False), parse_options=opts)
            if len(lines) < rows:
                return


def _list_column(col: pa.ChunkedArray, list_sep: str) -> tuple[pa.Array, np.ndarray]:
    """(flat values, length per row) of a list column, or of a CSV string column split on ``list_sep``
    (an empty field or a null: an empty history)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()).fill_null(""))
        text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)  # "" -> no behaviours
        arr = pc.split_pattern(text, list_sep)
        values = pc.utf8_trim_whitespace(pc.list_flatten(arr))
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        values = pc.list_flatten(arr)
    else:
        raise DataError(f"a history column holds {arr.type}: expected a list (Parquet / JSON arrays) or a string of ids joined by '{list_sep}' (CSV)")
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, lengths


@dataclass
class Counts:
    """Rows read and unknown ids mapped to 0, per field."""

    rows: int = 0
    unknown: dict[str, int] = field(default_factory=lambda: {"user": 0, "item": 0, "cate": 0, "hist_item": 0, "hist_cate": 0})
    behaviours: int = 0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "behaviours": self.behaviours, "unknown": dict(self.unknown)}


def encode_table(table: pa.Table, vocab: Vocabulary, item_cate: np.ndarray, counts: Counts, list_sep: str = "|", first_row: int = 0) -> Rows:
    """A chunk of input rows in dense ids (``Rows``); unknown ids counted in ``counts``."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(
            f"the input has no column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}: expected columns "
            f"{', '.join(REQUIRED)} (hist_item: the user's behaviours, a list, oldest first) and optionally {', '.join(OPTIONAL)}; "
            f"found {', '.join(table.column_names) or 'none'}"
        )
    user, nu = vocab.lookup("user", table.column("user"))
    item, ni = vocab.lookup("item", table.column("item"))
    flat, lengths = _list_column(table.column("hist_item"), list_sep)
    hist_item, nh = vocab.lookup("item", flat)
    if "cate" in table.column_names:
        cate, nc = vocab.lookup("cate", table.column("cate"))
    else:
        cate, nc = item_cate[item], 0
    if "hist_cate" in table.column_names:
        flat_c, lengths_c = _list_column(table.column("hist_cate"), list_sep)
        if not np.array_equal(lengths_c, lengths):
            r = int(np.flatnonzero(lengths_c != lengths)[0])
            raise DataError(f"row {first_row + r + 1}: hist_cate has {lengths_c[r]} entries and hist_item {lengths[r]}: expected one category per behaviour")
        hist_cate, nhc = vocab.lookup("cate", flat_c)
    else:
        hist_cate, nhc = item_cate[hist_item], 0
    counts.rows += len(user)
    counts.behaviours += int(lengths.sum())
    for k, v in (("user", nu), ("item", ni), ("cate", nc), ("hist_item", nh), ("hist_cate", nhc)):
        counts.unknown[k] += v
    return Rows(user, item, cate, hist_item, hist_cate, lengths)


# ---- writing output ------------------------------------------------------------------------------
class Writer:
    """Output tables appended to a file under a temporary name; ``close()`` renames it into place,
    ``abort()`` removes it. CSV writes list columns joined by ``list_sep``."""

    def __init__(self, path: Path, list_sep: str = "|") -> None:
        from ctrbench.atomic import _new_temp_file

        self.path, self.fmt, self.list_sep = path, file_format(path, "output"), list_sep
        if path.is_dir():
            raise ConfigError(f"output='{path}' is a folder: expected a file name ending in .csv, .parquet or .jsonl")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = _new_temp_file(path.parent, f".{path.name}.tmp-", "")
        except OSError as e:
            from ctrbench.atomic import write_failed

            raise write_failed(path, e) from e
        self._writer = None
        self._schema = None
        self._file = None

    def write(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise DataError(f"the input's columns change type between chunks ({str(e).splitlines()[0]}): give every row the same types") from None
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, table.schema, use_dictionary=_dictionary_columns(table.schema))
            self._writer.write_table(table)
        elif self.fmt == "csv":
            import pyarrow.csv as pacsv

            table = _lists_joined(table, self.list_sep)
            if self._writer is None:
                self._writer = pacsv.CSVWriter(str(self.tmp), table.schema)
            self._writer.write_table(table)
        else:
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - open across write() calls, closed by close() / abort()
            df = table.to_pandas()
            for c in df.columns:  # Arrow lists come back as numpy arrays: JSON arrays of them
                if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], np.ndarray):
                    df[c] = df[c].map(lambda a: None if a is None else a.tolist())
            text = df.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
            self._file.write(text if text.endswith("\n") or not text else text + "\n")

    def close(self) -> None:
        import os

        if self._writer is None and self._file is None:  # no rows: a valid file with the score columns alone
            self.write(pa.table({"score": pa.array([], pa.float64()), "logit": pa.array([], pa.float32())}))
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for closer in (self._writer, self._file):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # noqa: BLE001, S110 - the error being reported is the one that matters
                pass
        self.tmp.unlink(missing_ok=True)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The Parquet columns (leaf paths) to dictionary-encode: all but ``score`` and ``logit``, which
    are nearly all distinct: their dictionaries outgrow the page limit and are dropped, after the
    work. Without them, 1M rows took 0.56 s of CPU to write instead of 0.70 s, for 24.4 MB instead
    of 27.1; the input's own columns keep the writer's default (a 0/1 float ``label`` with a
    dictionary: 23.6 MB, the same CPU time; docs/serving.md)."""
    import pyarrow.parquet as pq

    pq.write_table(schema.empty_table(), sink := pa.BufferOutputStream())  # in memory: Parquet names the leaves
    leaves = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    return [leaves.column(i).path for i in range(len(leaves)) if leaves.column(i).path not in SCORE_COLUMNS]


def _lists_joined(table: pa.Table, sep: str) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            col = pc.binary_join(pc.cast(table.column(i), pa.list_(pa.string())), sep)
            table = table.set_column(i, f.name, col)
    return table


def with_scores(table: pa.Table, logits: np.ndarray) -> pa.Table:
    """``table`` with ``score`` (float64 sigmoid, as ``evaluate.predict``) and ``logit`` (float32)
    appended (replacing input columns of those names)."""
    for name in SCORE_COLUMNS:
        if name in table.column_names:
            table = table.drop_columns([name])
    score = torch.sigmoid(torch.from_numpy(logits).double()).numpy()
    return table.append_column("score", pa.array(score, pa.float64())).append_column("logit", pa.array(logits, pa.float32()))


# ---- the command ------------------------------------------------------------------------------------
def _positive_int(cfg: DictConfig, key: str, optional: bool = False) -> int | None:
    v = cfg.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{key}={v!r}: expected an integer >= 1{' or null' if optional else ''}")
    return int(v)


def predict_file(run: ScoringRun, input_path, output_path, ids: str = "raw", chunk_rows: int = 65536, batch_size=None,
                 max_len: int | None = None, list_sep: str = "|") -> dict:
    """Score every row of ``input_path`` and write them with ``score`` and ``logit`` to
    ``output_path``; returns a summary (rows, unknown ids per field, seconds, rows/s)."""
    input_path, output_path = Path(str(input_path)), Path(str(output_path))
    file_format(input_path, "input")
    if not input_path.is_file():
        raise DataError(f"input file '{input_path}' does not exist")
    if output_path.resolve() == input_path.resolve():
        raise ConfigError(f"output='{output_path}' is the input file: expected another file")
    vocab = vocabulary(run, ids)
    item_cate = np.asarray(run.dataset.item_cate, dtype=np.int64)
    counts = Counts()
    t0 = time.perf_counter()
    writer = Writer(output_path, list_sep)
    # One I/O thread beside the scoring: it reads, encodes and gathers the next chunk, then writes the
    # chunks scored meanwhile. One thread, not a reader and a writer: with the scoring that is at most
    # two busy threads on two cores, so the scoring does not wait for a core (docs/serving.md).
    ready: queue.Queue = queue.Queue(maxsize=1)  # gathered chunks, to the scoring
    scored: queue.Queue = queue.Queue()  # scored chunks, to the writing; None: the scoring has ended
    errors: list[BaseException] = []
    done = threading.Event()  # the scoring loop has ended (every chunk scored, or failed)

    def hand(item) -> bool:  # to the scoring, unless it has ended
        while not done.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def write_scored(wait: bool) -> bool:  # the chunks scored so far (wait: to the end); False at the end
        while True:
            try:
                item = scored.get(block=wait)
            except queue.Empty:
                return True
            if item is None:
                return False
            writer.write(with_scores(*item))

    def io_work() -> None:
        try:
            first = 0
            for table in with_small_ends(read_chunks(input_path, chunk_rows, vocab), EDGE_ROWS):
                rows = encode_table(table, vocab, item_cate, counts, list_sep, first)
                first += table.num_rows
                if not hand((table, gathered_rows(run, rows, batch_size, max_len))) or not write_scored(wait=False):
                    return
            if hand(None):
                write_scored(wait=True)
        except BaseException as e:  # noqa: BLE001 - raised by the scoring thread
            errors.append(e)
            hand(e)

    io_thread = threading.Thread(target=io_work, name="ctrbench-predict-io", daemon=True)
    io_thread.start()
    ok = False
    try:
        while True:
            item = ready.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            table, gathered = item
            scored.put((table, score_gathered(run, *gathered)))
        done.set()
        scored.put(None)
        io_thread.join()
        if errors:
            raise errors[0]
        writer.close()
        ok = True
    finally:
        done.set()
        if not ok:
            scored.put(None)  # ends the I/O thread's wait for the scored chunks
            io_thread.join(timeout=60)
            writer.abort()
    secs = time.perf_counter() - t0
    return {**counts.as_dict(), "seconds": round(secs, 3), "rows_per_s": round(counts.rows / max(secs, 1e-9), 1),
            "output": str(output_path), "ids": ids}


def predict_split(run: ScoringRun, split: str, output_path, batch_size=None, chunk_rows: int = 65536) -> dict:
    """Score the run's ``split`` (``ctrbench evaluate``'s logits) and write its rows (processed ids:
    user, item, cate, label, hist_end [, hist_start]) with ``score`` and ``logit``."""
    from ctrbench.metrics import evaluate_logits

    output_path = Path(str(output_path))
    t0 = time.perf_counter()
    logits = split_logits(run, split, batch_size)
    s = run.dataset.splits[split]
    writer = Writer(output_path)
    try:
        cols = s.columns()
        cols.pop("score", None)  # the synthetic source's known click probability: kept as oracle_score
        if s.score is not None:
            cols["oracle_score"] = s.score
        for a in range(0, len(s), chunk_rows) if len(s) else [0]:
            b = a + chunk_rows
            writer.write(with_scores(pa.table({k: v[a:b] for k, v in cols.items()}), logits[a:b]))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    secs = time.perf_counter() - t0
    out = {"rows": len(s), "split": split, "seconds": round(secs, 3), "rows_per_s": round(len(s) / max(secs, 1e-9), 1),
           "output": str(output_path)}
    if len(s):
        m = evaluate_logits(s.user, s.label, logits)
        out.update({"auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"]})
    return out


def run_predict(cfg: DictConfig, console=None) -> dict:
    """``ctrbench predict``: the checks, then ``predict_file`` or ``predict_split``; prints a summary."""
    from ctrbench.config_checks import check_missing

    check_missing(cfg)
    inp, split = cfg.get("input"), cfg.get("split")
    if (inp is None) == (split is None):
        raise ConfigError("give either input=FILE (rows to score) or split=valid|test (the run's own data), not "
                          + ("both" if inp is not None else "neither"))
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    chunk_rows = _positive_int(cfg, "chunk_rows")
    batch_size = _positive_int(cfg, "batch_size", optional=True)
    max_len = _positive_int(cfg, "max_len", optional=True)
    ids = cfg.get("ids", "raw")
    if ids not in ID_SPACES:
        raise ConfigError(f"ids={ids!r}: expected one of {', '.join(ID_SPACES)}")
    sep = cfg.get("list_sep", "|")
    if not isinstance(sep, str) or not sep:
        raise ConfigError(f"list_sep={sep!r}: expected a non-empty string")
    out = cfg.get("output")
    if inp is not None:
        p = Path(str(inp))
        file_format(p, "input")
        if not p.is_file():
            raise DataError(f"input file '{p}' does not exist")
        out = Path(str(out)) if out else p.with_name(f"{p.stem}.scored{p.suffix}")
    else:
        out = Path(str(out)) if out else Path(str(cfg.run_dir)) / f"predict_{split}.parquet"
    file_format(Path(out), "output")
    run = load_run(cfg.run_dir, cfg.paths.data_dir, cfg.get("device"))
    if inp is not None:
        summary = predict_file(run, inp, out, ids, chunk_rows, batch_size, max_len, sep)
    else:
        summary = predict_split(run, split, out, batch_size, chunk_rows)
    summary["checkpoint_step"] = run.step
    _print_summary(summary, run, console)
    return summary


def _print_summary(s: dict, run: ScoringRun, console=None) -> None:
    from rich import get_console
    from rich.table import Table

    console = console or get_console()
    what = f"{s['split']} split" if "split" in s else f"ids={s['ids']}"
    t = Table(title=f"{run.path} · {what} · checkpoint step {run.step}")
    for col in ("rows", "rows/s", "seconds"):
        t.add_column(col)
    extra = []
    if "unknown" in s:
        t.add_column("unknown ids (→ 0)")
        u = s["unknown"]
        extra.append(", ".join(f"{k} {v:,}" for k, v in u.items() if v) or "none")
    if "auc" in s:
        for col in ("AUC", "GAUC", "logloss"):
            t.add_column(col)
        extra += [f"{s[k]:.4f}" if s[k] is not None else "–" for k in ("auc", "gauc", "logloss")]
    t.add_row(f"{s['rows']:,}", f"{s['rows_per_s']:,.0f}", f"{s['seconds']:.2f}", *extra)
    console.print(t)
    console.print(f"wrote {s['output']}", markup=False, soft_wrap=True)
