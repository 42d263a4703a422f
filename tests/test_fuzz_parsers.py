"""Bad inputs, fuzzed (docs/reliability.md, part 6): every raw-format reader in
ctrbench/data/sources/ is fed generated files (valid rows, then one line mutated: truncated,
wrong types, invalid UTF-8, NUL bytes, empty fields, huge ids, negative timestamps, extra or
missing columns, stray carriage returns, CRLF) and whole files of random bytes.

The outcome must always be a correct parse or a one-line ``UserError`` (``DataError``) that names
the file, and the line when one line is at fault; never another exception, a traceback or a hang
(each example has a deadline). Properties:

- **round trip**: a file of valid rows parses to exactly those rows (CRLF or LF, blank lines);
- **one bad line**: with ``on_bad_line=error`` the file parses (the mutated line was still
  valid, or blank) or the error names the mutated line; with ``skip`` every other row comes out
  unchanged and in order;
- **fast path = careful path**: the delimited and JSON readers parse a clean file with a fast
  (pyarrow) path and fall back to a per-line pass when any line is bad; both must give the same
  rows for the good lines;
- **garbage**: random bytes give rows or a one-line error naming the file.

Regressions found by this fuzzing are kept as explicit tests at the end of the file.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fuzz_support import count, fuzz_settings, write_report
from hypothesis import example, given
from hypothesis import strategies as st

from ctrbench.data.sources import amazon, bars, movielens
from ctrbench.data.sources.delimited import Field, read_delimited
from ctrbench.data.sources.raw import LineErrors
from ctrbench.data.sources.taobao import TaobaoSource
from ctrbench.errors import DataError, UserError


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    write_report()


INT64 = st.integers(-(2**63), 2**63 - 1)
IDS = st.one_of(st.integers(0, 10**6), INT64)  # mostly small ids, sometimes any int64
TIMES = st.one_of(st.integers(0, 2 * 10**9), st.integers(-(10**12), 10**12), INT64)  # negative timestamps too
RATINGS = st.one_of(st.sampled_from([0.5, 1.0, 3.5, 4.0, 5.0]), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
# text without the line and field separators of the formats; non-ASCII beyond U+00BF (see meta 2014)
TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\u2028\u2029\x85,|:^'\"\\", min_codepoint=32)
    .filter(lambda c: c.isascii() or ord(c) >= 0xC0),
    min_size=1, max_size=12,
).filter(lambda s: s.strip() == s and s)

# what a mutation puts into a field or a line
NASTY = st.sampled_from([
    "", " ", "-", "--5", "+5", "0x10", "1_000", "1e3", "nan", "inf", "-inf", "1e400", "١٢٣", "５", "½",
    str(2**63), str(-(2**63) - 1), str(2**64 + 5), "9" * 30, "-0", " 7", "7 ", "\t7", "null", "None", "true",
    "[1]", "{}", "\"x\"", "'x'", "\x00", "a\x00b", "\r", "é", "\ufeff1", "\ud7ff", "€",
])
BAD_BYTES = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\r", b"\x1f", b"\xef\xbb\xbf", b"\x80"])


@st.composite
def mutate(draw, line: bytes, delimiter: bytes | None) -> bytes:
    """One mutation of a line (bytes, without its newline)."""
    kind = draw(st.sampled_from(["truncate", "insert", "delete", "field", "extra", "missing", "garbage", "empty", "bytes", "crlf_mid"]))
    if kind == "truncate":
        return line[: draw(st.integers(0, max(len(line) - 1, 0)))]
    if kind == "insert":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.one_of(BAD_BYTES, NASTY.map(lambda s: s.encode("utf-8", "surrogatepass")))) + line[at:]
    if kind == "delete" and line:
        at = draw(st.integers(0, len(line) - 1))
        return line[:at] + line[at + 1 :]
    if kind in ("field", "extra", "missing") and delimiter:
        fields = line.split(delimiter)
        if kind == "extra":
            fields.insert(draw(st.integers(0, len(fields))), draw(NASTY).encode("utf-8", "surrogatepass"))
        elif kind == "missing" and len(fields) > 1:
            del fields[draw(st.integers(0, len(fields) - 1))]
        else:
            fields[draw(st.integers(0, len(fields) - 1))] = draw(NASTY).encode("utf-8", "surrogatepass")
        return delimiter.join(fields)
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
    if kind == "empty":
        return b""
    if kind == "crlf_mid":
        at = draw(st.integers(0, len(line)))
        return line[:at] + b"\r" + line[at:]
    return line + draw(BAD_BYTES)


# ---- the formats ----------------------------------------------------------------------------------


@dataclass
class Format:
    """A raw format: how to draw a valid row (its line and the parsed values it must give), the
    file's header, and the reader (path, on_bad_line) -> list of parsed rows."""

    name: str
    filename: str
    row: st.SearchStrategy  # -> (line bytes, expected tuple)
    parse: Callable[[Path, str], list[tuple]]
    header: bytes | None = None
    delimiter: bytes | None = None
    cr_ends_lines: bool = False  # pyarrow-read formats: \r, \n and \r\n all end a line

    def extra_lines(self, line: bytes) -> int:
        """How many more lines than one a (mutated) line makes for this format's reader."""
        if not self.cr_ends_lines:
            return 0
        body = line[:-1] if line.endswith(b"\r") else line  # its CRLF line end
        return body.count(b"\r")

    @property
    def first_line(self) -> int:
        return 2 if self.header else 1


