"""Amazon product reviews (McAuley et al.), 2014 and 2018 releases, any category.

Files (in ``raw_dir``; each may also be there un-gzipped, without ``.gz``):

- 2014 (https://jmcauley.ucsd.edu/data/amazon/): ``reviews_<Category>_5.json.gz`` (the 5-core
  reviews, one strict JSON object a line) and ``meta_<Category>.json.gz`` (one **Python dict
  literal** a line: single-quoted strings, not JSON), the files the DIN and DIEN code read
  (papers.md §1.2, §2.2).
- 2018 (https://nijianmo.github.io/amazon/index.html): ``<Category>_5.json.gz`` and
  ``meta_<Category>.json.gz``, both strict JSON lines. Category names are used as given (2018
  names use underscores, e.g. ``Cell_Phones_and_Accessories``).

What is read:

- **Reviews** (both releases) are the behaviours: ``reviewerID`` (user), ``asin`` (item),
  ``unixReviewTime`` (an integer, the time) and ``overall`` (the rating, a number). The fast path
  parses the file with ``pyarrow.json`` and an explicit schema (other fields are skipped); when
  that fails, a per-line ``json.loads`` pass over the whole file names the first bad line (not a
  JSON object, a field missing or null, a wrong type: a time that is not an integer, a rating that
  is not a number, an id that is not a string) or, with ``on_bad_line=skip``, skips and counts
  bad lines.
- **2014 meta**: only ``asin`` and ``categories`` (a list of category paths, each a list of
  strings). Lines are never ``eval``-ed: regular expressions over the bytes find the two top-level
  keys (string literals are skipped whole, so a key-like text inside a title or description is
  not mistaken for a key), and only the small ``categories`` literal is decoded with
  ``ast.literal_eval`` (cached: the same lists recur). The category is ``categories[-1][-1]``
  (``category_path=last``, the DIN code) or ``categories[0][-1]`` (``first``, the DIEN code). A
  line without ``asin`` is a bad line; a line without ``categories`` (or with an empty list or
  path) gives an item without category. Strings written by Python 2 as escaped UTF-8 bytes
  (``'Caf\\xc3\\xa9'``) are turned back into text.
- **2018 meta**: ``asin`` and ``category``, a single flat path (may be missing or empty). Both
  choices take its last element, ``category[-1]``: the DIN code's ``categories[-1][-1]`` and the
  DIEN code's ``categories[0][-1]`` are both "the leaf of a path" and differ only in *which* path
  when an item has several; a 2018 item has exactly one. HTML entities (``&amp;``) are unescaped.

Both files are read in chunks of whole lines (``READ_CHUNK``, gzip inflated by pyarrow), each
parsed and dropped before the next: memory holds the columns read (ids as one ``str`` per distinct
id), never a whole file, and what is read (lines, errors, counts) is what reading the whole file at
once gives.

Duplicate asins in the meta: the first line wins (counted). Items reviewed but without meta get
the unknown category in ``encode`` (counted there).

Checks around the two files:

- **Items without category.** A reviewed item without a meta line, or with one without a category,
  gets the unknown category 0. Above ``max_uncategorised`` (a fraction of the reviewed items,
  default 0.5) that is an error naming both files and the likely cause (a meta file of the other
  release, sniffed from its first lines; a meta file that matches no reviewed item); at or below
  it, any such item is a warning, logged and kept in the report (``warnings``; the statistics
  table shows it). A meta file with no non-blank line (an empty gzip) is an error.
- **Category names.** When the files are not both in ``raw_dir``, the category must be one of
  the release's published names (``CATEGORIES``): an unknown one is a ConfigError suggesting the
  closest names (and the other release's name when only that release has it), not a list of
  download links that do not exist. A name outside the list is accepted when both its files are
  there. When one of the two files is there, the error says which one is missing, and only the
  missing one is downloaded.
"""

from __future__ import annotations

import ast
import difflib
import functools
import html
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from ctrbench.data import download
from ctrbench.data.download import RemoteFile
from ctrbench.data.sources.raw import (
    Events,
    ItemMeta,
    LineErrors,
    gunzip_pieces,
    gzip_damage,
    json_error_reason,
    open_binary,
    require_file,
)
from ctrbench.data.sources.real import RealSource
from ctrbench.errors import ConfigError, DataError

log = logging.getLogger("ctrbench")

RELEASES = (2014, 2018)
CATEGORY_PATHS = ("last", "first")

PAGE_2014 = "https://jmcauley.ucsd.edu/data/amazon/"
URL_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
PAGE_2018 = "https://nijianmo.github.io/amazon/index.html"
URL_2018_REVIEWS = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/"
URL_2018_META = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/"

# The categories each release publishes 5-core review files for, as spelled in the file names
# (``reviews_<C>_5.json.gz`` / ``<C>_5.json.gz``, ``meta_<C>.json.gz``) on the pages above.
CATEGORIES = {
    2014: (
        "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books", "CDs_and_Vinyl",
        "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
        "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV",
        "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
        "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
    ),
    2018: (
        "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Books", "CDs_and_Vinyl",
        "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics", "Gift_Cards",
        "Grocery_and_Gourmet_Food", "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty",
        "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden",
        "Pet_Supplies", "Prime_Pantry", "Software", "Sports_and_Outdoors", "Tools_and_Home_Improvement",
        "Toys_and_Games", "Video_Games",
    ),
}


