"""A fast reader for delimited files (no quoting) with typed columns, shared by the MovieLens,
Taobao and BARS sources.

``read_delimited`` / ``Field`` / ``Table``: a multi-threaded typed pyarrow read when the file is
clean, and, only when it is not, a careful single-threaded pass that finds every bad line with its
number and applies ``dataset.on_bad_line``. ``candidate_folders`` lists where a source looks for
its files (a zip's subfolder first).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrbench.data.sources.raw import LineErrors, open_binary, read_all_bytes, require_file
from ctrbench.errors import DataError

INT_PATTERN = r"^-?[0-9]{1,19}$"  # decimal digits; 19 of them may still overflow int64: see int64_ok
_INT19_PATTERN = r"^-?[0-9]{19}$"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # finite decimals only
FIELD_KINDS = ("int", "float", "str", "enum")


@dataclass(frozen=True)
class Field:
    """One column of a delimited file. ``kind``: ``int`` (-> int64), ``float`` (-> float64, finite),
    ``str`` (-> a pyarrow string array, any text) or ``enum`` (-> int8 code = index in ``allowed``;
    any other value is a bad line)."""

    name: str
    kind: str = "int"
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.kind in FIELD_KINDS, self.kind
        assert self.kind != "enum" or self.allowed, "an enum field lists its allowed values"


@dataclass
class Table:
    """The rows read from one file: numpy arrays for int / float / enum columns, pyarrow
    (chunked) string arrays for str columns. ``skipped`` holds the sorted line numbers (1-based,
    >= ``first_line``) that gave no row (blank, malformed or rejected lines), so the line of any
    row is known (``line_of``)."""

    path: Path
    columns: dict[str, object]
    first_line: int
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def line_of(self, rows: np.ndarray) -> np.ndarray:
        """1-based line numbers of row indices ``rows``."""
        return lines_of_rows(np.asarray(rows, dtype=np.int64), self.first_line, self.skipped)

    def reject(self, rows: np.ndarray, describe: Callable[[int], str], errors: LineErrors) -> "Table":
        """Report rows ``rows`` as bad lines, in line order (``errors`` raises at the first one
        under ``on_bad_line=error``), and return the table without them."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            return self
        lines = self.line_of(rows)
        for row, line in zip(rows.tolist(), lines.tolist()):
            errors.bad(line, describe(row))
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        columns = {k: _take(v, keep) for k, v in self.columns.items()}
        return Table(self.path, columns, self.first_line, np.union1d(self.skipped, lines))


def lines_of_rows(rows: np.ndarray, first_line: int, skipped: np.ndarray) -> np.ndarray:
    """Line numbers of the rows (0-based, in file order) of a file whose data starts at
    ``first_line`` and in which the sorted lines ``skipped`` gave no row: the k-th row sits on the
    k-th line that is not skipped."""
    candidate = rows + first_line
    shifted = np.asarray(skipped, dtype=np.int64) - np.arange(len(skipped), dtype=np.int64)
    return candidate + np.searchsorted(shifted, candidate, side="right")


def _take(column, keep: np.ndarray):
    if isinstance(column, np.ndarray):
        return column[keep]
    return column.filter(pa.array(keep))


def check_header(path: Path, expected: Sequence[str], delimiter: str, data: bytes | None = None) -> None:
    """The file's first line names exactly the ``expected`` columns (surrounding spaces, quotes and
    a UTF-8 byte-order mark ignored); else a DataError naming the file and the expected columns."""
    if data is not None:
        first = data[: data.find(b"\n")] if b"\n" in data else data
        head = data[:4096]
    else:
        with open_binary(path) as f:
            first = f.readline(1 << 16)
            head = first + f.read(max(0, 4096 - len(first)))
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    got = [c.strip().strip('"') for c in text.split(delimiter)]
    if got != list(expected):
        if looks_binary(head):
            raise DataError(
                f"{path}: not a text file (its first bytes are binary, e.g. a compressed or unrelated file); expected "
                f"{delimiter.join(expected)} on its first line (is this the right file?)"
            )
        raise DataError(
            f"{path}: the header is {quote_start(text)}; expected the columns {delimiter.join(expected)} "
            f"(is this the right file?)"
        )


HEADER_SHOWN = 60  # characters of a wrong header quoted in the error