def _events(ev) -> list[tuple]:
    rating = [None] * len(ev) if ev.rating is None else ev.rating.tolist()
    return list(zip(ev.user.tolist(), ev.item.tolist(), ev.time.tolist(), rating))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _delimited_ratings(sep: str):
    @st.composite
    def row(draw):
        u, i, t = draw(IDS), draw(IDS), draw(TIMES)
        r = draw(RATINGS)
        text = draw(st.sampled_from([repr(r), f"{r:.3f}", f"{r:g}"]))
        return sep.join([str(u), str(i), text, str(t)]).encode(), (u, i, t, _f32(float(text)))

    return row()


def _ml_reader(fn):
    def parse(path: Path, policy: str) -> list[tuple]:
        return _events(fn(path, LineErrors(path, policy)))

    return parse


RATINGS_CSV = Format("movielens ratings.csv", "ratings.csv", _delimited_ratings(","), _ml_reader(movielens.read_ratings_csv),
                     header=b"userId,movieId,rating,timestamp", delimiter=b",", cr_ends_lines=True)
RATINGS_DAT = Format("movielens ratings.dat", "ratings.dat", _delimited_ratings("::"), _ml_reader(movielens.read_ratings_dat), delimiter=b"::", cr_ends_lines=True)
U_DATA = Format("movielens u.data", "u.data", _delimited_ratings("\t"), _ml_reader(movielens.read_u_data), delimiter=b"\t", cr_ends_lines=True)


def _meta_rows(meta) -> list[tuple]:
    return list(zip(meta.item.tolist(), meta.cate.tolist()))


def _ml_movies(fn):
    def parse(path: Path, policy: str) -> list[tuple]:
        return _meta_rows(fn(path, LineErrors(path, policy)))

    return parse


GENRES = st.lists(st.one_of(st.sampled_from(["Action", "Comedy", "Drama", "Sci-Fi", "Children's", "Film-Noir"]), TEXT), max_size=4)


@st.composite
def movies_csv_row(draw):
    movie = draw(IDS)
    title = draw(st.one_of(TEXT, st.sampled_from(['American President, The (1995)', 'He said "hi"', "Amélie, Le (2001)"])))
    genres = draw(GENRES)
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([movie, title, "|".join(genres) if genres else movielens.NO_GENRE])
    return out.getvalue().encode("utf-8"), (movie, movielens.first_genre(genres))


@st.composite
def movies_dat_row(draw):
    movie = draw(IDS)
    title = draw(TEXT.filter(lambda s: all(ord(c) < 256 for c in s)))
    genres = draw(GENRES.map(lambda g: [x for x in g if all(ord(c) < 256 for c in x)]))
    return f"{movie}::{title}::{'|'.join(genres)}".encode("latin-1"), (movie, movielens.first_genre(genres))