def _category_key(name: str) -> str:
    """A name reduced for matching: lower case, ``&`` as ``and``, other separators as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("&", " and ")).strip("_")


def _closest(name: str, names: tuple[str, ...], n: int = 3) -> list[str]:
    """The published names closest to ``name`` (an exact match up to case and separators first)."""
    by_key = {_category_key(c): c for c in names}
    key = _category_key(name)
    if key in by_key:
        return [by_key[key]]
    return [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=n, cutoff=0.6)]


def unknown_category_message(category: str, release: int) -> str | None:
    """None when ``category`` is one of the release's published names; else what to say about it:
    the closest names, and the other release's name when only that release has the category."""
    names = CATEGORIES[release]
    if category in names:
        return None
    msg = f"dataset.category={category!r} is not a category of the Amazon {release} release"
    close = _closest(category, names)
    if close:
        msg += f"; did you mean {' or '.join(close)}?"
    for other in RELEASES:
        if other == release:
            continue
        theirs = [c for c in _closest(category, CATEGORIES[other], n=1) if c not in names]
        if theirs and (_category_key(theirs[0]) == _category_key(category) or not close):
            msg += f"; the {other} release has {theirs[0]} (dataset.release={other})"
    if not close:
        msg += f"; the {release} release's categories are: {', '.join(names)}"
    return msg


JSON_BLOCK_SIZE = 16 << 20  # pyarrow parses blocks in parallel; a line longer than this falls back

# ---- reading a file in chunks of whole lines ----------------------------------------------------

# The (decompressed) bytes read and parsed at a time, in whole lines: memory holds a few chunks and
# the parsed columns, never a whole file (a Books-size reviews file is 8 GB of JSON, mostly review
# texts). Below glibc's largest mmap threshold (32 MiB), so that the chunks' memory is reused rather
# than mapped and page-faulted in afresh each time.
READ_CHUNK = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class _Damaged(Exception):
    """A truncated or corrupt gzip: the error, and the number of complete lines before the damage."""

    def __init__(self, error: Exception, n_lines: int) -> None:
        super().__init__(str(error))
        self.error, self.n_lines = error, n_lines


class _NeedsLinePass(Exception):
    """A chunk the pyarrow path cannot read: the whole file goes through the per-line pass."""


class _Redo(Exception):
    """pyarrow gave bytes beyond where ``gunzip_pieces`` finds the damage: read the file again
    without pyarrow."""


def _pieces(path: Path, size: int, arrow: bool = True) -> Iterator[bytes]:
    """The file's content (decompressed when it ends in ``.gz``) in pieces of about ``size`` bytes:
    the bytes ``read_all_bytes`` gives; on a damaged gzip, those before the damage, then
    ``_Damaged``. pyarrow inflates a gzip (``arrow``; faster than ``zlib`` here, and without
    holding the GIL, so the two files and the parsing overlap); when it stops on an error,
    ``gunzip_pieces`` reads the file again from the start (skipping what was given already) and
    decides: it accepts trailing zero padding, and finds the damage where ``read_all_bytes`` finds
    it (at the start of the 4 MiB compressed block it is in: ``_Redo`` when pyarrow gave more)."""
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            while piece := f.read(size):
                yield piece
        return
    given = 0
    with open(path, "rb") as f:
        magic = f.read(len(GZIP_MAGIC))
    if arrow and magic == GZIP_MAGIC:  # pyarrow would also inflate a zlib stream, which gzip refuses
        try:
            with pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") as stream:
                while piece := stream.read(size):
                    yield piece
                    given += len(piece)
            return
        except (OSError, pa.ArrowException):
            pass
    newlines = 0  # before the damage, for its message
    try:
        for piece in gunzip_pieces(path):
            newlines += piece.count(b"\n")
            if given:
                skip = min(given, len(piece))
                piece, given = piece[skip:], given - skip
            if piece:
                yield piece
    except (EOFError, zlib.error) as e:
        if given:
            raise _Redo from None
        raise _Damaged(e, newlines) from None
    if given:
        raise _Redo


def _line_chunks(path: Path, size: int, arrow: bool = True) -> Iterator[bytes]:
    """The content in chunks of whole lines of about ``size`` bytes (the last one may lack a final
    newline). A damaged gzip: the whole lines before the damage (the partial last one dropped),
    then ``_Damaged``."""
    held: list = []  # what came after the last newline
    for piece in _pieces(path, size, arrow):
        cut = piece.rfind(b"\n") + 1
        if not cut:
            held.append(piece)
            continue
        if held:
            chunk = b"".join([*held, memoryview(piece)[:cut]])
        else:
            chunk = piece if cut == len(piece) else piece[:cut]
        held = [piece[cut:]] if cut < len(piece) else []
        yield chunk
    if held:
        yield b"".join(held)