def quote_start(text: str, limit: int = HEADER_SHOWN) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters (``…`` and the length
    when cut)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def looks_binary(data: bytes) -> bool:
    """True when bytes are not text: a NUL byte, not UTF-8 (nor Latin-1 printable), or many control
    characters."""
    sample = data[:4096]
    if not sample:
        return False
    if b"\0" in sample:
        return True
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 3:  # a character cut by the sample's end
            text = sample[: e.start].decode("utf-8", errors="replace")
        else:
            text = sample.decode("latin-1")
            high = sum(0x80 <= ord(c) < 0xA0 for c in text)
            if high > len(text) // 20:
                return True
    control = sum(ord(c) < 32 and c not in "\t\r\n\f" for c in text)
    return control > max(2, len(text) // 50)


def read_delimited(
    path: Path,
    fields: Sequence[Field],
    errors: LineErrors,
    *,
    delimiter: str = ",",
    header: Sequence[str] | None = None,
    data: bytes | None = None,
    separator_name: str | None = None,
) -> Table:
    """Read a delimited file without quoting (a ``.gz`` is decompressed) into typed columns.

    ``header``: the expected first line (checked, then skipped); None: the file has no header.
    ``data``: the file's content already in memory (e.g. after rewriting a multi-character
    separator), else the file is read from ``path``. Malformed lines (wrong field count, a value
    that does not parse) go through ``errors``; blank lines are ignored. A file with no data row
    left is a DataError."""
    path = require_file(Path(path), "input file")
    if header is not None:
        check_header(path, header, delimiter, data)
    first_line = 1 if header is None else 2
    table = _read_fast(path, fields, delimiter, first_line, data)
    if table is None:
        table = _read_careful(path, fields, errors, delimiter, first_line, data, separator_name)
    if len(table) == 0:
        extra = f" ({errors.count} bad lines skipped)" if errors.count else ""
        raise DataError(f"{path} has no data rows{extra}")
    return table


def _arrow_input(path: Path, data: bytes | None):
    return pa.BufferReader(data) if data is not None else str(path)


def _parse_options(delimiter: str, handler) -> pacsv.ParseOptions:
    # No quoting: a newline always ends a row, so row k of the file is known to sit on a line.
    # Empty lines are kept (as rows of empty strings) so that no line goes by unseen.
    return pacsv.ParseOptions(
        delimiter=delimiter, quote_char=False, escape_char=False, newlines_in_values=False,
        ignore_empty_lines=False, invalid_row_handler=handler,
    )


def _convert_options(types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False)


def _read_fast(path: Path, fields: Sequence[Field], delimiter: str, first_line: int, data: bytes | None) -> Table | None:
    """Multi-threaded typed read; None when anything is off (then the careful pass runs)."""
    arrow_type = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "enum": pa.dictionary(pa.int32(), pa.string())}
    try:
        table = pacsv.read_csv(
            _arrow_input(path, data),
            read_options=pacsv.ReadOptions(column_names=[f.name for f in fields], skip_rows=first_line - 1, block_size=1 << 24),
            parse_options=_parse_options(delimiter, None),  # a line with the wrong field count raises
            convert_options=_convert_options({f.name: arrow_type[f.kind] for f in fields}),
        )
    except (pa.ArrowException, OSError, EOFError, ValueError):
        return None
    columns: dict[str, object] = {}
    for f in fields:
        col = table.column(f.name)
        if f.kind == "enum":
            codes = _enum_codes(col, f.allowed)
            if (codes < 0).any():
                return None
            columns[f.name] = codes
        elif f.kind == "str":
            columns[f.name] = col
        else:
            values = col.to_numpy()
            if f.kind == "float" and not np.isfinite(values).all():
                return None
            columns[f.name] = values
    return Table(path, columns, first_line)


def _enum_codes(column: pa.ChunkedArray, allowed: tuple[str, ...]) -> np.ndarray:
    """int8 index in ``allowed`` of each value of a dictionary-encoded column (-1: not allowed)."""
    parts = []
    for chunk in column.chunks:
        lookup = np.array([allowed.index(v) if v in allowed else -1 for v in chunk.dictionary.to_pylist()] + [-1], dtype=np.int8)
        parts.append(lookup[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int8)


def _parse_text(values: pa.Array, f: Field) -> tuple[object, np.ndarray]:
    """(typed values, ok mask) of one column chunk read as raw bytes."""
    if f.kind == "str":
        return utf8_texts(values)
    if f.kind == "enum":
        codes = pc.index_in(values, value_set=pa.array([v.encode() for v in f.allowed], type=pa.binary()))
        ok = codes.is_valid().to_numpy(zero_copy_only=False)
        return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int8), ok
    if f.kind == "int":
        ok = int64_ok(values)
        ok_arrow = pa.array(ok)
    else:
        ok_arrow = pc.match_substring_regex(values, FLOAT_PATTERN)
        ok = ok_arrow.to_numpy(zero_copy_only=False)
    typed = pc.cast(pc.if_else(ok_arrow, values, pa.scalar(b"0", type=pa.binary())), pa.int64() if f.kind == "int" else pa.float64())
    typed = typed.to_numpy(zero_copy_only=False)
    if f.kind == "float":
        ok &= np.isfinite(typed)
    return typed, ok