@st.composite
def u_item_row(draw):
    movie = draw(IDS)
    flags = draw(st.lists(st.sampled_from("01"), min_size=19, max_size=19))
    title = draw(TEXT.filter(lambda s: all(ord(c) < 256 for c in s)))
    line = "|".join([str(movie), title, "01-Jan-1995", "", "http://us.imdb.com/M/title-exact?x"] + flags)
    genres = [g for g, f in zip(movielens.GENRES_100K, flags) if f == "1" and g != "unknown"]
    return line.encode("latin-1"), (movie, movielens.first_genre(genres))


MOVIES_CSV = Format("movielens movies.csv", "movies.csv", movies_csv_row(), _ml_movies(movielens.read_movies_csv),
                    header=b"movieId,title,genres", delimiter=b",")
MOVIES_DAT = Format("movielens movies.dat", "movies.dat", movies_dat_row(), _ml_movies(movielens.read_movies_dat), delimiter=b"::")
U_ITEM = Format("movielens u.item", "u.item", u_item_row(), _ml_movies(movielens.read_u_item), delimiter=b"|")


@st.composite
def taobao_row(draw):
    u, i, c, t = draw(IDS), draw(IDS), draw(IDS), draw(TIMES)
    b = draw(st.sampled_from(["pv", "buy", "cart", "fav"]))
    return f"{u},{i},{c},{b},{t}".encode(), (u, i, t, None)


def parse_taobao(path: Path, policy: str) -> list[tuple]:
    events, _, _ = TaobaoSource(raw_dir=str(path.parent), download=False, on_bad_line=policy).read({"behaviors": path})
    return _events(events)


TAOBAO = Format("taobao UserBehavior.csv", "UserBehavior.csv", taobao_row(), parse_taobao, delimiter=b",", cr_ends_lines=True)


@st.composite
def bars_row(draw):
    label, u, i, c = draw(st.sampled_from([0, 1])), draw(IDS), draw(IDS), draw(IDS)
    n = draw(st.integers(0, 4))
    hi, hc = draw(st.lists(IDS, min_size=n, max_size=n)), draw(st.lists(IDS, min_size=n, max_size=n))
    line = ",".join([str(label), str(u), str(i), str(c), "^".join(map(str, hi)), "^".join(map(str, hc))])
    return line.encode(), (label, u, i, c, tuple(hi), tuple(hc))


def parse_bars(path: Path, policy: str) -> list[tuple]:
    r = bars.read_rows(path, LineErrors(path, policy))
    start = np.concatenate([[0], np.cumsum(r.hist_len)])
    return [
        (int(r.label[k]), int(r.user[k]), int(r.item[k]), int(r.cate[k]),
         tuple(r.hist_item[start[k] : start[k + 1]].tolist()), tuple(r.hist_cate[start[k] : start[k + 1]].tolist()))
        for k in range(len(r))
    ]


BARS = Format("BARS train.csv", "train.csv", bars_row(), parse_bars, header=b"label,user_id,item_id,cate_id,item_history,cate_history",
              delimiter=b",", cr_ends_lines=True)


JSON_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def review_row(draw):
    user, item, t = draw(JSON_TEXT), draw(JSON_TEXT), draw(TIMES)
    rating = draw(st.one_of(st.sampled_from([1.0, 5.0, 3]), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-5, 5)))
    obj = {"reviewerID": user, "asin": item, "unixReviewTime": t, "overall": rating}
    extra = draw(st.dictionaries(st.sampled_from(["reviewText", "summary", "helpful", "reviewerName", "vote"]),
                                 st.one_of(JSON_TEXT, st.lists(st.integers(0, 9), max_size=2), st.none()), max_size=3))
    obj.update(extra)
    keys = draw(st.permutations(list(obj)))
    line = json.dumps({k: obj[k] for k in keys}, ensure_ascii=draw(st.booleans()))
    return line.encode("utf-8"), (user, item, t, _f32(rating))


def parse_reviews(path: Path, policy: str) -> list[tuple]:
    events, _ = amazon.read_reviews(path, policy)
    return _events(events)


REVIEWS = Format("amazon reviews (JSON lines)", "reviews_X_5.json", review_row(), parse_reviews, delimiter=b",")


