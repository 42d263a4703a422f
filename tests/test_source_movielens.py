"""MovieLens reader: the three layouts (csv / dat / 100k), first-genre categories, detection, bad input.

Fixtures are written here into tmp_path; the real-sample test reads ../shared/data/ml-latest-small
when it is there (skipped otherwise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.encode import encode
from ctrbench.data.sources.movielens import GENRES_100K, MovieLensSource
from ctrbench.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

RATINGS_CSV = """userId,movieId,rating,timestamp
1,10,4.0,964982703
1,20,3.5,964981247
2,10,5.0,964982224
2,30,0.5,964983815
"""
MOVIES_CSV = """movieId,title,genres
10,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
20,"American President, The (1995)",Comedy|Drama|Romance
30,"Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",(no genres listed)
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def read(raw_dir: Path, release: str, tmp_path: Path, on_bad_line: str = "error"):
    s = MovieLensSource(raw_dir=str(raw_dir), release=release, download=False, on_bad_line=on_bad_line)
    inputs = s.locate(tmp_path / "data", f"movielens_{release}")
    return (*s.read(inputs), inputs)


def meta_dict(meta) -> dict:
    return dict(zip(meta.item.tolist(), meta.cate.tolist()))


# ---- the csv layout (20m / latest / latest-small) ---------------------------------------------
def test_csv_layout_events_and_first_genre(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "ratings.csv", RATINGS_CSV)
    write(raw / "movies.csv", MOVIES_CSV)
    events, meta, report, _ = read(raw, "latest-small", tmp_path)
    assert events.user.tolist() == [1, 1, 2, 2] and events.item.tolist() == [10, 20, 10, 30]
    assert events.time.tolist() == [964982703, 964981247, 964982224, 964983815]
    assert events.rating.dtype == np.float32 and events.rating.tolist() == [4.0, 3.5, 5.0, 0.5]
    assert events.user.dtype == np.int64 and events.time.dtype == np.int64
    # first listed genre; quoted titles with commas and accents parse; no genre -> unknown ('')
    assert meta_dict(meta) == {10: "Adventure", 20: "Comedy", 30: ""}
    assert report["movies_without_genre"] == 1 and report["layout"] == "ratings.csv + movies.csv"
    streams, item_cate, encoded = encode(events, meta)
    assert encoded["categories"] == 2 and encoded["items_without_category"] == 1
    assert item_cate.tolist() == [0, 1, 2, 0]  # Adventure=1, Comedy=2 (sorted), movie 30 unknown


def test_detection_in_the_zip_subfolder(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "ml-20m" / "ratings.csv", RATINGS_CSV)
    write(raw / "ml-20m" / "movies.csv", MOVIES_CSV)
    write(raw / "other" / "ratings.csv", "userId,movieId,rating,timestamp\n9,9,1.0,1\n")
    write(raw / "other" / "movies.csv", "movieId,title,genres\n9,X (1999),Drama\n")
    events, _, _, inputs = read(raw, "20m", tmp_path)
    assert inputs["ratings"] == raw / "ml-20m" / "ratings.csv"  # the release's own subfolder first
    assert len(events) == 4


def test_crlf_line_endings_and_blank_lines(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "ratings.csv", RATINGS_CSV.replace("\n", "\r\n") + "\r\n")
    write(raw / "movies.csv", MOVIES_CSV.replace("\n", "\r\n"))
    events, meta, _, _ = read(raw, "latest", tmp_path)
    assert len(events) == 4 and meta_dict(meta)[20] == "Comedy"


