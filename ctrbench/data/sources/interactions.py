"""Your own behaviour log (``dataset=interactions``): one behaviour a row, its columns named in the
config, in CSV, TSV, Parquet or JSON-lines files.

Inputs (``dataset.path``): a file, a folder (every data file directly in it, by name) or a glob
(``'logs/2024-*.parquet'``, ``**`` allowed); null: every data file in ``<data_dir>/raw/<name>/``.
The format of each file comes from its extension (``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``,
``.jsonl``/``.ndjson``/``.json``; the text formats may end in ``.gz``) or from ``dataset.format``.
A CSV / TSV file's first line names its columns; standard CSV quoting is understood (a quoted
value may hold the delimiter, not a newline). A JSON-lines file holds one object a line.

Columns (``dataset.columns.<role>``): ``user``, ``item`` and ``time`` are required; ``category``
(the item's category; an item's first row with one wins, items seen with several are counted),
``rating`` (a number: the MovieLens protocol labels a row by ``rating >= positive_min_rating``) and
``label`` (an explicit 0/1 label) are optional. Instead of a category column, ``dataset.item_meta``
names a file of (item, category) rows in the same formats (the first row of an item wins). With
neither, every item is in one category, and the statistics say so.

Values:

- **Ids** (user, item, category) may be integers or strings. A text column (CSV, or strings in
  Parquet / JSON) whose every value is a plain decimal integer (no sign other than ``-``, no leading
  zero, at most 18 digits) is read as integers, so a CSV export and its Parquet original give the
  same ids; otherwise ids stay strings. Dense ids follow in sorted key order (``encode``). A float
  column of whole numbers is read as integers; any other type is an error naming the column and a
  sample value.
- **Time** may be integers, floats or ISO 8601 dates / date-times (text, or Parquet timestamp /
  date columns). It is only an order key: integers are kept; floats of whole numbers become
  integers, other floats their rank (the order is kept exactly); date-times become seconds since
  the epoch (UTC; a naive one is taken as UTC), or microseconds when some have fractions of a
  second. Ties keep file order (files in name order).
- An empty value of a required column (user, item, time, and rating / label when named) is a
  malformed row; an empty category means the row says nothing about its item's category.

Bad input:

- a named column that is not in a file: a DataError naming the column, its config key and the
  file's columns;
- a column of the wrong type (no value of it is a valid time / number / 0-1 label, or a nested
  value): a DataError naming the column and a sample value with its line (row, for Parquet);
- a row with a wrong field count, an undecodable value or a value of a valid column that does not
  parse: ``dataset.on_bad_line`` (error: a one-line DataError naming the file and line; skip: skip
  and count), as every reader;
- duplicate rows (every named column equal) are counted and kept, or dropped with
  ``dataset.duplicates=drop``; both are in the statistics.

Protocols: ``din``, ``dien`` and ``movielens`` (which needs ``columns.rating``) read the behaviours
as the built-in sources' (with a label column: the positive rows; the protocol draws its own
negatives). ``as_is`` (needs ``columns.label``) keeps the rows as the samples: a row's history is
its user's positive rows strictly earlier in time (rows at the same time share one history), so
its ``hist_end`` is the number of those. The splits follow the DIN protocol's positions: with P the
user's positive rows, test holds the rows at ``hist_end >= P - 1`` (the last positive, and every
row after the one before it), validation those at ``P - 2`` (``dataset.protocol.valid=none``: train
instead), train the rest; a user with fewer than 3 positive rows is train only (counted).

Speed: pyarrow's multi-threaded CSV / JSON / Parquet readers read only the named columns, as text
for CSV, and every conversion is vectorised (pyarrow compute, numpy, pandas); the careful CSV pass
that numbers malformed lines and the per-line JSON pass run only when the fast read fails.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ctrbench.data.encode import dense_ids, encode
from ctrbench.data.protocols import user_of_behaviour
from ctrbench.data.schema import SPLITS, Samples, Streams
from ctrbench.data.sources.amazon import JSON_BLOCK_SIZE, _object_lines
from ctrbench.data.sources.delimited import FLOAT_PATTERN, int64_ok, lines_of_rows, utf8_texts
from ctrbench.data.sources.raw import (
    Events,
    ItemMeta,
    LineErrors,
    json_error_reason,
    open_binary,
    read_all_bytes,
    require_file,
)
from ctrbench.data.sources.real import RealSource
from ctrbench.data.sources.taobao import first_category
from ctrbench.errors import ConfigError, DataError

log = logging.getLogger("ctrbench")

FORMATS = ("csv", "tsv", "parquet", "jsonl")
EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
ROLES = ("user", "item", "time", "category", "rating", "label")
REQUIRED = ("user", "item", "time")
DUPLICATES = ("keep", "drop")
ONE_CATEGORY = "all"  # the raw key of the single category when the data names none
# A decimal integer written one way only (no '+', no leading zero), within int64: the text ids read
# as integers, so that two different texts never become one id.
CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"
LABEL_TEXT = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# ---- finding the files -----------------------------------------------------------------------


def format_of(path: Path, fmt: str) -> str | None:
    """The format of ``path``: ``fmt`` unless auto, else from its extension (``.gz`` aside)."""
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        found = EXTENSIONS.get(suffixes[-1]) if suffixes else None
        return found if found != "parquet" else None
    return EXTENSIONS.get(suffixes[-1]) if suffixes else None


def _data_files(folder: Path, fmt: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and format_of(p, fmt))


def find_files(spec: str | None, default_dir: Path, fmt: str) -> list[Path]:
    """The input files ``dataset.path`` names (absolute, sorted by name); a DataError when none."""
    if spec is None:
        folder = Path(default_dir)
        files = _data_files(folder, fmt) if folder.is_dir() else []
        if not files:
            raise DataError(
                f"dataset.path is not set and {folder} holds no data file (.csv, .tsv, .parquet, .jsonl); "
                "set dataset.path=FILE, FOLDER or GLOB"
            )
        return [p.resolve() for p in files]
    text = str(spec)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file() and format_of(Path(p), fmt))
        if not files:
            raise DataError(f"dataset.path={text!r}: the pattern matches no data file (.csv, .tsv, .parquet, .jsonl)")
        return [p.resolve() for p in files]
    path = Path(text).expanduser()
    if path.is_dir():
        files = _data_files(path, fmt)
        if not files:
            there = sorted(p.name for p in path.iterdir())[:8]
            raise DataError(
                f"dataset.path={text!r}: the folder holds no data file (.csv, .tsv, .parquet, .jsonl); "
                f"it holds: {', '.join(there) if there else 'nothing'}"
            )
        return [p.resolve() for p in files]
    if not path.exists():
        raise DataError(f"dataset.path={text!r}: no such file or folder")
    if format_of(path, fmt) is None:
        raise ConfigError(
            f"dataset.path={text!r}: cannot tell its format from the extension; set dataset.format to one of {', '.join(FORMATS)}"
        )
    return [path.resolve()]


# ---- reading one file: the named columns, raw ------------------------------------------------


@dataclass
class RowErrors(LineErrors):
    """``LineErrors`` for files without lines (Parquet): the messages name the row."""

    def bad(self, line_no: int, reason: str) -> None:
        if self.policy == "error":
            raise DataError(f"{self.path}, row {line_no}: {reason} (set dataset.on_bad_line=skip to skip such rows)")
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(f"row {line_no}: {reason}")


@dataclass
class _Part:
    """The named columns of one file as read (pyarrow arrays, role -> values) and how to find a row
    in the file: ``locate(rows)`` gives the line (or, for Parquet, row) numbers of row indices."""

    path: Path
    fmt: str
    columns: dict[str, pa.Array]
    names: dict[str, str]  # role -> column name
    keys: dict[str, str]  # role -> the config key that names the column
    errors: LineErrors
    locate: Callable[[np.ndarray], np.ndarray]
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) found while reading
    reported: np.ndarray | None = None  # bool per row: bad rows among ``bad`` already (dropped, not reported again)

    @property
    def unit(self) -> str:
        return "row" if self.fmt == "parquet" else "line"

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


def _check_columns(path: Path, present: list[str], names: dict[str, str], keys: dict[str, str]) -> None:
    for role, col in names.items():
        if col not in present:
            shown = ", ".join(repr(c) for c in present[:50]) + (" ..." if len(present) > 50 else "")
            raise DataError(f"{path}: no column {col!r} ({keys[role]}); the file's columns are: {shown or 'none'}")


def _nonblank_lines(data: bytes, strip: bool = False) -> np.ndarray:
    """1-based numbers of the lines that are not empty (``strip``: not only blanks)."""
    if strip:
        return np.asarray([i for i, line in enumerate(data.split(b"\n"), start=1) if line.strip()], dtype=np.int64)
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size == 0:
        return np.empty(0, dtype=np.int64)
    nl = np.flatnonzero(a == 10)
    starts = np.concatenate([[0], nl + 1])
    length = np.concatenate([nl, [a.size]]) - starts
    only_cr = (length == 1) & (a[np.minimum(starts, a.size - 1)] == 13)  # "\r\n": empty too
    return np.flatnonzero((length > 0) & ~only_cr) + 1


def _read_header(path: Path, delimiter: str) -> list[str]:
    """The column names on the first line (CSV quoting understood, a UTF-8 byte-order mark ignored)."""
    with open_binary(path) as f:
        first = f.readline(1 << 20)
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if not text.strip():
        raise DataError(f"{path}: the first line is empty; it must name the columns (a header line)")
    return next(csv.reader([text], delimiter=delimiter))


def _csv_parse_options(delimiter: str, handler=None) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=delimiter, quote_char='"', double_quote=True, newlines_in_values=False,
        ignore_empty_lines=True, invalid_row_handler=handler,
    )


def read_csv(path: Path, names: dict[str, str], keys: dict[str, str], errors: LineErrors, delimiter: str, fmt: str) -> _Part:
    """The named columns of a delimited file with a header line, as text. The multi-threaded
    read first; when it fails (a row with the wrong number of fields, bytes that are not UTF-8, a
    damaged gzip), a streaming pass that numbers every malformed line."""
    path = require_file(path, "input file")
    header = _read_header(path, delimiter)
    _check_columns(path, header, names, keys)
    include = list(dict.fromkeys(names.values()))
    read = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=1 << 24)
    try:
        table = pacsv.read_csv(
            str(path), read_options=read, parse_options=_csv_parse_options(delimiter),
            convert_options=pacsv.ConvertOptions(include_columns=include, column_types={c: pa.string() for c in include}),
        )
        data, skipped, bad = None, np.empty(0, dtype=np.int64), []
    except (pa.ArrowException, OSError, EOFError, ValueError):
        table, data, skipped, bad = _read_csv_careful(path, header, include, errors, delimiter)
    cache: dict[str, np.ndarray] = {}

    def physical(records: np.ndarray) -> np.ndarray:  # pyarrow's record numbers (non-empty lines, 1-based) -> lines
        if "lines" not in cache:
            cache["lines"] = _nonblank_lines(data if data is not None else read_all_bytes(path))
        return cache["lines"][np.asarray(records, dtype=np.int64) - 1]

    def locate(rows: np.ndarray) -> np.ndarray:
        return physical(lines_of_rows(np.asarray(rows, dtype=np.int64), 2, skipped))

    columns = {}
    not_utf8 = np.zeros(table.num_rows, dtype=bool)
    for role, col in names.items():
        values = table.column(col).combine_chunks()
        if pa.types.is_binary(values.type):  # the careful pass: check the text
            values, ok = utf8_texts(values, bad=None)
            rows = np.flatnonzero(~ok & ~not_utf8)
            bad += [(int(line), f"{col} is not valid UTF-8") for line in locate(rows).tolist()]
            not_utf8 |= ~ok
        columns[role] = values
    return _Part(path, fmt, columns, names, keys, errors, locate, bad, not_utf8 if not_utf8.any() else None)


def _read_csv_careful(path: Path, header: list[str], include: list[str], errors: LineErrors, delimiter: str):
    """(table of the good rows as bytes, the file's bytes, pyarrow record numbers of the rows it
    skipped, [(line, reason)] of the malformed ones)."""
    data = read_all_bytes(path, errors)
    sep = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
    records: list[int] = []
    invalid: list[tuple[int, str]] = []

    def handler(row) -> str:
        n = int(row.number or 0)
        records.append(n)
        if row.text.strip():
            invalid.append((n, f"expected {len(header)} {sep}-separated fields ({', '.join(header)}), got {row.actual_columns}"))
        return "skip"

    try:
        reader = pacsv.open_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False),
            parse_options=_csv_parse_options(delimiter, handler),
            convert_options=pacsv.ConvertOptions(include_columns=include, column_types={c: pa.binary() for c in include}),
        )
        table = reader.read_all()
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as {sep}-separated text ({_first_line(str(e))})") from None
    lines = _nonblank_lines(data)
    bad = [(int(lines[n - 1]), reason) for n, reason in invalid]
    return table, data, np.asarray(sorted(records), dtype=np.int64), bad


def read_parquet(path: Path, names: dict[str, str], keys: dict[str, str], errors: LineErrors) -> _Part:
    path = require_file(path, "input file")
    try:
        pf = pq.ParquetFile(path)
        present = pf.schema_arrow.names
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot be read as Parquet ({_first_line(str(e))})") from None
    _check_columns(path, present, names, keys)
    try:
        table = pf.read(columns=list(dict.fromkeys(names.values())))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot be read as Parquet ({_first_line(str(e))})") from None
    columns = {role: table.column(col).combine_chunks() for role, col in names.items()}
    return _Part(path, "parquet", columns, names, keys, errors, lambda rows: np.asarray(rows, dtype=np.int64) + 1)


def read_jsonl(path: Path, names: dict[str, str], keys: dict[str, str], errors: LineErrors) -> _Part:
    """JSON lines: pyarrow's reader (types inferred) when every line is an object and the types
    agree; else a per-line pass (``json.loads``) that numbers the bad lines and reads a column of
    mixed types as text."""
    data = read_all_bytes(require_file(path, "input file"), errors)
    if data.lstrip()[:1] == b"[":
        raise DataError(f"{path}: a JSON array; expected JSON lines (one object a line)")
    table = None
    n_lines = _object_lines(data)
    if n_lines:
        try:
            table = pa_json.read_json(
                pa.BufferReader(data), read_options=pa_json.ReadOptions(block_size=JSON_BLOCK_SIZE),
                parse_options=pa_json.ParseOptions(unexpected_field_behavior="infer"),
            )
            table.validate(full=True)
            if table.num_rows != n_lines:
                table = None
        except (pa.ArrowException, ValueError):
            table = None
    if table is not None:
        _check_columns(path, table.column_names, names, keys)
        lines = _nonblank_lines(data, strip=True)
        columns = {role: table.column(col).combine_chunks() for role, col in names.items()}
        return _Part(path, "jsonl", columns, names, keys, errors, lambda rows: lines[np.asarray(rows, dtype=np.int64)])
    return _read_jsonl_lines(path, data, names, keys, errors)


def _read_jsonl_lines(path: Path, data: bytes, names: dict[str, str], keys: dict[str, str], errors: LineErrors) -> _Part:
    wanted = list(dict.fromkeys(names.values()))
    values: dict[str, list] = {c: [] for c in wanted}
    seen: dict[str, None] = {}
    line_of: list[int] = []
    bad: list[tuple[int, str]] = []
    for no, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            bad.append((no, json_error_reason(e, raw)))
            continue
        if not isinstance(obj, dict):
            bad.append((no, f"not a JSON object (a {type(obj).__name__})"))
            continue
        if len(seen) < 1000:
            seen.update(dict.fromkeys(obj))
        line_of.append(no)
        for c in wanted:
            values[c].append(obj.get(c))
    present = [c for c in wanted if any(v is not None for v in values[c])] if line_of else []
    if line_of:
        missing = {role: col for role, col in names.items() if col not in present}
        if missing:
            _check_columns(path, list(seen), missing, keys)
    columns = {}
    for role, col in names.items():
        try:
            arr = pa.array(values[col])
        except (pa.ArrowException, TypeError, ValueError):  # mixed types: read as text
            arr = pa.array([None if v is None else json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in values[col]], type=pa.string())
        columns[role] = arr
    lines = np.asarray(line_of, dtype=np.int64)
    if not line_of:
        columns = {role: pa.array([], type=pa.string()) for role in names}
    return _Part(path, "jsonl", columns, names, keys, errors, lambda rows: lines[np.asarray(rows, dtype=np.int64)], bad)


def read_part(path: Path, fmt: str, names: dict[str, str], keys: dict[str, str], policy: str, delimiter: str | None) -> _Part:
    """The named columns of one file (``names``: role -> column)."""
    if fmt == "parquet":
        return read_parquet(path, names, keys, RowErrors(path, policy))
    errors = LineErrors(path, policy)
    if fmt == "jsonl":
        return read_jsonl(path, names, keys, errors)
    return read_csv(path, names, keys, errors, delimiter or ("\t" if fmt == "tsv" else ","), fmt)


# ---- typing the columns ----------------------------------------------------------------------


def _plain(arr) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _present(arr: pa.Array) -> np.ndarray:
    """Not null, and not an empty string."""
    ok = arr.is_valid().to_numpy(zero_copy_only=False).copy()
    if _is_text(arr.type):
        ok &= pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False) > 0
    return ok


def _numbers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float values, which are finite numbers, which are int64 integers) of a text column."""
    s = pc.fill_null(arr, "")
    num = pc.match_substring_regex(s, FLOAT_PATTERN).to_numpy(zero_copy_only=False).copy()
    floats = pc.cast(pc.if_else(pa.array(num), s, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False)
    num &= np.isfinite(floats)
    return floats, num, int64_ok(s) & num


def _cast_all(arr: pa.Array, to: pa.DataType) -> np.ndarray | None:
    """Every value of a text column cast at once (None when one does not parse)."""
    try:
        return pc.cast(arr, to).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _canonical_ints(arr: pa.Array) -> np.ndarray | None:
    """The integers of a text column whose every value is one written canonically (as
    ``CANONICAL_INT``: it prints back to the same text), else None."""
    ints = _cast_all(arr, pa.int64())
    if ints is None or not pc.all(pc.equal(pc.cast(pa.array(ints), pa.string()), arr)).as_py():
        return None
    if np.abs(ints).max(initial=0) >= 10**18:  # beyond 18 digits: as CANONICAL_INT, text
        return None
    return ints


def _ints_of_text(arr: pa.Array, mask: np.ndarray) -> np.ndarray:
    return pc.cast(pc.if_else(pa.array(mask), pc.fill_null(arr, "0"), pa.scalar("0")), pa.int64()).to_numpy(zero_copy_only=False)


@dataclass
class _Typed:
    """One column typed: its values (numpy), the rows whose value is bad with why, and a kind."""

    values: np.ndarray
    bad: np.ndarray  # bool per row
    why: Callable[[int], str]
    kind: str = ""


class _Column:
    """Typing of one raw column of one part; a wrong type is a DataError with a sample value."""

    def __init__(self, part: _Part, role: str) -> None:
        self.part, self.role = part, role
        self.name, self.key = part.names[role], part.keys[role]
        self.arr = _plain(part.columns[role])
        self.present = _present(self.arr)

    def sample(self, i: int) -> str:
        v = self.arr[int(i)].as_py()
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."

    def type_error(self, i: int | None, expected: str) -> DataError:
        if i is None:
            i = int(np.argmax(self.present)) if self.present.any() else 0
        where = f"{self.part.unit} {int(self.part.locate(np.array([i]))[0])}" if len(self.arr) else "no rows"
        return DataError(
            f"{self.part.path}: column {self.name!r} ({self.key}) holds {self.sample(i)} ({where}, type "
            f"{self.arr.type}); expected {expected}"
        )

    def empty(self, i: int) -> str:
        return f"{self.name} is empty or missing"

    def bad_value(self, what: str) -> Callable[[int], str]:
        return lambda i: (f"{self.name}={self.sample(i)} is not {what}" if self.present[i] else self.empty(i))

    # ids: user, item
    def ids(self) -> _Typed:
        arr, t, present = self.arr, self.arr.type, self.present
        bad = ~present
        if pa.types.is_integer(t):
            values = pc.fill_null(arr, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
            kind = "int"
        elif pa.types.is_floating(t):
            f = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False)
            whole = np.isfinite(f) & (f == np.round(f)) & (np.abs(f) < 2**53)
            if not whole[present].all():
                raise self.type_error(int(np.flatnonzero(present & ~whole)[0]), "ids: integers or strings")
            values, kind = f.astype(np.int64), "int"
        elif _is_text(t) and present.all() and (whole := _canonical_ints(arr)) is not None:
            values, kind = whole, "int"
        elif _is_text(t):
            canon = pc.fill_null(pc.match_substring_regex(arr, CANONICAL_INT), False).to_numpy(zero_copy_only=False)
            if present.any() and canon[present].all():
                values, kind = _ints_of_text(arr, canon), "int"
            else:
                values, kind = np.asarray(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object), "str"
        else:
            raise self.type_error(None, "ids: integers or strings")
        return _Typed(values, bad, self.empty, kind)

    def category(self) -> _Typed:
        """Categories as text (``encode`` keys them as text), None where empty: such a row says
        nothing about its item's category."""
        typed = self.ids()
        values = typed.values.astype(str).astype(object) if typed.kind == "int" else typed.values.copy()
        values[~self.present] = None
        return _Typed(values, np.zeros(len(values), dtype=bool), self.empty, "str")

    def time(self) -> _Typed:
        arr, t, present = self.arr, self.arr.type, self.present
        if pa.types.is_integer(t):
            return _Typed(pc.fill_null(arr, 0).cast(pa.int64()).to_numpy(zero_copy_only=False), ~present, self.empty, "int")
        if pa.types.is_floating(t):
            f = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
            return _Typed(f, ~present | ~np.isfinite(f), self.bad_value("a finite number"), "float")
        if pa.types.is_timestamp(t) or pa.types.is_date(t):  # -> microseconds since the epoch (UTC)
            us = arr.cast(pa.timestamp("us", tz=getattr(t, "tz", None)))
            return _Typed(pc.fill_null(us.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), ~present, self.empty, "datetime")
        if not _is_text(t):
            raise self.type_error(None, "times: integers, numbers or ISO 8601 dates")
        whole = _cast_all(arr, pa.int64()) if present.all() else None
        if whole is not None:  # the usual case, at once: every value an integer
            return _Typed(whole, ~present, self.empty, "int")
        floats, num, ints = _numbers(arr)
        n_present = int(present.sum())
        if n_present and int((num & present).sum()) == n_present:  # every value a number
            if ints[present].all():
                return _Typed(_ints_of_text(arr, ints), ~present, self.empty, "int")
            return _Typed(floats, ~present, self.empty, "float")
        text = pd.Series(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object)
        parsed = pd.to_datetime(text.where(present & ~num, None), format="ISO8601", utc=True, errors="coerce")
        is_dt = parsed.notna().to_numpy() & present & ~num
        n_num, n_dt = int((num & present).sum()), int(is_dt.sum())
        if n_num == 0 and n_dt == 0:
            raise self.type_error(None, "times: integers, numbers or ISO 8601 dates")
        if n_dt > n_num:
            values = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype(np.int64)
            return _Typed(np.where(is_dt, values, 0), ~is_dt, self.bad_value("an ISO 8601 date"), "datetime")
        if ints[num & present].all():
            return _Typed(_ints_of_text(arr, ints), ~(num & present), self.bad_value("a number"), "int")
        return _Typed(floats, ~(num & present), self.bad_value("a number"), "float")

    def rating(self) -> _Typed:
        arr, t, present = self.arr, self.arr.type, self.present
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            f = pc.fill_null(arr.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
            return _Typed(f, ~present | ~np.isfinite(f), self.bad_value("a finite number"))
        if not _is_text(t):
            raise self.type_error(None, "ratings: numbers")
        whole = _cast_all(arr, pa.float64()) if present.all() else None
        if whole is not None and np.isfinite(whole).all():
            return _Typed(whole, ~present, self.bad_value("a number"))
        floats, num, _ = _numbers(arr)
        if present.any() and not (num & present).any():
            raise self.type_error(None, "ratings: numbers")
        return _Typed(floats, ~(num & present), self.bad_value("a number"))

    def label(self) -> _Typed:
        arr, t, present = self.arr, self.arr.type, self.present
        if pa.types.is_boolean(t):
            return _Typed(pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(np.int8), ~present, self.empty)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            f = pc.fill_null(arr.cast(pa.float64()), -1.0).to_numpy(zero_copy_only=False)
            ok = (f == 0) | (f == 1)
            if present.any() and not (ok & present).any():
                raise self.type_error(None, "labels: 0 or 1")
            return _Typed(np.where(ok, f, 0).astype(np.int8), ~(ok & present), self.bad_value("0 or 1"))
        if not _is_text(t):
            raise self.type_error(None, "labels: 0 or 1")
        low = pc.utf8_lower(pc.fill_null(arr, "")).to_numpy(zero_copy_only=False)
        codes = pd.Series(low, dtype=object).map(LABEL_TEXT)
        ok = codes.notna().to_numpy() & present
        if present.any() and not ok.any():
            raise self.type_error(None, "labels: 0 or 1")
        return _Typed(codes.fillna(0).to_numpy().astype(np.int8), ~ok, self.bad_value("0 or 1"))


def type_part(part: _Part) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Type every column of ``part``; report its bad rows (with those found while reading) in line
    order through its ``errors`` and drop them. Returns (role -> values, role -> kind); none when
    no row is left."""
    n = len(part)
    if n == 0:
        for line, reason in sorted(part.bad):
            part.errors.bad(line, reason)
        return {}, {}
    typed: dict[str, _Typed] = {}
    for role in part.columns:
        col = _Column(part, role)
        typed[role] = {"time": col.time, "rating": col.rating, "label": col.label, "category": col.category}.get(role, col.ids)()
    bad = np.zeros(n, dtype=bool)
    for t in typed.values():
        bad |= t.bad
    new = bad.copy()
    if part.reported is not None:
        new &= ~part.reported
        bad |= part.reported
    rows = np.flatnonzero(new)
    found = list(part.bad)
    if rows.size:
        lines = part.locate(rows)
        for row, line in zip(rows.tolist(), lines.tolist()):
            why = next(t.why(row) for t in typed.values() if t.bad[row])
            found.append((int(line), why))
    for line, reason in sorted(found):
        part.errors.bad(line, reason)
    if bad.all():
        return {}, {}
    out = {role: t.values[~bad] if bad.any() else t.values for role, t in typed.items()}
    return out, {role: t.kind for role, t in typed.items()}


# ---- the source ------------------------------------------------------------------------------


def _concat_ids(parts: list[np.ndarray], kinds: list[str]) -> tuple[np.ndarray, str]:
    """One id column from the files' columns: integers when every file's are, else strings."""
    if all(k == "int" for k in kinds):
        return np.concatenate(parts).astype(np.int64, copy=False), "int"
    out = [p if k == "str" else p.astype(str).astype(object) for p, k in zip(parts, kinds)]
    return np.concatenate(out).astype(object, copy=False), "str"


def _order_key(values: list[np.ndarray], kinds: list[str], paths: list[Path], name: str) -> tuple[np.ndarray, str]:
    """The int64 time order key of the concatenated files' time columns, and how it was made."""
    numeric = [k in ("int", "float") for k in kinds]
    if any(numeric) and not all(numeric):
        a, b = paths[numeric.index(True)], paths[numeric.index(False)]
        raise DataError(f"the time column {name!r} holds numbers in {a} and dates in {b}; expected one kind in every file")
    t = np.concatenate(values)
    if kinds[0] == "datetime":  # microseconds since the epoch
        if (t % 1_000_000 == 0).all():
            return t // 1_000_000, "dates / date-times, stored as seconds since 1970-01-01 UTC"
        return t, "date-times with fractions of a second, stored as microseconds since 1970-01-01 UTC"
    if all(k == "int" for k in kinds):
        return t.astype(np.int64, copy=False), "integers, kept"
    t = t.astype(np.float64)
    if (t == np.round(t)).all() and (np.abs(t) < 2**63).all():
        return t.astype(np.int64), "numbers, all whole: kept as integers"
    return np.unique(t, return_inverse=True)[1].astype(np.int64).reshape(-1), "numbers with fractions: stored as their rank (the order is kept)"


def duplicate_rows(columns: list[np.ndarray]) -> np.ndarray:
    """Mask of the rows equal, in every column, to an earlier row. Each column is factorized once
    and the codes combined into one int64 key (mixed radix, re-factorized only when the product of
    the sizes would overflow); the columns after the first three are looked at only when those
    three have duplicates (a row is a duplicate only if its user, item and time are)."""
    key, size = np.zeros(len(columns[0]), dtype=np.int64), 1
    for i, col in enumerate(columns):
        if i == 3:
            dup = pd.Series(key).duplicated(keep=False).to_numpy()
            if not dup.any():
                return dup
        codes, uniques = pd.factorize(col, use_na_sentinel=False)
        if size * len(uniques) >= 2**62:
            key = pd.factorize(key)[0]
            size = int(key.max()) + 1
        key, size = key * np.int64(len(uniques)) + codes, size * len(uniques)
    return pd.Series(key).duplicated(keep="first").to_numpy()


@dataclass
class _Rows:
    """Every kept row of every file (raw keys), in file order."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    category: np.ndarray | None
    rating: np.ndarray | None
    label: np.ndarray | None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, keep: np.ndarray) -> _Rows:
        return _Rows(**{k: (None if v is None else v[keep]) for k, v in vars(self).items()})


def _check_columns_config(columns, key: str, roles: tuple[str, ...], required: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(columns, dict):
        raise ConfigError(f"{key}={columns!r}: expected a mapping of {', '.join(roles)} to column names")
    unknown = [r for r in columns if r not in roles]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown; expected some of {', '.join(roles)}")
    out = {}
    for role in roles:
        name = columns.get(role)
        if name is None:
            if role in required:
                raise ConfigError(f"{key}.{role} is missing: name the column that holds the {role}")
            continue
        if isinstance(name, bool) or not isinstance(name, (str, int)) or str(name) == "":
            raise ConfigError(f"{key}.{role}={name!r}: expected a column name")
        out[role] = str(name)
    return out


@dataclass
class InteractionsSource(RealSource):
    """A behaviour log with named columns (see the module docstring)."""

    path: str | None = None  # a file, a folder or a glob; None: every data file in <data_dir>/raw/<name>/
    format: str = "auto"  # auto (each file's extension) | csv | tsv | parquet | jsonl
    columns: dict = field(default_factory=lambda: {"user": "user", "item": "item", "time": "time"})
    item_meta_path: str | None = None  # a file of (item, category) rows, instead of columns.category
    item_meta_columns: dict = field(default_factory=dict)  # item / category: null -> columns.item / columns.category or 'category'
    delimiter: str | None = None  # CSV / TSV: null -> ',' or tab
    duplicates: str = "keep"  # keep | drop: rows with every named column equal (counted either way)

    dataset_name = "interactions"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in ("auto", *FORMATS):
            raise ConfigError(f"dataset.format={self.format!r}: expected auto or one of {', '.join(FORMATS)}")
        if self.duplicates not in DUPLICATES:
            raise ConfigError(f"dataset.duplicates={self.duplicates!r}: expected one of {', '.join(DUPLICATES)}")
        if self.delimiter is not None and (not isinstance(self.delimiter, str) or len(self.delimiter) != 1 or self.delimiter in '"\n\r'):
            raise ConfigError(f"dataset.delimiter={self.delimiter!r}: expected one character (or null: ',' for csv, tab for tsv)")
        for key, value in (("dataset.path", self.path), ("dataset.item_meta", self.item_meta_path)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{key}={value!r}: expected a path (or null)")
        self._names = _check_columns_config(self.columns, "dataset.columns", ROLES, REQUIRED)
        if self.item_meta_path is not None:
            if "category" in self._names:
                raise ConfigError("dataset.columns.category and dataset.item_meta both give the item's category: set one of them")
            meta_cols = dict(self.item_meta_columns or {})
            meta_cols = {
                "item": meta_cols.get("item") or self._names["item"],
                "category": meta_cols.get("category") or "category",
            }
            self._meta_names = _check_columns_config(meta_cols, "dataset.item_meta_columns", ("item", "category"), ("item", "category"))
        self._files: list[Path] = []

    # ---- files ----------------------------------------------------------------------------------
    def locate(self, data_dir: str | Path, name: str) -> dict[str, Path]:
        """The input files (no download: the data is the user's)."""
        self.dataset_name = name
        self._files = find_files(self.path, Path(data_dir) / "raw" / name, self.format)
        inputs = {"behaviours": self._files[0]} if len(self._files) == 1 else {
            f"behaviours_{i:05d}": p for i, p in enumerate(self._files)
        }
        if self.item_meta_path is not None:
            meta = Path(self.item_meta_path).expanduser()
            if not meta.is_file():
                raise DataError(f"dataset.item_meta={self.item_meta_path!r}: no such file")
            if format_of(meta, self.format) is None:
                raise ConfigError(f"dataset.item_meta={self.item_meta_path!r}: cannot tell its format from the extension; "
                                  f"set dataset.format to one of {', '.join(FORMATS)}")
            inputs["item_meta"] = meta.resolve()
        self._inputs = inputs
        return inputs

    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:  # locate() finds the files itself
        return None

    def needed_files(self) -> list[str]:
        return ["a behaviour log: dataset.path=FILE, FOLDER or GLOB (.csv, .tsv, .parquet, .jsonl)"]

    def remote_files(self) -> list:
        return []

    # ---- reading --------------------------------------------------------------------------------
    def _behaviour_files(self) -> list[Path]:
        assert self._inputs is not None, "locate() first"
        return [p for role, p in sorted(self._inputs.items()) if role.startswith("behaviours")]

    def load_rows(self) -> tuple[_Rows, dict]:
        """Every good row of every file, typed (raw keys), and what reading found."""
        keys = {role: f"dataset.columns.{role}" for role in self._names}
        files = self._behaviour_files()
        unique_names = len({p.name for p in files}) == len(files)
        typed, kinds, paths, bad_lines, formats, n_read = [], [], [], {}, {}, 0
        for path in files:
            fmt = format_of(path, self.format)
            part = read_part(path, fmt, dict(self._names), keys, self.on_bad_line, self.delimiter)
            n_read += len(part) + len(part.bad) - (0 if part.reported is None else int(part.reported.sum()))
            values, kind = type_part(part)
            bad_lines[path.name if unique_names else str(path)] = part.errors.report()
            formats[fmt] = formats.get(fmt, 0) + 1
            if values:
                typed.append(values)
                kinds.append(kind)
                paths.append(path)
        if not typed:
            skipped = sum(r["bad_lines_skipped"] for r in bad_lines.values())
            raise DataError(f"no behaviour in {', '.join(map(str, files))}" + (f" ({skipped} malformed rows skipped)" if skipped else ""))
        cols: dict[str, np.ndarray | None] = {}
        id_kinds: dict[str, str] = {}
        for role in ("user", "item"):
            cols[role], id_kinds[role] = _concat_ids([v[role] for v in typed], [k[role] for k in kinds])
        if "category" in self._names:
            cols["category"] = np.concatenate([v["category"] for v in typed])
        time, time_note = _order_key([v["time"] for v in typed], [k["time"] for k in kinds], paths, self._names["time"])
        rows = _Rows(
            user=cols["user"], item=cols["item"], time=time, category=cols.get("category"),
            rating=np.concatenate([v["rating"] for v in typed]) if "rating" in self._names else None,
            label=np.concatenate([v["label"] for v in typed]) if "label" in self._names else None,
        )
        report = {
            "files": len(paths),
            "formats": formats,
            "columns": dict(self._names),
            "rows_read": int(n_read),
            "ids": {role: "integers" if k == "int" else "strings" for role, k in id_kinds.items()},
            "time": time_note,
            "bad_lines": bad_lines,
            "warnings": [],
            "notes": [],
        }
        rows = self._duplicates(rows, report)
        return rows, report

    def _duplicates(self, rows: _Rows, report: dict) -> _Rows:
        dup = duplicate_rows([v for v in vars(rows).values() if v is not None])
        n_dup = int(dup.sum())
        report["duplicate_rows"] = n_dup
        report["duplicates"] = self.duplicates
        if n_dup:
            what = "kept (dataset.duplicates=drop drops them)" if self.duplicates == "keep" else "dropped"
            report["warnings"].append(f"{n_dup:,} duplicate rows (every named column equal to an earlier row's): {what}")
            if self.duplicates == "drop":
                rows = rows.take(~dup)
        return rows

    def _meta(self, rows: _Rows, report: dict) -> ItemMeta:
        """The category of each item: from the category column, the item-metadata file, or one
        category for all."""
        if rows.category is not None:
            has = pd.notna(rows.category)
            meta, conflicts = first_category(rows.item[has], rows.category[has])
            report["category"] = f"from the column {self._names['category']!r}: each item's first row with one"
            report["items_with_several_categories"] = conflicts
            return meta
        if self.item_meta_path is not None:
            return self._read_item_meta(rows, report)
        report["category"] = "none in the data: every item is in one category"
        report["notes"].append(
            "no category column or item-metadata file: every item is in one category "
            "(dataset.columns.category or dataset.item_meta names one)"
        )
        return ItemMeta(item=pd.unique(rows.item), cate=np.full(len(pd.unique(rows.item)), ONE_CATEGORY, dtype=object))

    def _read_item_meta(self, rows: _Rows, report: dict) -> ItemMeta:
        path = Path(self._inputs["item_meta"])
        keys = {role: f"dataset.item_meta_columns.{role}" for role in self._meta_names}
        part = read_part(path, format_of(path, self.format), dict(self._meta_names), keys, self.on_bad_line, self.delimiter)
        values, kinds = type_part(part)
        if not values:
            raise DataError(f"{path}: no item in the item-metadata file" + (f" ({part.errors.count} malformed rows skipped)" if part.errors.count else ""))
        item, cate = values["item"], values["category"]
        if kinds["item"] == "int" and rows.item.dtype == object:  # match the behaviours' keys: text
            item = item.astype(str).astype(object)
        elif kinds["item"] == "str" and rows.item.dtype != object:  # integers: the items that are integers
            is_int = pd.Series(item).str.fullmatch(CANONICAL_INT[1:-1]).fillna(False).to_numpy(dtype=bool)
            item, cate = np.array([int(v) for v in item[is_int]], dtype=np.int64), cate[is_int]
        has = pd.notna(cate)
        meta = ItemMeta(item=item[has], cate=cate[has])
        behaviour_items = pd.unique(rows.item)
        listed = pd.Index(pd.unique(item))
        found = int((listed.get_indexer(behaviour_items) >= 0).sum())
        report["category"] = f"from the item-metadata file {path.name} (columns {self._meta_names['item']!r} -> {self._meta_names['category']!r})"
        report["item_meta"] = {
            "rows": len(item),
            "items": len(listed),
            "duplicate_items": int(len(item) - len(listed)),
            "behaviour_items_listed": found,
        }
        report["bad_lines"]["item_meta " + path.name] = part.errors.report()
        missing = len(behaviour_items) - found
        if found == 0:
            raise DataError(
                f"none of the {len(behaviour_items):,} items of the behaviours is in {path} (its items look like "
                f"{item[0]!r}, the behaviours' like {behaviour_items[0]!r}): check dataset.item_meta_columns.item"
            )
        if missing:
            msg = f"{missing:,} of {len(behaviour_items):,} items are not in the item-metadata file {path.name}: they get the unknown category 0"
            log.warning(msg)
            report["warnings"].append(msg)
        return meta

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta, dict]:
        """Behaviours (with a label column: its positive rows) as raw-key events, and the items'
        categories."""
        rows, report = self.load_rows()
        meta = self._meta(rows, report)
        if rows.label is not None:
            pos = rows.label == 1
            report["label"] = {
                "column": self._names["label"], "rows": len(rows), "positive": int(pos.sum()),
                "negative_rows_dropped": int((~pos).sum()),
                "use": "the positive rows are the behaviours; the protocol draws its own negatives",
            }
            rows = rows.take(pos)
            if len(rows) == 0:
                raise DataError(f"no row has {self._names['label']}=1: there is no behaviour")
        return Events(user=rows.user, item=rows.item, time=rows.time, rating=None if rows.rating is None else rows.rating.astype(np.float32)), meta, report

    # ---- building -------------------------------------------------------------------------------
    def build(self, protocol) -> tuple[Streams, np.ndarray, dict[str, Samples], dict]:
        name = getattr(protocol, "name", type(protocol).__name__)
        if name == "as_is":
            return self._build_as_is(protocol)
        if name == "movielens" and "rating" not in self._names:
            raise ConfigError(
                "dataset/protocol=movielens labels each row by its rating: set dataset.columns.rating "
                "(or pick din or dien, or as_is with a dataset.columns.label)"
            )
        return super().build(protocol)

    def _build_as_is(self, protocol) -> tuple[Streams, np.ndarray, dict[str, Samples], dict]:
        """Every row a sample with its own label; histories from the user's earlier positive rows
        (see the module docstring for the splits)."""
        if "label" not in self._names:
            raise ConfigError(
                "dataset/protocol=as_is keeps the rows as the samples, which needs a 0/1 label: set "
                "dataset.columns.label (or pick din, dien or movielens)"
            )
        assert self._inputs is not None, "locate() first"
        rows, report = self.load_rows()
        meta = self._meta(rows, report)
        # Sort the rows as encode does (user, time, file order), so its streams line up with them.
        uid, _ = dense_ids(rows.user)
        rows = rows.take(np.lexsort((np.arange(len(rows)), rows.time, uid)))
        every, item_cate, encoded = encode(Events(user=rows.user, item=rows.item, time=rows.time), meta)
        label = rows.label
        owner = user_of_behaviour(every.offsets)
        pos = label == 1
        n_pos = np.bincount(owner[pos], minlength=len(every.offsets) - 1)
        offsets = np.zeros(len(every.offsets), dtype=np.int64)
        offsets[1:] = np.cumsum(n_pos)
        streams = Streams(offsets=offsets, item=every.item[pos], cate=every.cate[pos], time=every.time[pos])
        # hist_end: the user's positives strictly before the row's time (one history per time).
        before = np.concatenate([[0], np.cumsum(pos)])
        t = every.time
        first_of_time = np.ones(len(t), dtype=bool)
        first_of_time[1:] = (owner[1:] != owner[:-1]) | (t[1:] != t[:-1])
        group_start = np.flatnonzero(first_of_time)[np.cumsum(first_of_time) - 1]
        hist_end = before[group_start] - before[every.offsets[owner]]
        p = n_pos[owner]
        kept = p >= 3
        valid_mode = getattr(protocol, "valid", "last_position")
        is_test = kept & (hist_end >= p - 1)
        is_valid = kept & (hist_end == p - 2) & (valid_mode != "none")
        samples = Samples(user=owner, item=every.item, cate=every.cate, label=label.astype(np.float32), hist_end=hist_end)
        masks = {"train": ~is_test & ~is_valid, "valid": is_valid, "test": is_test}
        splits = {s: samples.take(np.flatnonzero(masks[s])) for s in SPLITS}
        users = np.flatnonzero(every.lengths() > 0)
        encoded = {**encoded, "rows": encoded["behaviours"], "behaviours": int(pos.sum())}
        info = {
            "protocol": "as_is",
            "samples": "every row, with its own label",
            "history": "the user's positive rows strictly earlier in time",
            "valid": valid_mode,
            "users_train_only_fewer_than_3_positives": int(np.count_nonzero(n_pos[users] < 3)),
            "users_per_split": {s: int(np.unique(splits[s].user).size) for s in SPLITS},
            "source": {"files": {k: str(v) for k, v in self._inputs.items()}, **report, "encoded": encoded},
        }
        return streams, item_cate, splits, info
