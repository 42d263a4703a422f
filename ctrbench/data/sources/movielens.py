"""MovieLens (GroupLens): ratings + movie genres, in any of the three layouts GroupLens ships.

Releases and their files (https://grouplens.org/datasets/movielens/; each zip unpacks to a
subfolder named like the zip, e.g. ``ml-20m/``):

- ``20m``, ``latest``, ``latest-small``: ``ratings.csv`` (header ``userId,movieId,rating,timestamp``)
  and ``movies.csv`` (header ``movieId,title,genres``, UTF-8, titles with commas are quoted,
  genres ``|``-joined, ``(no genres listed)`` when none);
- ``1m``: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``
  (``MovieID::Title::Genres``), ``::``-separated, Latin-1;
- ``100k``: ``u.data`` (tab-separated ``user id, item id, rating, timestamp``) and ``u.item``
  (``|``-separated, Latin-1: movie id, title, release date, video release date, IMDb URL, then 19
  genre flags 0/1 in the order of ``GENRES_100K``).

The layout is *detected* from the files present in ``raw_dir`` or one folder down (the zip's
subfolder ``ml-<release>/`` first), and must be the one the configured release ships: a folder
of ``ratings.dat`` files with ``dataset.release=20m`` is an error, not a silent switch.

Choices:

- **Category = the movie's first listed genre.** GroupLens lists genres in alphabetical order (the
  100k flags are alphabetical after ``unknown``), so this is the alphabetically first genre. A movie
  with no genre (``(no genres listed)``; in 100k all 18 genre flags 0, the ``unknown`` flag aside)
  gets the *unknown* category 0, like an item without metadata (``encode`` counts them in
  ``items_without_category``); it is not a category of its own.
- Events keep the raw integer user / movie ids, the timestamp (seconds) as time and the rating
  (float32). Ties in time keep file order (``encode`` sorts stably).

Speed: the ratings files (20M lines for ML-20M) are read by ``delimited.read_delimited`` with
``pyarrow.csv`` and explicit column types; the movie files (at most ~90k lines) line by line.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ctrbench.data.download import RemoteFile
from ctrbench.data.sources.delimited import Field, Table, candidate_folders, check_header, read_delimited
from ctrbench.data.sources.raw import Events, ItemMeta, LineErrors, iter_lines, read_all_bytes, require_file
from ctrbench.data.sources.real import RealSource
from ctrbench.errors import ConfigError, DataError

# =============================================================================================
# MovieLens
# =============================================================================================

PAGE = "https://grouplens.org/datasets/movielens/"
URL = "https://files.grouplens.org/datasets/movielens/ml-{release}.zip"

# The layout of each release: (ratings file, movies file).
RELEASE_LAYOUT = {"20m": "csv", "latest": "csv", "latest-small": "csv", "1m": "dat", "100k": "100k"}
LAYOUT_FILES = {"csv": ("ratings.csv", "movies.csv"), "dat": ("ratings.dat", "movies.dat"), "100k": ("u.data", "u.item")}

NO_GENRE = "(no genres listed)"
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

RATINGS_CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")
MOVIES_CSV_COLUMNS = ("movieId", "title", "genres")
RATINGS_DAT_COLUMNS = ("UserID", "MovieID", "Rating", "Timestamp")
MOVIES_DAT_COLUMNS = ("MovieID", "Title", "Genres")
U_DATA_COLUMNS = ("user id", "item id", "rating", "timestamp")
U_ITEM_LEADING = ("movie id", "movie title", "release date", "video release date", "IMDb URL")


def ratings_fields(names: Sequence[str]) -> list[Field]:
    user, item, rating, time = names
    return [Field(user), Field(item), Field(rating, "float"), Field(time)]


def table_to_events(table: Table, names: Sequence[str]) -> Events:
    user, item, rating, time = names
    c = table.columns
    return Events(user=c[user], item=c[item], time=c[time], rating=c[rating].astype(np.float32))


def read_ratings_csv(path: Path, errors: LineErrors) -> Events:
    """``ratings.csv``: header ``userId,movieId,rating,timestamp``, comma-separated, no quoting."""
    table = read_delimited(path, ratings_fields(RATINGS_CSV_COLUMNS), errors, delimiter=",", header=RATINGS_CSV_COLUMNS)
    return table_to_events(table, RATINGS_CSV_COLUMNS)


def read_ratings_dat(path: Path, errors: LineErrors) -> Events:
    """``ratings.dat`` (1m): ``UserID::MovieID::Rating::Timestamp``, no header. The two-character
    separator is rewritten to one byte (0x1f, never in the data) for the CSV reader; line
    numbers do not change."""
    data = read_all_bytes(Path(require_file(path, "input file")), errors).replace(b"::", b"\x1f")
    table = read_delimited(path, ratings_fields(RATINGS_DAT_COLUMNS), errors, delimiter="\x1f", data=data, separator_name="'::'")
    return table_to_events(table, RATINGS_DAT_COLUMNS)


def read_u_data(path: Path, errors: LineErrors) -> Events:
    """``u.data`` (100k): tab-separated ``user id, item id, rating, timestamp``, no header."""
    table = read_delimited(path, ratings_fields(U_DATA_COLUMNS), errors, delimiter="\t")
    return table_to_events(table, U_DATA_COLUMNS)


def first_genre(genres: Sequence[str]) -> str:
    """The first listed genre; '' (the unknown category) when there is none."""
    for g in genres:
        g = g.strip()
        if g and g != NO_GENRE:
            return g
    return ""


_INT_TEXT = re.compile(r"-?[0-9]+")
INT64_RANGE = (-(2**63), 2**63 - 1)


def parse_int(text: str) -> int | None:
    """The integer (int64) a field holds, surrounding blanks aside; None when it holds anything
    else ('--5', '1_000', '١٢٣', a number beyond int64)."""
    text = text.strip()
    if not _INT_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if INT64_RANGE[0] <= value <= INT64_RANGE[1] else None


def not_int_reason(name: str, text: str) -> str:
    """Why ``text`` is not a valid id (``parse_int`` gave None)."""
    if _INT_TEXT.fullmatch(text.strip()):
        return f"{name}={text!r} is out of the 64-bit integer range"
    return f"{name}={text!r} is not an integer"


class _MovieRows:
    """Accumulates (movie id, category) rows of a movie file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[int] = []
        self.cates: list[str] = []

    def add(self, movie: int, cate: str) -> None:
        self.items.append(movie)
        self.cates.append(cate)

    def add_fields(self, no: int, fields: list[str], columns: Sequence[str], sep: str, errors: LineErrors) -> None:
        """One ``id, title, genres`` line (movies.csv / movies.dat): the movie and its first genre,
        or a bad line."""
        if len(fields) != len(columns):
            errors.bad(no, f"expected {len(columns)} {sep!r}-separated fields ({sep.join(columns)}), got {len(fields)}")
            return
        movie = parse_int(fields[0])
        if movie is None:
            errors.bad(no, not_int_reason(columns[0], fields[0]))
            return
        self.add(movie, first_genre(fields[2].split("|")))

    def meta(self, errors: LineErrors) -> ItemMeta:
        if not self.items:
            extra = f" ({errors.count} bad lines skipped)" if errors.count else ""
            raise DataError(f"{self.path} lists no movies{extra}")
        return ItemMeta(item=np.asarray(self.items, dtype=np.int64), cate=np.asarray(self.cates, dtype=object))