@st.composite
def meta2014_row(draw):
    """A 2014 meta line as Python 2 wrote it: ``repr`` of a dict (key order varies)."""
    asin = draw(TEXT)
    paths = draw(st.lists(st.lists(st.one_of(TEXT, st.sampled_from(["Kids' Electronics", 'A "quoted" leaf', "Caf\u00e9"])),
                                   min_size=0, max_size=3), max_size=3))
    obj = {"asin": asin}
    if draw(st.booleans()):
        obj["categories"] = paths
    extra = draw(st.dictionaries(st.sampled_from(["title", "price", "imUrl", "salesRank", "description"]),
                                 st.one_of(TEXT, st.floats(0, 1e4, allow_nan=False), st.sampled_from(["Don't 'categories': [['Fake']]", "'asin': 'B0'"])),
                                 max_size=3))
    obj.update(extra)
    keys = draw(st.permutations(list(obj)))
    line = repr({k: obj[k] for k in keys})
    choice = draw(st.sampled_from(["last", "first"]))
    if not obj.get("categories"):
        cate = ""
    elif choice == "last":
        cate = obj["categories"][-1][-1] if obj["categories"][-1] else ""
    else:
        cate = obj["categories"][0][-1] if obj["categories"][0] else ""
    return line.encode("utf-8"), (asin, cate, choice)


def parse_meta2014(path: Path, policy: str, category_path: str = "last") -> list[tuple]:
    items, cates, _, _ = amazon.read_meta_2014(path, policy, category_path)
    return list(zip(items, cates))


@st.composite
def meta2018_row(draw):
    asin = draw(JSON_TEXT)
    cat = draw(st.one_of(st.none(), st.lists(JSON_TEXT, max_size=3)))
    obj = {"asin": asin, "title": draw(JSON_TEXT)}
    if cat is not None or draw(st.booleans()):
        obj["category"] = cat
    line = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return line.encode("utf-8"), (asin, html.unescape(cat[-1]) if cat else "")


def parse_meta2018(path: Path, policy: str) -> list[tuple]:
    items, cates, _, _ = amazon.read_meta_2018(path, policy)
    return list(zip(items, cates))


META_2018 = Format("amazon meta 2018 (JSON lines)", "meta_X.json", meta2018_row(), parse_meta2018, delimiter=b",")

FORMATS = [RATINGS_CSV, RATINGS_DAT, U_DATA, MOVIES_CSV, MOVIES_DAT, U_ITEM, TAOBAO, BARS, REVIEWS, META_2018]


# ---- running one case ---------------------------------------------------------------------------


DUMP = os.environ.get("CTRBENCH_FUZZ_DUMP")  # keep the last input (to find one that crashes the process)


def write_file(folder: Path, fmt: Format, lines: list[bytes], newline: bytes = b"\n") -> Path:
    path = folder / fmt.filename
    body = ([fmt.header] if fmt.header else []) + lines
    path.write_bytes(newline.join(body) + newline)
    if DUMP:
        with open(DUMP, "wb") as f:
            f.write(path.read_bytes())
            f.flush()
            os.fsync(f.fileno())
    return path