def int64_ok(values: pa.Array) -> np.ndarray:
    """Which values (bytes or strings) are decimal integers that fit int64: up to 18 digits always
    do; the few with 19 are checked one by one (pyarrow's typed read accepts them too)."""
    ok = pc.match_substring_regex(values, INT_PATTERN).to_numpy(zero_copy_only=False).copy()
    long = pc.match_substring_regex(values, _INT19_PATTERN).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(long).tolist():
        ok[i] = INT64_MIN <= int(values[i].as_py()) <= INT64_MAX
    return ok


def utf8_texts(values: pa.Array, bad: str | None = "") -> tuple[pa.Array, np.ndarray]:
    """Bytes -> UTF-8 strings; a value that is not valid UTF-8 is not ok and becomes ``bad``
    (nulls stay null). The vectorised cast first; value by value only when it fails."""
    try:
        return values.cast(pa.string()), np.ones(len(values), dtype=bool)
    except pa.ArrowInvalid:
        texts, ok = [], np.ones(len(values), dtype=bool)
        for i, v in enumerate(values.to_pylist()):
            try:
                texts.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(bad)
                ok[i] = False
        return pa.array(texts, type=pa.string()), ok


def _value_reason(f: Field, raw: bytes) -> str:
    value = raw.decode("utf-8", errors="replace")
    shown = value if len(value) <= 60 else value[:57] + "..."
    if f.kind == "int":
        if value.lstrip("-").isdigit() and value.isascii():
            return f"{f.name}={shown!r} is out of the 64-bit integer range"
        return f"{f.name}={shown!r} is not an integer"
    if f.kind == "float":
        return f"{f.name}={shown!r} is not a finite number"
    if f.kind == "str":
        return f"{f.name}={shown!r} is not valid UTF-8"
    return f"{f.name}={shown!r} is not one of {', '.join(f.allowed)}"


def _read_careful(
    path: Path, fields: Sequence[Field], errors: LineErrors, delimiter: str, first_line: int,
    data: bytes | None, separator_name: str | None,
) -> Table:
    """Single-threaded streaming read of every column as raw bytes, then vectorised parsing: finds each
    malformed line with its number, reports them in line order through ``errors``, and keeps the
    good rows. pyarrow cannot hand over a line with the wrong number of fields that is not valid
    UTF-8 (its invalid-row handler decodes the text); such a file is read again line by line
    (``_line_batches``), with the same line numbers."""
    if data is None and path.suffix == ".gz":
        data = read_all_bytes(path, errors)  # a truncated gzip: DataError, or its readable part
    sep = separator_name or {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
    try:
        with _undecodable_rows_raise():
            return _careful_pass(path, fields, errors, first_line, _arrow_batches(path, fields, delimiter, first_line, data, sep))
    except _Undecodable:
        data = data if data is not None else read_all_bytes(path, errors)
        return _careful_pass(path, fields, errors, first_line, _line_batches(data, fields, delimiter, first_line, sep))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot be read as {sep}-separated text ({str(e).splitlines()[0]})") from None


class _Undecodable(Exception):
    """pyarrow met a malformed line it cannot report (its text is not UTF-8)."""


@contextlib.contextmanager
def _undecodable_rows_raise():
    """While pyarrow reads: its invalid-row handler fails (unraisably, inside pyarrow) on a line
    that is not UTF-8, and pyarrow then raises ArrowInvalid; turn that into ``_Undecodable``
    instead of printing 'Exception ignored' on stderr."""
    seen: list[BaseException] = []
    previous = sys.unraisablehook

    def hook(u) -> None:
        if isinstance(u.exc_value, UnicodeDecodeError):
            seen.append(u.exc_value)
        else:
            previous(u)

    sys.unraisablehook = hook
    try:
        yield
    except pa.ArrowInvalid:
        if seen:
            raise _Undecodable() from None
        raise
    finally:
        sys.unraisablehook = previous


def _field_count_reason(fields: Sequence[Field], sep: str, got: int) -> str:
    return f"expected {len(fields)} {sep}-separated fields ({', '.join(f.name for f in fields)}), got {got}"


def _arrow_batches(path, fields, delimiter, first_line, data, sep):
    """(column arrays of raw bytes, [(line, reason)] of the lines skipped for a wrong field count)
    per batch, via pyarrow's streaming CSV reader."""
    names = [f.name for f in fields]
    invalid: list[tuple[int, str]] = []

    def handler(row) -> str:
        invalid.append((int(row.number or 0), _field_count_reason(fields, sep, row.actual_columns)))
        return "skip"

    reader = pacsv.open_csv(
        _arrow_input(path, data),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=first_line - 1, use_threads=False),
        parse_options=_parse_options(delimiter, handler),
        convert_options=_convert_options({n: pa.binary() for n in names}),
    )
    for batch in reader:
        yield [batch.column(i) for i in range(len(fields))], invalid
        invalid = []
    yield None, invalid