def read_movies_csv(path: Path, errors: LineErrors) -> ItemMeta:
    """``movies.csv``: header ``movieId,title,genres``, UTF-8, standard CSV quoting (titles with
    commas are quoted), genres ``|``-joined."""
    require_file(path, "input file")
    check_header(path, MOVIES_CSV_COLUMNS, ",")
    rows = _MovieRows(path)
    for no, line in iter_lines(path, errors, "utf-8"):
        if no == 1:
            continue
        try:
            fields = next(csv.reader([line]))
        except csv.Error as e:
            errors.bad(no, f"not valid CSV ({e})")
            continue
        rows.add_fields(no, fields, MOVIES_CSV_COLUMNS, ",", errors)
    return rows.meta(errors)


def read_movies_dat(path: Path, errors: LineErrors) -> ItemMeta:
    """``movies.dat`` (1m): ``MovieID::Title::Genres``, Latin-1, no header, genres ``|``-joined."""
    require_file(path, "input file")
    rows = _MovieRows(path)
    for no, line in iter_lines(path, errors, "latin-1"):
        rows.add_fields(no, line.split("::"), MOVIES_DAT_COLUMNS, "::", errors)
    return rows.meta(errors)


def read_u_item(path: Path, errors: LineErrors) -> ItemMeta:
    """``u.item`` (100k): ``|``-separated, Latin-1, no header: 5 leading fields (movie id, title,
    dates, IMDb URL) then 19 genre flags 0/1 in the order of ``GENRES_100K``. The category is the
    first flagged genre other than ``unknown``."""
    require_file(path, "input file")
    n_fields = len(U_ITEM_LEADING) + len(GENRES_100K)
    rows = _MovieRows(path)
    for no, line in iter_lines(path, errors, "latin-1"):
        fields = line.split("|")
        if len(fields) != n_fields:
            errors.bad(no, f"expected {n_fields} '|'-separated fields (movie id, title, release date, video release date, "
                           f"IMDb URL, then {len(GENRES_100K)} genre flags), got {len(fields)}")
            continue
        movie = parse_int(fields[0])
        if movie is None:
            errors.bad(no, not_int_reason("movie id", fields[0]))
            continue
        flags = [f.strip() for f in fields[len(U_ITEM_LEADING):]]
        if any(f not in ("0", "1") for f in flags):
            errors.bad(no, "a genre flag is not 0 or 1")
            continue
        genres = [g for g, f in zip(GENRES_100K, flags) if f == "1" and g != "unknown"]
        rows.add(movie, first_genre(genres))
    return rows.meta(errors)