def _each_chunk(
    path: Path, errors: LineErrors, parse: Callable[[int, bytes], object], numbered: bool = True, arrow: bool = True
) -> None:
    """``parse(number of the chunk's first line, chunk)`` over the file in chunks of whole lines
    (``READ_CHUNK``), the next chunk read (in a second thread) while one is parsed; ``numbered``:
    count the lines (not needed when ``parse`` names no line). A damaged gzip is what
    ``read_all_bytes`` makes of it: with ``on_bad_line=error`` its DataError, even when a line
    before the damage is bad (the file used to be read whole before any line was looked at); with
    ``skip``, the whole lines before it are parsed and the damage counts as one bad line, ahead of
    the bad lines found in them."""
    chunks = _line_chunks(path, READ_CHUNK, arrow)
    start, damaged = 1, None
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(next, chunks, None)
            try:
                while True:
                    try:
                        chunk = ahead.result()
                    except _Damaged as d:
                        damaged = d
                        break
                    if chunk is None:
                        break
                    ahead = pool.submit(next, chunks, None)
                    parse(start, chunk)
                    if numbered:
                        start += chunk.count(b"\n")
            except DataError:
                if errors.policy == "error":  # a damaged gzip comes first: read the rest to know
                    try:
                        ahead.result()
                        for _ in chunks:
                            pass
                    except _Damaged as d:
                        gzip_damage(path, d.error, d.n_lines, errors)
                raise
    finally:
        chunks.close()
    if damaged is not None:
        head = LineErrors(path, errors.policy)
        gzip_damage(path, damaged.error, damaged.n_lines, head)  # raises with on_bad_line=error
        errors.put_first(head)


def _with_arrow_or_not(read: Callable) -> Callable:
    """``read(..., arrow=True)``, or once more with ``arrow=False`` when pyarrow's inflating gave
    bytes past the damage of a corrupt gzip (``_Redo``)."""

    @functools.wraps(read)
    def wrapper(*args, **kwargs):
        try:
            return read(*args, **kwargs, arrow=True)
        except _Redo:
            return read(*args, **kwargs, arrow=False)

    return wrapper


# ---- reviews ---------------------------------------------------------------------------------

REVIEW_SCHEMA = pa.schema(
    [("reviewerID", pa.string()), ("asin", pa.string()), ("unixReviewTime", pa.int64()), ("overall", pa.float64())]
)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


REVIEW_CHECKS = (
    ("reviewerID", lambda v: isinstance(v, str), "a string"),
    ("asin", lambda v: isinstance(v, str), "a string"),
    ("unixReviewTime", _is_int, "an integer"),
    ("overall", _is_number, "a number"),
)


def _read_json_table(data: bytes, schema: pa.Schema) -> pa.Table:
    """Parse JSON lines with ``schema`` (fields not in it skipped). Raises on any malformed line.

    Two defects of pyarrow's JSON reader (pyarrow 26) are kept away from it: a line that is not
    an object (``null`` first in the file segfaults the process; two objects on one line give two
    rows) is found beforehand by ``_object_lines``, and strings that are not UTF-8 (accepted as
    they are, then crashing whatever reads the column) by the full validation afterwards. Both
    raise ValueError / ArrowInvalid, and the per-line pass then names the line."""
    n_lines = _object_lines(data)
    if not n_lines:
        raise ValueError("a line is not a JSON object, or there is none")
    table = pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(block_size=JSON_BLOCK_SIZE, use_threads=True),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    table.validate(full=True)
    if table.num_rows != n_lines:
        raise ValueError(f"{table.num_rows} rows from {n_lines} lines")
    return table


def _object_lines(data: bytes, chunk: int = 1 << 26) -> int | None:
    """The number of non-blank lines when each starts (after blanks) with ``{``; else None.
    Vectorised over chunks of whole lines; only lines that do not start with ``{`` at once (rare:
    indented or blank ones) are looked at one by one."""
    a = np.frombuffer(data, dtype=np.uint8)
    n, pos, size = 0, 0, len(data)
    while pos < size:
        end = min(pos + chunk, size)
        if end < size:
            nl = data.find(b"\n", end)
            end = size if nl < 0 else nl + 1
        part = a[pos:end]
        starts = np.concatenate([[0], np.flatnonzero(part[:-1] == 10) + 1])
        n += len(starts)
        for i in np.flatnonzero(part[starts] != ord("{")).tolist():
            s0 = pos + int(starts[i])
            nl = data.find(b"\n", s0)
            line = data[s0 : end if nl < 0 or nl >= end else nl].strip(b" \t\r\n")
            if not line:
                n -= 1
            elif line[:1] != b"{":
                return None
        pos = end
    return n


def _blank(chunk: bytes) -> bool:
    """Blank lines only, as ``_object_lines`` sees them (a whole file of them reads as no line;
    a chunk of them is no reason for the per-line pass)."""
    return chunk.isspace() and not chunk.strip(b" \t\r\n")


def _json_lines(data: bytes, errors: LineErrors, start: int = 1):
    """(line number, object) of every non-blank line that is a JSON object; others are bad lines.
    ``start``: the number of the first line."""
    for no, raw in enumerate(io.BytesIO(data), start=start):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            errors.bad(no, json_error_reason(e, raw))
            continue
        if not isinstance(obj, dict):
            errors.bad(no, f"not a JSON object (a {type(obj).__name__})")
            continue
        yield no, obj