def run(fmt_name: str, parse: Callable[[], list[tuple]], path: Path, bad_line: int | range | None = None) -> tuple[str, object]:
    """Call a reader; ('ok', rows) or ('error', message). Any exception other than a UserError,
    or an error message that is not one line naming the file (and, when it is about one line,
    that line: ``bad_line``, or one of them), fails the test."""
    try:
        rows = parse()
    except UserError as e:
        msg = str(e)
        assert "\n" not in msg and "Traceback" not in msg, msg
        assert str(path) in msg, f"the error does not name the file: {msg}"
        if ", line " in msg and bad_line is not None:
            lines = bad_line if isinstance(bad_line, range) else [bad_line]
            assert any(f"{path}, line {n}:" in msg for n in lines), f"expected line {bad_line}: {msg}"
        count(fmt_name, "error naming the line" if ", line " in msg else "error naming the file")
        return "error", msg
    count(fmt_name, "parsed")
    return "ok", rows


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Row lists equal (floats compared as float32, as parsed)."""
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


# ---- properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_round_trip_of_valid_rows(fmt):
    @fuzz_settings(12)
    @given(rows=st.lists(fmt.row, min_size=1, max_size=8), newline=st.sampled_from([b"\n", b"\r\n"]),
           blanks=st.lists(st.integers(0, 8), max_size=2))
    def check(rows, newline, blanks):
        lines = [line for line, _ in rows]
        for at in sorted(blanks, reverse=True):
            lines.insert(min(at, len(lines)), b"")
        with tempfile.TemporaryDirectory() as d:
            path = write_file(Path(d), fmt, lines, newline)
            for policy in ("error", "skip"):
                outcome, got = run(f"{fmt.name}: valid rows", lambda policy=policy: fmt.parse(path, policy), path)
                assert outcome == "ok", got
                assert _same(got, [exp for _, exp in rows]), (got, [exp for _, exp in rows])

    check()


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_one_mutated_line(fmt):
    @fuzz_settings(30)
    @given(data=st.data(), rows=st.lists(fmt.row, min_size=1, max_size=6))
    def check(data, rows):
        k = data.draw(st.integers(0, len(rows) - 1), label="mutated row")
        lines = [line for line, _ in rows]
        lines[k] = data.draw(mutate(lines[k], fmt.delimiter), label="mutated line")
        expected = [exp for _, exp in rows]
        extra = fmt.extra_lines(lines[k])
        bad_lines = range(k + fmt.first_line, k + fmt.first_line + extra + 1)
        with tempfile.TemporaryDirectory() as d:
            path = write_file(Path(d), fmt, lines)
            for policy in ("error", "skip"):
                outcome, got = run(f"{fmt.name}: one mutated line" + (", skip" if policy == "skip" else ""),
                                   lambda policy=policy: fmt.parse(path, policy), path, bad_lines)
                if outcome == "error":
                    # with skip, only 'no data rows' / 'no reviews', when nothing is left
                    assert policy == "error" or (" no " in got and len(rows) == 1), got
                    continue
                # the rows before and after the mutated line come out unchanged, in order
                before, after = expected[:k], expected[k + 1 :]
                assert _same(got[:k], before), (got, expected)
                assert _same(got[len(got) - len(after):] if after else [], after), (got, expected)
                assert len(rows) - 1 <= len(got) <= len(rows) + extra, (got, expected)

    check()


DELIMITED_FAST = [RATINGS_CSV, RATINGS_DAT, U_DATA, TAOBAO, BARS, REVIEWS, META_2018]


@pytest.mark.parametrize("fmt", DELIMITED_FAST, ids=[f.name for f in DELIMITED_FAST])
def test_fast_and_careful_paths_agree(fmt):
    """A clean file (the fast pyarrow path) and the same file with one bad line appended (the
    per-line path, under skip) give the same rows."""

    @fuzz_settings(12)
    @given(rows=st.lists(fmt.row, min_size=1, max_size=8))
    def check(rows):
        lines = [line for line, _ in rows]
        with tempfile.TemporaryDirectory() as d:
            clean = write_file(Path(d), fmt, lines)
            fast = fmt.parse(clean, "error")
            dirty = write_file(Path(d), fmt, lines + [b"\xff not a row \x00"])
            careful = fmt.parse(dirty, "skip")
            count(f"{fmt.name}: fast = careful", "agree" if _same(fast, careful) else "differ")
            assert _same(fast, careful), (fast, careful)

    check()


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_random_bytes(fmt):
    @fuzz_settings(12)
    @given(blob=st.one_of(st.binary(min_size=1, max_size=300), st.lists(st.binary(max_size=40), max_size=6).map(b"\n".join)),
           header=st.booleans())
    def check(blob, header):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / fmt.filename
            path.write_bytes(((fmt.header + b"\n") if fmt.header and header else b"") + blob)
            if not path.stat().st_size:
                return
            for policy in ("error", "skip"):
                run(f"{fmt.name}: random bytes", lambda policy=policy: fmt.parse(path, policy), path)

    check()


# the 2014 meta: a Python-literal reader with its own properties (category_path, no fast path)
@fuzz_settings(50)
@given(rows=st.lists(meta2014_row(), min_size=1, max_size=6), data=st.data())
def test_meta_2014_lines(rows, data):
    choice = data.draw(st.sampled_from(["last", "first"]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "meta_X.json"
        # round trip (each row's expected category depends on category_path: recompute for the choice)
        lines = [line for line, _ in rows]
        path.write_bytes(b"\n".join(lines) + b"\n")
        outcome, got = run("amazon meta 2014: valid rows", lambda: parse_meta2014(path, "error", choice), path)
        assert outcome == "ok", got
        expected = []
        for line, (asin, _, _) in rows:
            obj = eval(line.decode("utf-8"))
            cats = obj.get("categories") or []
            path_ = (cats[-1] if choice == "last" else cats[0]) if cats else []
            expected.append((asin, path_[-1] if path_ else ""))
        assert got == expected, (got, expected)
        # one mutated line
        k = data.draw(st.integers(0, len(rows) - 1))
        lines[k] = data.draw(mutate(lines[k], b", "))
        path.write_bytes(b"\n".join(lines) + b"\n")
        outcome, got = run("amazon meta 2014: one mutated line", lambda: parse_meta2014(path, "error", choice), path,
                           None if b"\n" in lines[k] else k + 1)
        outcome, got = run("amazon meta 2014: one mutated line, skip", lambda: parse_meta2014(path, "skip", choice), path)
        if outcome == "ok" and b"\n" not in lines[k]:
            assert got[:k] == expected[:k] and (got[len(got) - len(expected[k + 1 :]):] if expected[k + 1 :] else []) == expected[k + 1 :]


@fuzz_settings(25)
@given(blob=st.binary(min_size=1, max_size=400))
def test_meta_2014_random_bytes(blob):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "meta_X.json"
        path.write_bytes(blob)
        for policy in ("error", "skip"):
            run("amazon meta 2014: random bytes", lambda policy=policy: parse_meta2014(path, policy), path)


@fuzz_settings(30)
@example(fields=["str", "str"], cells=[["\r", ""]], sep=",")  # found by a deep run: a lone \r ends a line
@given(
    fields=st.lists(st.sampled_from(["int", "float", "str", "enum"]), min_size=1, max_size=4),
    cells=st.lists(st.lists(st.one_of(NASTY, st.integers().map(str), st.floats().map(repr), TEXT), min_size=0, max_size=5), min_size=1, max_size=6),
    sep=st.sampled_from([",", "\t", "|"]),
)
def test_read_delimited_any_columns(fields, cells, sep):
    """The shared helper with random column kinds and random cells (wrong counts included)."""
    spec = [Field(f"c{i}", kind, ("a", "b") if kind == "enum" else ()) for i, kind in enumerate(fields)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.txt"
        data = b"\n".join(sep.join(row).encode("utf-8", "surrogatepass") for row in cells) + b"\n"
        path.write_bytes(data)
        for policy in ("error", "skip"):
            errors = LineErrors(path, policy)
            outcome, table = run("delimited.read_delimited: random columns", lambda errors=errors: read_delimited(path, spec, errors, delimiter=sep), path)
            if outcome == "ok":
                n = len(table)
                assert all(len(table.columns[f.name]) == n for f in spec)
                assert n + errors.count <= len(data.splitlines())  # \r, \n and \r\n end lines
                for f in spec:
                    col = table.columns[f.name]
                    if f.kind == "int":
                        assert col.dtype == np.int64
                    elif f.kind == "float":
                        assert col.dtype == np.float64 and np.isfinite(col).all()


# ---- regressions: crashes and wrong results the fuzzing found, fixed in the readers ---------------


def test_regression_19_digit_ids_parse_on_both_paths(tmp_path):
    """int64 ids with 19 digits were accepted by the fast path but called 'not an integer' by the
    per-line path (which allowed 18 digits), so a file with one blank line rejected a valid line."""
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\n\n0,1000000000000000000,0.5,-9223372036854775808\n")
    assert RATINGS_CSV.parse(path, "error") == [(0, 10**18, -(2**63), 0.5)]
    path.write_bytes(b"userId,movieId,rating,timestamp\n\n0,9223372036854775808,0.5,0\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: movieId='9223372036854775808' is out of the 64-bit integer range"):
        RATINGS_CSV.parse(path, "error")


def test_regression_undecodable_line_with_wrong_field_count(tmp_path, capfd):
    """A line with the wrong number of fields that is not UTF-8: pyarrow's invalid-row handler
    cannot be called for it (it decodes the text), printed 'Exception ignored' and raised a raw
    ArrowInvalid. Now the file is read line by line and the line is named."""
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\n1,10,4.0,5\n\x80\n2,20,3.0,6\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: expected 4 comma-separated fields .*got 1"):
        RATINGS_CSV.parse(path, "error")
    assert RATINGS_CSV.parse(path, "skip") == [(1, 10, 5, 4.0), (2, 20, 6, 3.0)]
    bars_path = tmp_path / "train.csv"
    bars_path.write_bytes(BARS.header + b"\n1,2,3,4,5,6\n0,1\xff,2\n")
    with pytest.raises(DataError, match=r"train\.csv, line 3: expected 6 comma-separated fields"):
        BARS.parse(bars_path, "error")
    assert "Exception ignored" not in capfd.readouterr().err


def test_regression_carriage_return_inside_a_line_ends_it(tmp_path):
    """pyarrow ends a line at a lone \\r; the messages count lines the same way."""
    path = tmp_path / "u.data"
    path.write_bytes(b"1\t10\t4\t5\r2\t20\n3\t30\t5\t7\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 tab-separated fields"):
        U_DATA.parse(path, "error")
    assert U_DATA.parse(path, "skip") == [(1, 10, 5, 4.0), (3, 30, 7, 5.0)]


@pytest.mark.parametrize("movie_id, reason", [("9223372036854775808", "is out of the 64-bit integer range"), ("--5", "is not an integer"),
                                              ("½", "is not an integer")])
def test_regression_movie_ids(tmp_path, movie_id, reason):
    """movies.dat / u.item / movies.csv: a huge id crashed with OverflowError, '--5' with ValueError."""
    dat = tmp_path / "movies.dat"
    dat.write_bytes(f"1::A::Drama\n{movie_id}::B::Comedy\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"movies\.dat, line 2: MovieID='{movie_id}' {reason}"):
        MOVIES_DAT.parse(dat, "error")
    assert MOVIES_DAT.parse(dat, "skip") == [(1, "Drama")]
    item = tmp_path / "u.item"
    item.write_bytes(("|".join([movie_id, "T", "", "", ""] + ["0"] * 19) + "\n").encode("latin-1"))
    with pytest.raises(DataError, match=rf"u\.item, line 1: movie id='{movie_id}' {reason}"):
        U_ITEM.parse(item, "error")


def test_regression_invalid_utf8_inside_a_json_string(tmp_path):
    """pyarrow's JSON reader accepts raw invalid UTF-8 inside strings; reading the column then
    raised ArrowException (reviews) or worse (meta 2018). Now the line is named."""
    path = tmp_path / "reviews_X_5.json"
    path.write_bytes(b'{"reviewerID": "U1", "asin": "A1", "unixReviewTime": 1, "overall": 5.0}\n'
                     b'{"reviewerID": "U\xff", "asin": "A1", "unixReviewTime": 2, "overall": 4.0}\n')
    with pytest.raises(DataError, match=r"reviews_X_5\.json, line 2: not valid JSON"):
        REVIEWS.parse(path, "error")
    assert REVIEWS.parse(path, "skip") == [("U1", "A1", 1, 5.0)]
    meta = tmp_path / "meta_X.json"
    meta.write_bytes(b'{"asin": "A1", "category": ["x\xff"]}\n{"asin": "A2", "category": ["Music"]}\n')
    with pytest.raises(DataError, match=r"meta_X\.json, line 1: not valid JSON"):
        META_2018.parse(meta, "error")


def test_regression_json_line_that_is_not_an_object(tmp_path):
    """A file whose first line is `null` segfaulted the process inside pyarrow's JSON reader (run in
    a child process here, so a regression cannot take the test run down); two objects on one line
    were read as two rows by the fast path."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "meta_X.json"
    path.write_bytes(b'null\n{"asin": "A1", "category": ["Music"]}\n')
    code = textwrap.dedent(f"""
        from ctrbench.data.sources import amazon
        items, cates, errors, lines = amazon.read_meta_2018({str(path)!r}, "skip")
        print(items, cates, errors.count)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['A1'] ['Music'] 1"
    reviews = tmp_path / "reviews_X_5.json"
    reviews.write_bytes(b'{"reviewerID": "U1", "asin": "A1", "unixReviewTime": 1, "overall": 5.0}'
                        b'{"reviewerID": "U2", "asin": "A2", "unixReviewTime": 2, "overall": 4.0}\n')
    with pytest.raises(DataError, match=r"reviews_X_5\.json, line 1: not valid JSON \(Extra data"):
        REVIEWS.parse(reviews, "error")