READERS = {
    "csv": (read_ratings_csv, read_movies_csv),
    "dat": (read_ratings_dat, read_movies_dat),
    "100k": (read_u_data, read_u_item),
}


def layout_of(ratings: Path) -> str:
    name = Path(ratings).name
    for layout, (r, _) in LAYOUT_FILES.items():
        if name == r:
            return layout
    raise DataError(f"{ratings}: not a MovieLens ratings file (expected one of {', '.join(r for r, _ in LAYOUT_FILES.values())})")


@dataclass
class MovieLensSource(RealSource):
    """MovieLens ratings (see the module docstring for layouts and choices)."""

    release: str = "20m"

    dataset_name = "movielens"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.release not in RELEASE_LAYOUT:
            raise ConfigError(f"dataset.release={self.release!r}: expected one of {', '.join(RELEASE_LAYOUT)}")

    @property
    def layout(self) -> str:
        return RELEASE_LAYOUT[self.release]

    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:
        """The release's ratings + movies files in ``raw_dir``, its subfolder ``ml-<release>/``
        or any other subfolder; None when absent. Files of another release's layout (and none of
        this one's) are a DataError naming both."""
        other: tuple[str, Path] | None = None
        for folder in candidate_folders(Path(raw_dir), [f"ml-{self.release}"]):
            for layout, (ratings, movies) in LAYOUT_FILES.items():
                if (folder / ratings).is_file() and (folder / movies).is_file():
                    if layout == self.layout:
                        return {"ratings": folder / ratings, "movies": folder / movies}
                    other = other or (layout, folder)
        if other is not None:
            layout, folder = other
            releases = [r for r, lay in RELEASE_LAYOUT.items() if lay == layout]
            want = " + ".join(LAYOUT_FILES[self.layout])
            raise DataError(
                f"{folder} holds MovieLens files {' + '.join(LAYOUT_FILES[layout])} (release {' / '.join(releases)}), "
                f"but dataset.release={self.release} needs {want}; set dataset.release to match the files"
            )
        return None

    def needed_files(self) -> list[str]:
        folder = f"ml-{self.release}"
        return [f"{name} (directly, or in the folder {folder}/ that {folder}.zip unpacks to)" for name in LAYOUT_FILES[self.layout]]

    def remote_files(self) -> list[RemoteFile]:
        url = URL.format(release=self.release)
        return [RemoteFile(name=f"ml-{self.release}.zip", url=url, page=PAGE, md5_url=url + ".md5")]

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta, dict]:
        ratings_path, movies_path = Path(inputs["ratings"]), Path(inputs["movies"])
        layout = layout_of(ratings_path)
        read_ratings, read_movies = READERS[layout]
        ratings_errors = LineErrors(ratings_path, self.on_bad_line)
        movies_errors = LineErrors(movies_path, self.on_bad_line)
        events = read_ratings(ratings_path, ratings_errors)
        meta = read_movies(movies_path, movies_errors)
        no_genre = int(np.count_nonzero(meta.cate == ""))
        report = {
            "release": self.release,
            "layout": " + ".join(LAYOUT_FILES[layout]),
            "category": "first listed genre; movies without a genre get the unknown category 0",
            "movies_listed": int(len(meta.item)),
            "movies_without_genre": no_genre,
            "bad_lines": {"ratings": ratings_errors.report(), "movies": movies_errors.report()},
        }
        return events, meta, report
