"""The contract between a real dataset's file readers and the rest of the data path.

A reader turns raw files into two tables of *raw keys* (strings or integers as they appear in the
files), before any id is assigned:

- ``Events``: one row per behaviour (a review, a rating, a click): user, item, time [, rating];
- ``ItemMeta``: the category of each item that has metadata (items without it get the unknown
  category 0 later, and are counted).

``ctrbench.data.encode.encode`` then assigns dense ids and builds the per-user streams that the
protocols read. ``LineErrors`` is the one policy for malformed input every reader follows:
``on_bad_line=error`` (default) raises a one-line ``DataError`` naming the file and line;
``on_bad_line=skip`` skips the line and counts it (the count and the first examples go into the
dataset's manifest).
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ctrbench.errors import ConfigError, DataError

BAD_LINE_POLICIES = ("error", "skip")
MAX_EXAMPLES = 5  # the bad lines a LineErrors keeps as examples (the first ones)


@dataclass
class Events:
    """Behaviours with raw keys; all columns the same length. ``time`` is an int64 order key
    (seconds for real data); ties keep file order. ``rating`` is set by sources that have one."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    rating: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])



@dataclass
class ItemMeta:
    """Category of each item with metadata (raw keys). Duplicate items: the first row wins."""

    item: np.ndarray
    cate: np.ndarray


@dataclass
class LineErrors:
    """Counts (or raises on) malformed lines of one input file."""

    path: Path
    policy: str = "error"
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy not in BAD_LINE_POLICIES:
            raise ConfigError(f"dataset.on_bad_line={self.policy!r}: expected one of {', '.join(BAD_LINE_POLICIES)}")

    def bad(self, line_no: int, reason: str) -> None:
        """Line ``line_no`` (1-based) of the file is malformed: raise, or count and go on."""
        where = f"{self.path}, line {line_no}"
        if self.policy == "error":
            raise DataError(f"{where}: {reason} (set dataset.on_bad_line=skip to skip such lines)")
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line_no}: {reason}")

    def put_first(self, other: LineErrors) -> None:
        """Count ``other``'s bad lines ahead of these (found later, but earlier in the file's order)."""
        self.count += other.count
        self.examples = (other.examples + self.examples)[:MAX_EXAMPLES]

    def report(self) -> dict:
        return {"file": str(self.path), "bad_lines_skipped": self.count, "examples": self.examples}


def json_error_reason(e: ValueError, raw: bytes) -> str:
    """Why ``json.loads(raw)`` of one line failed, placed in that line: the decoder's own "line 2
    column 1" counts lines inside the text it was given (the line's newline included), which is not
    the file's line. The caller names the file's line; this names the column (or the line's end)."""
    import json

    if isinstance(e, json.JSONDecodeError):
        length = len(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
        where = f"column {e.pos + 1}" if e.pos < length else "the end of the line"
        return f"not valid JSON ({e.msg} at {where})"
    if isinstance(e, UnicodeDecodeError):
        return f"not valid JSON (not UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1})" if e.start < len(raw) else "not valid JSON (not UTF-8)"
    return f"not valid JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


def require_file(path: Path, what: str) -> Path:
    """``path`` exists, is a file and is not empty; else a DataError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist")
    if not path.is_file():
        raise DataError(f"{what} '{path}' is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} '{path}' is empty")
    return path


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it ends in ``.gz``."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def gunzip_pieces(path: Path) -> Iterator[bytes]:
    """The decompressed content of every gzip member of ``path``, piece by piece as the compressed
    bytes stream in, so that a truncated file gives everything before the damage. Raises EOFError
    when the stream ends inside a member, zlib.error when it is corrupt."""
    d = zlib.decompressobj(wbits=31)
    fed = False  # has the current member received any bytes?
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            while block:
                yield d.decompress(block)
                fed = True
                if not d.eof:
                    break
                yield d.flush()
                block, fed = d.unused_data, False
                d = zlib.decompressobj(wbits=31)
                if not block.strip(b"\0"):  # trailing zero padding after the last member
                    block = b""
    if fed and not d.eof:
        raise EOFError("the stream ends inside a gzip member")


def _gunzip(path: Path, out: io.BytesIO) -> None:
    """``gunzip_pieces`` written into ``out`` (which keeps what came before the damage)."""
    out.writelines(gunzip_pieces(path))


def gzip_damage(path: Path, error: Exception, n_lines: int, errors: LineErrors | None) -> None:
    """A truncated or corrupt gzip whose readable part has ``n_lines`` complete lines: a DataError,
    or with ``on_bad_line=skip`` one bad line (line ``n_lines + 1``) counted in ``errors``."""
    reason = f"the gzip stream is truncated or corrupt ({type(error).__name__}: {error}) after {n_lines:,} complete lines"
    if errors is None or errors.policy == "error":
        raise DataError(f"{path}: {reason}; download the file again (or set dataset.on_bad_line=skip to keep the readable part)") from None
    errors.bad(n_lines + 1, reason)


def read_all_bytes(path: Path, errors: LineErrors | None = None) -> bytes:
    """The whole (decompressed) content of ``path``. A truncated or corrupt gzip is a DataError;
    with ``on_bad_line=skip`` the readable prefix is kept (its last, partial line dropped) and the
    damage counted as one bad line."""
    path = Path(path)
    if path.suffix != ".gz":
        return path.read_bytes()
    out = io.BytesIO()
    try:
        _gunzip(path, out)
    except (EOFError, zlib.error) as e:
        data = out.getvalue()
        gzip_damage(path, e, data.count(b"\n"), errors)
        return data[: data.rfind(b"\n") + 1]
    return out.getvalue()


def iter_lines(path: Path, errors: LineErrors, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its newline) of every non-blank line. A line
    that does not decode with ``encoding`` is a bad line."""
    data = read_all_bytes(path, errors)
    for no, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield no, raw.decode(encoding)
        except UnicodeDecodeError as e:
            errors.bad(no, f"not valid {encoding} ({e.reason} at byte {e.start})")