# ---- the dat layout (1m) ----------------------------------------------------------------------
def test_dat_layout_latin1(tmp_path):
    raw = tmp_path / "raw" / "ml-1m"
    write(raw / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        raw / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Café au lait, Le (1993)::Comedy|Romance\n",
        encoding="latin-1",
    )
    events, meta, report, _ = read(tmp_path / "raw", "1m", tmp_path)
    assert events.user.tolist() == [1, 1, 2] and events.item.tolist() == [1193, 661, 1193]
    assert events.rating.tolist() == [5.0, 3.0, 4.0] and events.time.tolist()[0] == 978300760
    assert meta_dict(meta) == {1193: "Drama", 661: "Animation", 3: "Comedy"}
    assert report["layout"] == "ratings.dat + movies.dat"


def test_dat_wrong_field_count_names_line(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    write(raw / "movies.dat", "1193::A (1975)::Drama\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: expected 4 '::'-separated fields"):
        read(raw, "1m", tmp_path)
    events, _, report, _ = read(raw, "1m", tmp_path, on_bad_line="skip")
    assert len(events) == 1 and report["bad_lines"]["ratings"]["bad_lines_skipped"] == 1


# ---- the 100k layout --------------------------------------------------------------------------
def u_item_line(movie: int, title: str, genres: set[str]) -> str:
    flags = ["1" if g in genres else "0" for g in GENRES_100K]
    return "|".join([str(movie), title, "01-Jan-1995", "", "http://us.imdb.com/x", *flags])


def test_100k_layout_flags(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    write(
        raw / "u.item",
        "\n".join([
            u_item_line(242, "Kolya (1996)", {"Comedy"}),
            u_item_line(302, "L.A. Confidential (1997)", {"Crime", "Film-Noir", "Mystery", "Thriller"}),
            u_item_line(377, "Déjà vu (1997)", {"unknown"}),  # Latin-1 title; only the 'unknown' flag
            u_item_line(378, "Nothing (1997)", set()),
        ]) + "\n",
        encoding="latin-1",
    )
    events, meta, report, _ = read(raw, "100k", tmp_path)
    assert events.user.tolist() == [196, 186, 22] and events.rating.tolist() == [3.0, 3.0, 1.0]
    assert meta_dict(meta) == {242: "Comedy", 302: "Crime", 377: "", 378: ""}
    assert report["movies_without_genre"] == 2


def test_100k_bad_flag_and_field_count(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "u.data", "1\t242\t3\t881250949\n")
    good = u_item_line(242, "Kolya (1996)", {"Comedy"})
    write(raw / "u.item", good + "\n" + good.replace("|0|", "|x|", 1) + "\n243|Short|x\n")
    with pytest.raises(DataError, match=r"u\.item, line 2: a genre flag is not 0 or 1"):
        read(raw, "100k", tmp_path)
    _, meta, report, _ = read(raw, "100k", tmp_path, on_bad_line="skip")
    assert meta.item.tolist() == [242] and report["bad_lines"]["movies"]["bad_lines_skipped"] == 2


# ---- detection and configuration -------------------------------------------------------------
def test_unknown_release_is_a_config_error():
    with pytest.raises(ConfigError, match="dataset.release='25m'"):
        MovieLensSource(release="25m", download=False)


def test_layout_of_another_release_is_named(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "ml-1m" / "ratings.dat", "1::1::5::1\n")
    write(raw / "ml-1m" / "movies.dat", "1::A (1995)::Drama\n")
    with pytest.raises(DataError, match=r"release 1m.*dataset.release=20m needs ratings.csv \+ movies.csv"):
        read(raw, "20m", tmp_path)


def test_missing_files_list_what_to_get(tmp_path):
    (tmp_path / "raw").mkdir()
    write(tmp_path / "raw" / "ratings.csv", RATINGS_CSV)  # movies.csv missing
    with pytest.raises(DataError, match=r"(?s)movies\.csv.*ml-latest-small\.zip.*files\.grouplens\.org"):
        read(tmp_path / "raw", "latest-small", tmp_path)


# ---- bad input --------------------------------------------------------------------------------
def setup_csv(tmp_path: Path, ratings: str, movies: str = MOVIES_CSV) -> Path:
    raw = tmp_path / "raw"
    write(raw / "ratings.csv", ratings)
    write(raw / "movies.csv", movies)
    return raw


def test_wrong_header_names_file_and_expected_columns(tmp_path):
    raw = setup_csv(tmp_path, "user,item,rating,time\n1,10,4.0,1\n")
    with pytest.raises(DataError, match=r"ratings\.csv: the header is .*expected the columns userId,movieId,rating,timestamp"):
        read(raw, "20m", tmp_path)
    raw = setup_csv(tmp_path, RATINGS_CSV, "movieId,title\n10,A\n")
    with pytest.raises(DataError, match=r"movies\.csv: the header .*movieId,title,genres"):
        read(raw, "20m", tmp_path)


def test_non_numeric_value_names_line_or_is_skipped(tmp_path):
    # line 3 is blank (ignored), line 4 has a bad rating, line 6 a bad user id
    text = "userId,movieId,rating,timestamp\n1,10,4.0,1\n\n1,20,four,2\n2,10,5.0,3\nx,30,1.0,4\n"
    raw = setup_csv(tmp_path, text)
    with pytest.raises(DataError, match=r"ratings\.csv, line 4: rating='four' is not a finite number"):
        read(raw, "20m", tmp_path)
    events, _, report, _ = read(raw, "20m", tmp_path, on_bad_line="skip")
    assert events.item.tolist() == [10, 10]
    bad = report["bad_lines"]["ratings"]
    assert bad["bad_lines_skipped"] == 2 and bad["examples"][0].startswith("line 4") and bad["examples"][1].startswith("line 6")


def test_wrong_field_count_and_nan_rating(tmp_path):
    raw = setup_csv(tmp_path, "userId,movieId,rating,timestamp\n1,10,4.0,1\n1,20,4.0\n1,30,nan,5\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: expected 4 comma-separated fields \(userId, movieId, rating, timestamp\), got 3"):
        read(raw, "20m", tmp_path)
    events, _, report, _ = read(raw, "20m", tmp_path, on_bad_line="skip")
    assert events.item.tolist() == [10] and report["bad_lines"]["ratings"]["bad_lines_skipped"] == 2


def test_empty_and_header_only_files(tmp_path):
    raw = setup_csv(tmp_path, "")
    with pytest.raises(DataError, match="is empty"):
        read(raw, "20m", tmp_path)
    raw = setup_csv(tmp_path, "userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match="has no data rows"):
        read(raw, "20m", tmp_path)
    raw = setup_csv(tmp_path, RATINGS_CSV, "movieId,title,genres\n")
    with pytest.raises(DataError, match="lists no movies"):
        read(raw, "20m", tmp_path)


def test_movies_csv_bad_line(tmp_path):
    raw = setup_csv(tmp_path, RATINGS_CSV, MOVIES_CSV + "abc,Title,Drama\n")
    with pytest.raises(DataError, match=r"movies\.csv, line 5: movieId='abc' is not an integer"):
        read(raw, "20m", tmp_path)


# ---- the real sample --------------------------------------------------------------------------
def test_real_ml_latest_small(tmp_path):
    d = SHARED_DATA / "ml-latest-small"
    if not (d / "ratings.csv").exists():
        pytest.skip(f"the real MovieLens sample is not at {d}")
    events, meta, report, _ = read(d, "latest-small", tmp_path)
    assert len(events) == 100_836
    assert np.unique(events.user).size == 610
    assert len(meta.item) == 9_742 and report["movies_listed"] == 9_742
    assert report["bad_lines"]["ratings"]["bad_lines_skipped"] == 0
    assert set(np.unique(events.rating).tolist()) <= {x / 2 for x in range(1, 11)}
    _, _, encoded = encode(events, meta)
    assert encoded["users"] == 610 and encoded["behaviours"] == 100_836
    assert 15 <= encoded["categories"] <= 20  # first genres among the 20 listed