def _line_batches(data: bytes, fields, delimiter, first_line, sep, batch_lines: int = 1 << 16):
    """Like ``_arrow_batches``, splitting lines in Python: ``\r``, ``\n`` and ``\r\n`` end a
    line, as for pyarrow; an empty line is a row of empty fields (blank), as for pyarrow."""
    d = delimiter.encode()
    n = len(fields)
    lines = data.splitlines()[first_line - 1 :]
    for start in range(0, len(lines), batch_lines):
        cols: list[list[bytes]] = [[] for _ in fields]
        invalid: list[tuple[int, str]] = []
        for no, line in enumerate(lines[start : start + batch_lines], start=first_line + start):
            parts = line.split(d) if line else [b""] * n
            if len(parts) != n:
                invalid.append((no, _field_count_reason(fields, sep, len(parts))))
                continue
            for col, value in zip(cols, parts):
                col.append(value)
        yield [pa.array(c, type=pa.binary()) for c in cols], invalid
    yield None, []


def _careful_pass(path: Path, fields: Sequence[Field], errors: LineErrors, first_line: int, batches) -> Table:
    """Parse the batches of raw columns; report every bad line in line order at the end."""
    names = [f.name for f in fields]
    parts: dict[str, list] = {n: [] for n in names}
    invalid: list[tuple[int, str]] = []
    blank_rows: list[np.ndarray] = []
    bad_rows: list[int] = []
    bad_reasons: list[str] = []
    produced = 0
    for strings, batch_invalid in batches:
        invalid += batch_invalid
        if strings is None:
            break
        num_rows = len(strings[0])
        blank = np.ones(num_rows, dtype=bool)
        for s in strings:
            blank &= pc.equal(pc.binary_length(s), 0).to_numpy(zero_copy_only=False)
        first_bad = np.full(num_rows, -1, dtype=np.int64)
        typed = []
        for i, (f, s) in enumerate(zip(fields, strings)):
            values, ok = _parse_text(s, f)
            first_bad[~ok & ~blank & (first_bad < 0)] = i
            typed.append(values)
        for r in np.flatnonzero(first_bad >= 0).tolist():
            i = int(first_bad[r])
            bad_rows.append(produced + r)
            bad_reasons.append(_value_reason(fields[i], strings[i][r].as_py()))
        keep = ~blank & (first_bad < 0)
        for f, values in zip(fields, typed):
            parts[f.name].append(_take(values, keep))
        blank_rows.append(produced + np.flatnonzero(blank))
        produced += num_rows

    handler_lines = np.asarray(sorted(line for line, _ in invalid), dtype=np.int64)
    blank_lines = lines_of_rows(np.concatenate(blank_rows) if blank_rows else np.empty(0, np.int64), first_line, handler_lines)
    value_lines = lines_of_rows(np.asarray(bad_rows, dtype=np.int64), first_line, handler_lines)
    all_bad = sorted(invalid + list(zip(value_lines.tolist(), bad_reasons)))
    for line, reason in all_bad:
        errors.bad(line, reason)
    skipped = np.unique(np.concatenate([handler_lines, blank_lines, value_lines]))
    columns = {f.name: _concat(parts[f.name], f) for f in fields}
    return Table(path, columns, first_line, skipped)


def _concat(parts: list, f: Field):
    if f.kind == "str":
        return pa.chunked_array(parts, type=pa.string())
    dtype = {"int": np.int64, "float": np.float64, "enum": np.int8}[f.kind]
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)


def candidate_folders(raw_dir: Path, preferred: Sequence[str] = ()) -> list[Path]:
    """Where a source looks for its files: the ``preferred`` subfolders of ``raw_dir`` first, then
    ``raw_dir`` itself, then its other subfolders (sorted); only folders that exist."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        return []
    out = [raw_dir / p for p in preferred if (raw_dir / p).is_dir()] + [raw_dir]
    out += [p for p in sorted(raw_dir.iterdir()) if p.is_dir() and p not in out]
    return out