def _reviews_fast(data: bytes) -> pa.Table | None:
    """The review columns via pyarrow, or None when the file needs the per-line pass."""
    try:
        table = _read_json_table(data, REVIEW_SCHEMA)
    except (pa.ArrowException, ValueError):
        return None
    if any(table.column(name).null_count for name in REVIEW_SCHEMA.names):
        return None  # a missing or null field: the per-line pass names the line
    return table


def _reviews_slow(data: bytes, errors: LineErrors, start: int = 1, cols: dict[str, list] | None = None) -> dict[str, list]:
    """The review columns via ``json.loads`` per line (appended to ``cols``); bad lines raise or are
    counted. ``start``: the number of the first line."""
    if cols is None:
        cols = {name: [] for name, _, _ in REVIEW_CHECKS}
    for no, obj in _json_lines(data, errors, start):
        problem = None
        for name, ok, expected in REVIEW_CHECKS:
            if name not in obj or obj[name] is None:
                problem = f"no '{name}'"
                break
            if not ok(obj[name]):
                problem = f"'{name}' is {obj[name]!r}, expected {expected}"
                break
        if problem is not None:
            errors.bad(no, problem)
            continue
        for name, _, _ in REVIEW_CHECKS:
            cols[name].append(obj[name])
    return cols


def _object_array(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _shared_strings(column: pa.ChunkedArray) -> np.ndarray:
    """A string column as an object array in which equal strings are one object (8 bytes a row
    rather than a new ``str`` each: a user's id is stored once, not once a review)."""
    encoded = column.dictionary_encode()  # one dictionary for all chunks
    if encoded.num_chunks == 0:
        return np.empty(0, dtype=object)
    codes = pa.chunked_array([c.indices for c in encoded.chunks], type=pa.int32()).to_numpy()
    return encoded.chunk(0).dictionary.to_numpy(zero_copy_only=False)[codes]


def _fast_path(parse: Callable[[bytes], object], keep: Callable[[object], None]) -> Callable[[int, bytes], None]:
    """A chunk function for ``_each_chunk``: ``keep(parse(chunk))``, chunks of blank lines skipped;
    ``_NeedsLinePass`` when ``parse`` cannot read a chunk (it returns None)."""

    def fast(start: int, chunk: bytes) -> None:
        if _blank(chunk):
            return
        part = parse(chunk)
        if part is None:
            raise _NeedsLinePass
        keep(part)

    return fast


@_with_arrow_or_not
def read_reviews(path: Path, policy: str, arrow: bool = True) -> tuple[Events, dict]:
    """Events from a reviews file (either release): user=reviewerID, item=asin, time=unixReviewTime,
    rating=overall. Read in chunks (``READ_CHUNK``) through pyarrow, keeping only the four columns;
    when a chunk cannot be read so, the whole file goes through the per-line pass."""
    errors = LineErrors(path, policy)
    path = require_file(path, "Amazon reviews file")
    tables: list[pa.Table] = []

    try:
        _each_chunk(path, errors, _fast_path(_reviews_fast, tables.append), numbered=False, arrow=arrow)
    except _NeedsLinePass:
        tables.clear()
        cols: dict[str, list] = {name: [] for name, _, _ in REVIEW_CHECKS}
        _each_chunk(path, errors, lambda start, chunk: _reviews_slow(chunk, errors, start, cols), arrow=arrow)
        events = Events(
            user=_object_array(cols["reviewerID"]),
            item=_object_array(cols["asin"]),
            time=np.asarray(cols["unixReviewTime"], dtype=np.int64),
            rating=np.asarray(cols["overall"], dtype=np.float32),
        )
        del cols
    else:
        table = pa.concat_tables(tables) if tables else REVIEW_SCHEMA.empty_table()
        tables.clear()
        events = Events(
            user=_shared_strings(table.column("reviewerID")),
            item=_shared_strings(table.column("asin")),
            time=table.column("unixReviewTime").to_numpy().astype(np.int64, copy=False),
            rating=table.column("overall").to_numpy().astype(np.float32),
        )
        del table
    if len(events) == 0:
        raise DataError(f"{path}: no reviews in the file")
    return events, {"reviews": len(events), "bad_lines": errors.report()}


# ---- 2014 meta: Python dict literals ---------------------------------------------------------

# A Python string literal (optionally u-prefixed), single- or double-quoted, with escapes.
_SQ = rb"'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'"
_DQ = rb'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'
_STR = rb"u?(?:" + _SQ + rb"|" + _DQ + rb")"
# Everything before a key: whole string literals and runs of other characters, as few as needed
# (so a key is only found where a literal starts, never inside one). Atomic groups keep a failed
# search linear.
_SKIP = rb"\s*\{(?>[^'\"\n]++|" + _SQ + rb"|" + _DQ + rb")*?"
_STR_LIST = rb"\[\s*(?:" + _STR + rb"(?:\s*,\s*" + _STR + rb")*+\s*,?\s*)?\]"
_PATHS = rb"\[\s*(?:" + _STR_LIST + rb"(?:\s*,\s*" + _STR_LIST + rb")*+\s*,?\s*)?\]"
_ASIN_VALUE = rb"(?:'asin'|\"asin\")\s*:\s*(" + _STR + rb")"
_CATEGORIES_VALUE = rb"(?:'categories'|\"categories\")\s*:\s*(" + _PATHS + rb")"

ASIN_AT = re.compile(_ASIN_VALUE)  # matched where a quick search found the key
CATEGORIES_AT = re.compile(_CATEGORIES_VALUE)
PATHS_RE = re.compile(_PATHS)
ASIN_RE = re.compile(_SKIP + _ASIN_VALUE)  # the full scan from the start of the line
CATEGORIES_RE = re.compile(_SKIP + _CATEGORIES_VALUE)
CATEGORIES_KEY_RE = re.compile(_SKIP + rb"(?:'categories'|\"categories\")\s*:")
_LEAF_TOKENS = re.compile(_STR + rb"|\]")  # the string literals and closing brackets of a categories list


def _from_py2_bytes(text: str) -> str:
    """A Python 2 ``str`` repr escapes UTF-8 bytes (``\\xc3\\xa9``); literal_eval then gives
    latin-1 characters. Undo that when the result is valid UTF-8; else keep the text."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _string_literal(raw: bytes) -> str:
    """The value of one Python string literal (as matched by ``_STR``); only literals with
    escapes go through ``ast.literal_eval`` (of that literal alone)."""
    body = raw[1:] if raw[:1] in (b"u", b"U") else raw
    if b"\\" not in body:
        return body[1:-1].decode("utf-8")
    return _from_py2_bytes(ast.literal_eval(raw.decode("utf-8")))


def _leaf_literal(paths: bytes, category_path: str) -> bytes | None:
    """The literal of ``paths[-1][-1]`` (last) or ``paths[0][-1]`` (first) in a categories list
    literal matched by ``_PATHS``; None for an empty list or path. Works on tokens: each inner
    list ends with ``]``, the outer list with the final ``]``."""
    tokens = _LEAF_TOKENS.findall(paths)
    if category_path == "last":  # [..., [..., leaf]] -> tokens end with leaf, ], ]
        leaf = tokens[-3] if len(tokens) >= 3 else b"]"
    else:  # [[..., leaf], ...] -> leaf is the token before the first ]
        first_close = tokens.index(b"]")
        leaf = tokens[first_close - 1] if first_close > 0 else b"]"
    return None if leaf == b"]" else leaf


def _may_open_string(line: bytes, q: int) -> bool:
    """Whether the quote at ``q`` could open a string literal: it follows ``{``, ``[``, ``(``,
    ``:`` or ``,`` (spaces and a ``u`` prefix aside), or the check is not conclusive (an escaped
    quote, the line start)."""
    j = q - 1
    if j >= 0 and line[j] in b"uU":
        j -= 1
    while j >= 0 and line[j] in b" \t":
        j -= 1
    return j < 0 or line[j] in b"{[(:,\\"


def _quick_key(line: bytes, key: bytes) -> int:
    """Offset of ``'key': `` in a dict-literal line when a plain search proves it is a key, else -1.

    In a Python repr, ``'`` is escaped inside single-quoted literals and double-quoted literals
    hold no ``"`` at all. So an unescaped ``'key'`` that follows ``{`` or a space can only be text
    inside a literal if the nearest ``"`` before it opens a double-quoted literal, which needs
    that quote to follow ``{ [ ( : ,``. When it does not (or there is no ``"`` before), the hit is a
    key; otherwise (-1) the full scan from the start of the line (``*_RE``) decides."""
    p = line.find(b"'" + key + b"': ")
    if p <= 0 or line[p - 1] not in b"{ ":
        return -1
    q = line.rfind(b'"', 0, p)
    return p if q < 0 or not _may_open_string(line, q) else -1


@dataclass
class _Meta2014Reader:
    """Parses the lines of one 2014 meta file. Categories literal -> category is cached (the same
    lists recur), so most lines cost a few ``bytes.find`` calls and a dict lookup."""

    category_path: str
    errors: LineErrors

    def __post_init__(self) -> None:
        self._cache: dict[bytes, str] = {}

    def _asin(self, line: bytes) -> str | None:
        if line.startswith(b"{'asin': '"):  # how the files write it
            end = line.find(b"'", 10)
            if end > 0 and line.find(b"\\", 10, end) < 0:
                return line[10:end].decode("utf-8")
        p = _quick_key(line, b"asin")
        m = ASIN_AT.match(line, p) if p > 0 else ASIN_RE.match(line)
        return None if m is None else _string_literal(m.group(1))

    def _category_of(self, paths: bytes) -> str:
        """The category of a categories literal that matches ``_PATHS``."""
        cate = self._cache.get(paths)
        if cate is None:
            leaf = _leaf_literal(paths, self.category_path)
            cate = "" if leaf is None else _string_literal(leaf)
            self._cache[paths] = cate
        return cate

    def _category(self, line: bytes) -> str | None:
        """The category ('' without categories), or None when 'categories' is malformed."""
        p = _quick_key(line, b"categories")
        if p > 0:
            start = p + len(b"'categories': ")
            end = line.find(b"]]", start)  # usually where the literal ends: try the cache first
            if end > 0:
                paths = line[start : end + 2]
                cate = self._cache.get(paths)
                if cate is not None:
                    return cate
                if PATHS_RE.fullmatch(paths):
                    return self._category_of(paths)
            m = CATEGORIES_AT.match(line, p)
        else:
            m = CATEGORIES_RE.match(line)
        if m is not None:
            return self._category_of(m.group(1))
        return None if CATEGORIES_KEY_RE.match(line) is not None else ""

    def parse(self, no: int, line: bytes) -> tuple[str, str] | None:
        """(asin, category) of one line, or None (the line is bad, reported)."""
        body = line.strip()
        if not (body[:1] == b"{" and body[-1:] == b"}"):
            self.errors.bad(no, "not a Python dict literal ({...})")
            return None
        try:
            item = self._asin(body)
            if item is None:
                self.errors.bad(no, "no 'asin' (a string)")
                return None
            cate = self._category(body)
        except (UnicodeDecodeError, ValueError, SyntaxError) as e:
            self.errors.bad(no, f"cannot decode a string ({type(e).__name__}: {e})")
            return None
        if cate is None:
            self.errors.bad(no, "'categories' is not a list of lists of strings")
            return None
        return item, cate


@_with_arrow_or_not
def read_meta_2014(path: Path, policy: str, category_path: str, arrow: bool = True) -> tuple[list[str], list[str], LineErrors, int]:
    """(asins, categories, errors, lines read) of a 2014 meta file, in file order (read in chunks)."""
    errors = LineErrors(path, policy)
    path = require_file(path, "Amazon meta file")
    reader = _Meta2014Reader(category_path, errors)
    items: list[str] = []
    cates: list[str] = []
    lines = 0

    def parse(start: int, chunk: bytes) -> None:
        nonlocal lines
        for no, line in enumerate(io.BytesIO(chunk), start=start):
            if not line.strip():
                continue
            lines += 1
            parsed = reader.parse(no, line)
            if parsed is not None:
                items.append(parsed[0])
                cates.append(parsed[1])

    _each_chunk(path, errors, parse, arrow=arrow)
    return items, cates, errors, lines


# ---- 2018 meta: JSON lines with a flat category path ----------------------------------------

META_2018_SCHEMA = pa.schema([("asin", pa.string()), ("category", pa.list_(pa.string()))])


def _leaves_fast(data: bytes) -> tuple[list[str], list[str], int] | None:
    """(asins, category[-1] or '', lines) via pyarrow, or None when the per-line pass is needed."""
    try:
        table = _read_json_table(data, META_2018_SCHEMA)
    except (pa.ArrowException, ValueError):
        return None
    asin = table.column("asin")
    if asin.null_count:
        return None  # a line without asin: the per-line pass names it
    if table.num_rows == 0:
        return [], [], 0
    cat = table.column("category").combine_chunks()
    if cat.values.null_count:
        return None  # a null inside a list: the per-line pass names the line
    offsets = cat.offsets.to_numpy()
    values = cat.values.to_numpy(zero_copy_only=False)
    has = np.diff(offsets) > 0
    if cat.null_count:
        has &= ~cat.is_null().to_numpy(zero_copy_only=False)
    leaves = np.full(len(cat), "", dtype=object)
    leaves[has] = values[offsets[1:][has] - 1]
    leaves[pd.isna(leaves)] = ""
    return asin.to_pylist(), leaves.tolist(), table.num_rows


def _leaves_slow(data: bytes, errors: LineErrors, start: int = 1) -> tuple[list[str], list[str], int]:
    """Same as ``_leaves_fast`` with ``json.loads`` per line; bad lines raise or are counted.
    ``start``: the number of the first line."""
    items: list[str] = []
    cates: list[str] = []
    for no, obj in _json_lines(data, errors, start):
        asin, cat = obj.get("asin"), obj.get("category")
        if not isinstance(asin, str):
            errors.bad(no, "no 'asin'" if asin is None else f"'asin' is {asin!r}, expected a string")
            continue
        if cat is not None and not (isinstance(cat, list) and all(isinstance(c, str) for c in cat)):
            errors.bad(no, f"'category' is {cat!r:.80}, expected a list of strings")
            continue
        items.append(asin)
        cates.append(cat[-1] if cat else "")
    lines = sum(1 for raw in io.BytesIO(data) if raw.strip())
    return items, cates, lines


@_with_arrow_or_not
def read_meta_2018(path: Path, policy: str, arrow: bool = True) -> tuple[list[str], list[str], LineErrors, int]:
    """(asins, categories, errors, lines read) of a 2018 meta file, in file order; categories are
    ``category[-1]`` with HTML entities unescaped. Read in chunks through pyarrow; when a chunk
    cannot be read so, the whole file goes through the per-line pass."""
    errors = LineErrors(path, policy)
    path = require_file(path, "Amazon meta file")
    items: list[str] = []
    cates: list[str] = []
    lines = 0

    def add(part: tuple[list[str], list[str], int]) -> None:
        nonlocal lines
        items.extend(part[0])
        cates.extend(part[1])
        lines += part[2]

    try:
        _each_chunk(path, errors, _fast_path(_leaves_fast, add), numbered=False, arrow=arrow)
    except _NeedsLinePass:
        items.clear()
        cates.clear()
        lines = 0
        _each_chunk(path, errors, lambda start, chunk: add(_leaves_slow(chunk, errors, start)), arrow=arrow)
    unescaped = {c: html.unescape(c) for c in set(cates)}
    return items, [unescaped[c] for c in cates], errors, lines


META_FORMATS = {2014: "Python dict literals with 'categories'", 2018: "JSON lines with 'category'"}


def sniff_meta_release(path: Path, max_lines: int = 200) -> int | None:
    """2014 or 2018 when the first lines of a meta file show that release's format (a Python dict
    literal or 'categories': 2014; JSON with 'category': 2018); None when they do not tell."""
    try:
        with open_binary(path) as f:
            for _, raw in zip(range(max_lines), f):
                line = raw.strip()
                if line.startswith((b"{'", b"{u'")):
                    return 2014
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and ("categories" in obj or "category" in obj):
                    return 2014 if "categories" in obj else 2018
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _first_wins(items: list[str], cates: list[str]) -> tuple[ItemMeta, int]:
    """ItemMeta with the first line of each asin kept; also the number of dropped duplicates."""
    item = _object_array(items)
    cate = _object_array(cates)
    dup = pd.Series(item, dtype=object).duplicated(keep="first").to_numpy()
    n_dup = int(dup.sum())
    if n_dup:
        item, cate = item[~dup], cate[~dup]
    return ItemMeta(item=item, cate=cate), n_dup


# ---- the source ------------------------------------------------------------------------------


@dataclass
class AmazonSource(RealSource):
    """Amazon reviews (behaviours) + meta (item categories) of one category and release."""

    category: str = "Electronics"
    release: int = 2014  # 2014 | 2018
    category_path: str = "last"  # last: categories[-1][-1] (DIN code) | first: categories[0][-1] (DIEN code)
    max_uncategorised: float = 0.5  # the largest fraction of reviewed items without category; above: an error

    dataset_name = "amazon"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.release, str) and self.release.strip().isdigit():
            self.release = int(self.release)
        if isinstance(self.release, bool) or self.release not in RELEASES:
            raise ConfigError(f"dataset.release={self.release!r}: expected one of {', '.join(map(str, RELEASES))}")
        if self.category_path not in CATEGORY_PATHS:
            raise ConfigError(f"dataset.category_path={self.category_path!r}: expected one of {', '.join(CATEGORY_PATHS)}")
        if not isinstance(self.category, str) or not self.category or "/" in self.category:
            raise ConfigError(f"dataset.category={self.category!r}: expected a category name such as Electronics")
        m = self.max_uncategorised
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 1:  # NaN fails too
            raise ConfigError(f"dataset.max_uncategorised={m!r}: expected a fraction from 0 to 1 (of the reviewed items)")

    # ---- file names ---------------------------------------------------------------------------
    def _names(self) -> dict[str, str]:
        """role -> official (gzipped) file name."""
        reviews = f"reviews_{self.category}_5.json.gz" if self.release == 2014 else f"{self.category}_5.json.gz"
        return {"reviews": reviews, "meta": f"meta_{self.category}.json.gz"}

    def _present(self, raw_dir: Path) -> dict[str, Path | None]:
        """role -> the file in ``raw_dir`` (gzipped or not, the gzipped one preferred), or None."""
        found: dict[str, Path | None] = {}
        for role, name in self._names().items():
            candidates = [raw_dir / name, raw_dir / name.removesuffix(".gz")]
            found[role] = next((p for p in candidates if p.is_file()), None)
        return found

    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:
        """Each file gzipped or not (the gzipped one preferred); None unless both are there."""
        found = self._present(raw_dir)
        return None if any(p is None for p in found.values()) else found  # type: ignore[return-value]

    def needed_files(self, roles=("reviews", "meta")) -> list[str]:
        names = self._names()
        return [f"{names[r]} (or {names[r].removesuffix('.gz')})" for r in roles]

    def remote_files(self, roles=("reviews", "meta")) -> list[RemoteFile]:
        names = self._names()
        if self.release == 2014:
            urls = {r: URL_2014 for r in names}
            page = PAGE_2014
        else:
            urls, page = {"reviews": URL_2018_REVIEWS, "meta": URL_2018_META}, PAGE_2018
        return [RemoteFile(names[r], urls[r] + names[r], page) for r in roles]

    def locate(self, data_dir: str | Path, name: str) -> dict[str, Path]:
        """Find (or download) the two files. When they are not both there: an unknown category is a
        ConfigError with suggestions; when one of them is there, only the other is asked for (or
        downloaded), and the message says which one is missing."""
        raw_dir = self._raw_dir if self._raw_dir is not None else Path(data_dir) / "raw" / name
        present = self._present(raw_dir)
        if all(p is not None for p in present.values()):
            return super().locate(data_dir, name)
        there = {r: p for r, p in present.items() if p is not None}
        problem = unknown_category_message(self.category, self.release)
        if problem is not None:
            files = "no file of it" if not there else f"only {', '.join(p.name for p in there.values())} of its two files"
            raise ConfigError(f"{problem} ({files} in {raw_dir})")
        if not there:
            return super().locate(data_dir, name)
        self.dataset_name, self._raw_dir = name, raw_dir
        missing = [r for r in present if r not in there]
        names = self._names()
        absent = "; ".join(
            [f"the {r} file {names[r]} is not there" for r in missing] + [f"the {r} file {p} is there" for r, p in there.items()]
        )
        self._inputs = download.ensure(
            name, raw_dir, lambda: self.find_inputs(raw_dir), self.needed_files(missing), self.remote_files(missing),
            self.download, absent=absent,
        )
        return self._inputs

    # ---- reading ------------------------------------------------------------------------------
    def _read_meta(self, path: Path) -> tuple[list[str], list[str], LineErrors, int]:
        if self.release == 2014:
            return read_meta_2014(path, self.on_bad_line, self.category_path)
        return read_meta_2018(path, self.on_bad_line)

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta | None, dict]:
        """Reviews and meta are read at the same time: decompression and pyarrow release the GIL,
        so the meta (in a second thread) mostly costs no extra wall time."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            meta_read = pool.submit(self._read_meta, Path(inputs["meta"]))
            events, review_report = read_reviews(Path(inputs["reviews"]), self.on_bad_line)
            items, cates, meta_errors, lines = meta_read.result()
        if lines == 0:
            raise DataError(f"{inputs['meta']}: no lines in the meta file (an empty file; expected one item a line); download it again")
        meta, n_dup = _first_wins(items, cates)
        del items, cates
        reviewed = pd.unique(events.item)
        pos = pd.Index(meta.item).get_indexer(reviewed)
        with_meta = int((pos >= 0).sum())
        with_category = int((meta.cate[pos[pos >= 0]] != "").sum())
        warning = self._check_categories(inputs, len(reviewed), with_meta, with_category, len(meta.item), lines)
        report = {
            "release": self.release,
            "category_path": self.category_path,
            "reviews_read": review_report["reviews"],
            "meta_lines_read": lines,
            "meta_items": len(meta.item),
            "meta_duplicate_asins": n_dup,
            "meta_items_without_category": int((meta.cate == "").sum()),
            "reviewed_items": len(reviewed),
            "reviewed_items_with_meta": with_meta,
            "reviewed_items_with_category": with_category,
            "bad_lines": {"reviews": review_report["bad_lines"], "meta": meta_errors.report()},
            "warnings": [] if warning is None else [warning],
        }
        return events, meta, report

    def _check_categories(self, inputs: dict[str, Path], reviewed: int, with_meta: int, with_category: int,
                          meta_items: int, meta_lines: int) -> str | None:
        """None when every reviewed item has a category. Else a one-line account (how many have
        none, why, which files): a DataError above ``max_uncategorised``, a logged warning (returned
        for the report) at or below it."""
        missing = reviewed - with_category
        if missing == 0:
            return None
        frac = missing / reviewed
        pct = "<1%" if frac < 0.01 else ">99%" if 0.99 < frac < 1 else f"{frac:.0%}"
        no_line, no_cate = reviewed - with_meta, with_meta - with_category
        has = lambda n: "has" if n == 1 else "have"  # noqa: E731
        detail = [f"{n:,} {has(n)} {what}" for n, what in ((no_line, "no line in the meta file"), (no_cate, "a line without a category")) if n]
        counts = f"{missing:,} of {reviewed:,} reviewed items ({pct}) have no category ({', '.join(detail)})"
        causes = []
        if meta_items == 0:
            causes.append(f"all {meta_lines:,} meta lines were skipped as malformed")
        elif with_meta == 0:
            causes.append(f"none of the {reviewed:,} reviewed items is in the meta file: it is probably of another "
                          "category or release than the reviews")
        elif with_meta * 2 < reviewed:
            causes.append(f"only {with_meta:,} of the {reviewed:,} reviewed items are in the meta file: it may be of "
                          "another category or release, or cut short")
        elif no_cate * 2 > with_meta:
            field = "'categories'" if self.release == 2014 else "'category'"
            which = "no meta line of a reviewed item has" if with_category == 0 else "most meta lines of reviewed items have no"
            causes.append(f"{which} category (a non-empty {field} field)")
        looks = sniff_meta_release(Path(inputs["meta"]))
        if looks is not None and looks != self.release:
            causes.append(
                f"the meta file looks like a {looks}-release one ({META_FORMATS[looks]}), not a {self.release}-release "
                f"one ({META_FORMATS[self.release]}): use the {self.release} release's {self._names()['meta']}, or set "
                f"dataset.release={looks} with that release's reviews"
            )
        files = f"reviews {inputs['reviews']}, meta {inputs['meta']}"
        why = f": {'; '.join(causes)}" if causes else ""
        if frac > self.max_uncategorised:
            raise DataError(
                f"{counts}, more than dataset.max_uncategorised={self.max_uncategorised:g}{why} ({files}); fix the "
                "files, or raise dataset.max_uncategorised to build with these items in the unknown category 0"
            )
        message = f"{counts}; they get the unknown category 0{why} ({files})"
        log.warning(message)
        return message
