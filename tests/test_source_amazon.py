"""The Amazon reader (ctrbench.data.sources.amazon): both releases' exact file formats, written by
the tests themselves, plus a check over the real 2014 sample in ../shared/data when it is there."""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.encode import encode
from ctrbench.data.sources.amazon import AmazonSource
from ctrbench.errors import ConfigError, DataError

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon2014-digital-music"


# ---- fixtures: files in the official formats --------------------------------------------------


def review(user: str, item: str, t: int, rating: float = 5.0, **extra) -> dict:
    """A review line as the 2014/2018 files have it (extra fields the reader must skip)."""
    return {
        "reviewerID": user, "asin": item, "reviewerName": 'J. "Jo" Doe', "helpful": [1, 2],
        "reviewText": "It's great \u2013 works with my \"old\" TV.\nReally.", "overall": rating,
        "summary": "Five stars", "unixReviewTime": t, "reviewTime": "01 2, 2014", **extra,
    }


REVIEWS = [
    review("U2", "A1", 300, 4.0),
    review("U1", "A2", 200, 5.0),
    review("U1", "A1", 100, 3.0),
    review("U2", "B9", 100, 1.0),  # B9 has no meta
    review("U1", "A4", 250, 2.0),
    review("U3", "A7", 50, 5.0),
]


def write_lines(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_reviews(path: Path, rows: list[dict] = REVIEWS) -> Path:
    return write_lines(path, [json.dumps(r) for r in rows])


# 2014 meta: Python dict literals (str(dict) in Python 2), in varying key orders.
META_2014 = [
    # two category paths; the last leaf needs double quotes (an apostrophe)
    repr({"asin": "A1", "title": "Cable", "price": 9.99, "related": {"also_bought": ["A2", "B9"]},
          "categories": [["Electronics", "Computers", "Cables"], ["Electronics", "Kids' Electronics"]]}),
    # no categories key at all
    repr({"asin": "A2", "title": "Plain", "salesRank": {"Electronics": 12}}),
    # key-like text inside a double-quoted title that comes before the real key
    repr({"asin": "A4", "title": "Don't 'categories': [['Fake']]", "imUrl": "http://x/y.jpg",
          "categories": [["Electronics", "Real Leaf"]]}),
    # a string with both quote kinds (single-quoted, \' escaped), asin not the first key
    repr({"title": 'He said "hi" and it\'s fine', "asin": "A7", "categories": [["Music", "Pop"]],
          "description": "x"}),
    # empty categories list
    repr({"asin": "A8", "categories": []}),
    # Python 2 wrote UTF-8 bytes as \x escapes: 'Caf\xc3\xa9' is 'Café'
    "{'asin': 'A9', 'categories': [['Music', 'Caf\\xc3\\xa9']]}",
    # a duplicate asin: the first line wins
    repr({"asin": "A1", "categories": [["Other"]]}),
]


@pytest.fixture()
def dir2014(tmp_path: Path) -> Path:
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz")
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014)
    return tmp_path


def read(raw_dir: Path, **kw):
    source = AmazonSource(raw_dir=str(raw_dir), download=False, **kw)
    inputs = source.locate(raw_dir.parent, "amazon_x")
    return (*source.read(inputs), inputs)


def category_of(meta) -> dict[str, str]:
    return dict(zip(meta.item.tolist(), meta.cate.tolist()))


# ---- 2014 ------------------------------------------------------------------------------------


def test_2014_events_parsed(dir2014):
    events, _, report, inputs = read(dir2014)
    assert inputs["reviews"].name == "reviews_Electronics_5.json.gz"
    assert events.user.tolist() == [r["reviewerID"] for r in REVIEWS]
    assert events.item.tolist() == [r["asin"] for r in REVIEWS]
    assert events.time.dtype == np.int64 and events.time.tolist() == [r["unixReviewTime"] for r in REVIEWS]
    assert events.rating.dtype == np.float32 and events.rating.tolist() == [r["overall"] for r in REVIEWS]
    assert events.user.dtype == object and isinstance(events.user[0], str)
    assert report["reviews_read"] == 6
    assert report["meta_lines_read"] == len(META_2014)
    assert report["meta_items"] == 6 and report["meta_duplicate_asins"] == 1
    assert report["reviewed_items"] == 5 and report["reviewed_items_with_meta"] == 4
    assert report["bad_lines"]["reviews"]["bad_lines_skipped"] == 0


def test_2014_category_path_last_vs_first(dir2014):
    _, last, _, _ = read(dir2014, category_path="last")
    _, first, _, _ = read(dir2014, category_path="first")
    assert category_of(last) == {
        "A1": "Kids' Electronics", "A2": "", "A4": "Real Leaf", "A7": "Pop", "A8": "", "A9": "Café",
    }
    assert category_of(first)["A1"] == "Cables"
    assert {k: v for k, v in category_of(first).items() if k != "A1"} == {
        k: v for k, v in category_of(last).items() if k != "A1"
    }


@pytest.mark.parametrize(
    "line, last, first",
    [
        ("{'asin': 'X', 'categories': [['A', 'B]]x'], ['C']]}", "C", "B]]x"),  # ]] inside a string
        ("{u'asin': u'X', u'categories': [[u'A', u\"Kid's\"]]}", "Kid's", "Kid's"),  # u-prefixed literals
        ("{'asin': 'X', 'd': \"it's, 'categories': [['Fake']]\", 'categories': [['Real']]}", "Real", "Real"),
        ("{'asin': 'X', 'd': 'say \"hi\", \\'categories\\': [[\\'F\\']]', 'categories': [['R']]}", "R", "R"),
        ("{'asin': 'X', 'categories': [['A'], []]}", "", "A"),
        ("{'asin': 'X', 'categories': [[]]}", "", ""),
        ("{'asin': 'X',   'categories' :[ [ 'A' , 'B' , ] , ]}", "B", "B"),  # not repr spacing
    ],
)
def test_2014_meta_line_parser(line, last, first):
    from ctrbench.data.sources.amazon import _Meta2014Reader
    from ctrbench.data.sources.raw import LineErrors

    paths = ast.literal_eval(line)["categories"]  # the fixture is a valid literal with these leaves
    assert (paths[-1][-1] if paths[-1] else "", paths[0][-1] if paths[0] else "") == (last, first)
    for path, expected in (("last", last), ("first", first)):
        reader = _Meta2014Reader(path, LineErrors(Path("meta.json")))
        assert reader.parse(1, line.encode()) == ("X", expected)
        assert reader.parse(2, line.encode()) == ("X", expected)  # again, from the cache


def test_2014_encode_counts_items_without_meta(dir2014):
    events, meta, _, _ = read(dir2014)
    streams, item_cate, encoded = encode(events, meta)
    # items A1 A2 A4 A7 B9: A2 has meta without categories, B9 no meta at all
    assert encoded["items"] == 5 and encoded["items_without_category"] == 2
    assert encoded["categories"] == 3
    # ids in sorted key order: users U1 U2 U3; items A1 A2 A4 A7 B9 -> 1..5
    assert streams.offsets.tolist() == [0, 0, 3, 5, 6]
    assert streams.item.tolist() == [1, 2, 3, 5, 1, 4]  # U1: A1 (t=100), A2 (200), A4 (250); U2: B9, A1
    assert streams.time.tolist() == [100, 200, 250, 100, 300, 50]
    assert streams.rating.tolist() == [3.0, 5.0, 2.0, 1.0, 4.0, 5.0]
    assert item_cate[2] == 0 and item_cate[5] == 0 and item_cate[1] > 0


def test_2014_plain_files_accepted(tmp_path):
    write_reviews(tmp_path / "reviews_Electronics_5.json")
    write_lines(tmp_path / "meta_Electronics.json", META_2014)
    events, meta, _, inputs = read(tmp_path)
    assert {p.name for p in inputs.values()} == {"reviews_Electronics_5.json", "meta_Electronics.json"}
    assert len(events) == 6 and category_of(meta)["A1"] == "Kids' Electronics"


def test_2014_crlf_and_blank_lines(tmp_path):
    write_lines(tmp_path / "reviews_Electronics_5.json", [json.dumps(r) + "\r" for r in REVIEWS] + [""])
    write_lines(tmp_path / "meta_Electronics.json", [m + "\r" for m in META_2014[:2]] + ["", "  "])
    events, _, report, _ = read(tmp_path, max_uncategorised=1.0)  # 4 of the 5 items have no category
    assert len(events) == 6 and report["meta_lines_read"] == 2


def test_missing_files(tmp_path):
    source = AmazonSource(raw_dir=str(tmp_path), download=False)
    assert source.find_inputs(tmp_path) is None
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz")
    assert source.find_inputs(tmp_path) is None  # the meta is still missing
    with pytest.raises(DataError, match="meta_Electronics.json.gz"):
        source.locate(tmp_path, "amazon_x")


def test_remote_files_both_releases():
    r14 = AmazonSource(category="Books").remote_files()
    assert [r.url for r in r14] == [
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Books_5.json.gz",
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Books.json.gz",
    ]
    assert all(r.page == "https://jmcauley.ucsd.edu/data/amazon/" for r in r14)
    r18 = AmazonSource(category="Cell_Phones_and_Accessories", release=2018).remote_files()
    assert [r.url for r in r18] == [
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/Cell_Phones_and_Accessories_5.json.gz",
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/meta_Cell_Phones_and_Accessories.json.gz",
    ]
    assert all(r.page == "https://nijianmo.github.io/amazon/index.html" for r in r18)


@pytest.mark.parametrize(
    "kw, name",
    [({"release": 2015}, "dataset.release"), ({"release": "x"}, "dataset.release"),
     ({"category_path": "middle"}, "dataset.category_path"), ({"on_bad_line": "ignore"}, "dataset.on_bad_line")],
)
def test_config_errors(kw, name):
    with pytest.raises(ConfigError, match=name):
        AmazonSource(**kw)


# ---- 2018 ------------------------------------------------------------------------------------

META_2018 = [
    {"asin": "A1", "title": "Cable", "category": ["Cell Phones &amp; Accessories", "Cases", "Basic Cases"],
     "also_buy": ["A2"], "details": {"Weight": "1 oz"}, "rank": "12 in Cell Phones"},
    {"asin": "A2", "category": []},
    {"asin": "A1", "category": ["Other"]},  # duplicate: the first wins
    {"asin": "A4", "title": "No category field"},
    {"asin": "A7", "category": ["Cell Phones &amp; Accessories", "Tom &amp; Jerry&#39;s"], "price": "$3.99"},
]


@pytest.fixture()
def dir2018(tmp_path: Path) -> Path:
    write_reviews(tmp_path / "Cell_Phones_and_Accessories_5.json.gz",
                  [review(r["reviewerID"], r["asin"], r["unixReviewTime"], r["overall"], vote="3",
                          style={"Color:": " Black"}) for r in REVIEWS])
    write_lines(tmp_path / "meta_Cell_Phones_and_Accessories.json.gz", [json.dumps(m) for m in META_2018])
    return tmp_path


def test_2018_events_and_flat_category(dir2018):
    kw = {"category": "Cell_Phones_and_Accessories", "release": 2018, "max_uncategorised": 1.0}  # 3 of 5 without
    events, meta, report, inputs = read(dir2018, **kw)
    assert inputs["reviews"].name == "Cell_Phones_and_Accessories_5.json.gz"
    assert events.item.tolist() == [r["asin"] for r in REVIEWS]
    assert events.time.tolist() == [r["unixReviewTime"] for r in REVIEWS]
    assert category_of(meta) == {"A1": "Basic Cases", "A2": "", "A4": "", "A7": "Tom & Jerry's"}
    assert report["meta_duplicate_asins"] == 1 and report["meta_lines_read"] == 5
    _, first, _, _ = read(dir2018, category_path="first", **kw)
    assert category_of(first) == category_of(meta)  # one flat path: first == last


def test_2018_plain_files_and_slow_path(tmp_path):
    """A line longer than pyarrow's block or any parse failure falls back to json.loads per line;
    with on_bad_line=skip that path must give the same answer as the fast one for good lines."""
    write_reviews(tmp_path / "Books_5.json")
    lines = [json.dumps(m) for m in META_2018] + ["{not json"]
    write_lines(tmp_path / "meta_Books.json", lines)
    _, meta, report, _ = read(tmp_path, category="Books", release=2018, on_bad_line="skip", max_uncategorised=1.0)
    assert category_of(meta) == {"A1": "Basic Cases", "A2": "", "A4": "", "A7": "Tom & Jerry's"}
    assert report["bad_lines"]["meta"]["bad_lines_skipped"] == 1
    assert report["bad_lines"]["meta"]["examples"][0].startswith("line 6:")


def test_2018_meta_wrong_category_type(tmp_path):
    write_reviews(tmp_path / "Books_5.json.gz")
    write_lines(tmp_path / "meta_Books.json.gz", [json.dumps(META_2018[0]), json.dumps({"asin": "Z", "category": "Books"})])
    with pytest.raises(DataError, match=r"meta_Books.json.gz, line 2: 'category'"):
        read(tmp_path, category="Books", release=2018)


# ---- bad inputs ------------------------------------------------------------------------------


def lines_with(bad_line: str, at: int = 2) -> list[str]:
    lines = [json.dumps(r) for r in REVIEWS]
    return lines[:at] + [bad_line] + lines[at:]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"reviewerID": "U9", "asin": "A1", "unixReviewTime": 5, "overall": 5.0', "not valid JSON"),
        ('["U9", "A1"]', "not a JSON object"),
        ('{"reviewerID": "U9", "unixReviewTime": 5, "overall": 5.0}', "no 'asin'"),
        ('{"reviewerID": "U9", "asin": null, "unixReviewTime": 5, "overall": 5.0}', "no 'asin'"),
        ('{"reviewerID": "U9", "asin": "A1", "unixReviewTime": "5", "overall": 5.0}', "'unixReviewTime' is '5', expected an integer"),
        ('{"reviewerID": "U9", "asin": "A1", "unixReviewTime": 5.5, "overall": 5.0}', "expected an integer"),
        ('{"reviewerID": "U9", "asin": "A1", "unixReviewTime": 5, "overall": "five"}', "'overall' is 'five', expected a number"),
        ('{"reviewerID": 9, "asin": "A1", "unixReviewTime": 5, "overall": 5.0}', "'reviewerID' is 9"),
    ],
)
def test_bad_review_line_names_file_and_line(tmp_path, bad, reason):
    write_lines(tmp_path / "reviews_Electronics_5.json.gz", lines_with(bad))
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014)
    with pytest.raises(DataError) as e:
        read(tmp_path)
    assert "reviews_Electronics_5.json.gz, line 3: " in str(e.value) and reason in str(e.value)
    assert "on_bad_line=skip" in str(e.value)


def test_bad_review_line_skipped_and_counted(tmp_path):
    write_lines(tmp_path / "reviews_Electronics_5.json.gz", lines_with("{oops", at=2) + ["{also bad"])
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014)
    events, _, report, _ = read(tmp_path, on_bad_line="skip")
    assert events.item.tolist() == [r["asin"] for r in REVIEWS]  # the good lines, in order
    bad = report["bad_lines"]["reviews"]
    assert bad["bad_lines_skipped"] == 2
    assert bad["examples"][0].startswith("line 3: ") and bad["examples"][1].startswith("line 8: ")


@pytest.mark.parametrize(
    "bad, reason",
    [("['A5', 'x']", "not a Python dict literal"), ("{'title': 'no asin'}", "no 'asin'"),
     ("{'asin': 'A5', 'categories': [['a', 'b'}", "'categories' is not a list of lists of strings"),
     ("{'asin': 'A5', 'categories': 'Music'}", "'categories' is not a list of lists of strings")],
)
def test_bad_meta_2014_line(tmp_path, bad, reason):
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz")
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014[:3] + [bad] + META_2014[3:])
    with pytest.raises(DataError, match=rf"meta_Electronics.json.gz, line 4: {reason}"):
        read(tmp_path)
    _, meta, report, _ = read(tmp_path, on_bad_line="skip")
    assert report["bad_lines"]["meta"]["bad_lines_skipped"] == 1
    assert "A5" not in meta.item.tolist() and len(meta.item) == 6


def test_truncated_gzip(tmp_path):
    # read_all_bytes keeps whole 16 MiB blocks before the damage: make the file bigger than one
    text = "Works fine. " * 60
    rows = [review(f"U{i}", f"A{i % 7}", 1000 + i * 7919 % 10007, reviewText=text) for i in range(25_000)]
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert len(content) > 1 << 24
    data = gzip.compress(content, compresslevel=1)
    path = tmp_path / "reviews_Electronics_5.json.gz"
    path.write_bytes(data[: len(data) * 7 // 8])
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014)
    with pytest.raises(DataError, match="reviews_Electronics_5.json.gz: the gzip stream is truncated or corrupt"):
        read(tmp_path)
    events, _, report, _ = read(tmp_path, on_bad_line="skip", max_uncategorised=1.0)  # items A0..A6: few in META_2014
    assert 0 < len(events) < len(rows)
    assert events.user.tolist() == [r["reviewerID"] for r in rows[: len(events)]]
    assert report["bad_lines"]["reviews"]["bad_lines_skipped"] == 1


@pytest.mark.parametrize("which", ["reviews_Electronics_5.json", "meta_Electronics.json"])
def test_empty_file(tmp_path, which):
    write_reviews(tmp_path / "reviews_Electronics_5.json")
    write_lines(tmp_path / "meta_Electronics.json", META_2014)
    (tmp_path / which).write_bytes(b"")
    with pytest.raises(DataError, match=f"{which}' is empty"):
        read(tmp_path)


def test_reviews_with_only_blank_lines(tmp_path):
    write_lines(tmp_path / "reviews_Electronics_5.json", ["", ""])
    write_lines(tmp_path / "meta_Electronics.json", META_2014)
    with pytest.raises(DataError, match="no reviews"):
        read(tmp_path)


# ---- the real 2014 sample ---------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"the real Amazon sample is not at {SAMPLE}")
def test_real_digital_music_sample():
    source = AmazonSource(raw_dir=str(SAMPLE), category="Digital_Music", download=False, category_path="first")
    events, meta, report = source.read(source.locate(SAMPLE.parent, "amazon_digital_music"))
    _, _, encoded = encode(events, meta)
    # the sample's README: 6,908 reviews, 2,490 users, 382 items, all with meta, 64 leaf categories
    assert encoded["behaviours"] == 6908 and encoded["users"] == 2490 and encoded["items"] == 382
    assert encoded["items_without_category"] == 0 and report["reviewed_items_with_meta"] == 382
    assert encoded["categories"] == 64
    assert report["bad_lines"]["reviews"]["bad_lines_skipped"] == 0
    assert report["bad_lines"]["meta"]["bad_lines_skipped"] == 0

    # the reviewed items and the first 1,500 meta lines agree with a full parse (ast.literal_eval
    # is fine in a test; all 7,419 lines would make the test slow)
    source_last = AmazonSource(raw_dir=str(SAMPLE), category="Digital_Music", download=False)
    _, meta_last, _ = source_last.read(source_last.locate(SAMPLE.parent, "amazon_digital_music"))
    reviewed = set(events.item.tolist())
    expected_first, expected_last = {}, {}
    with gzip.open(SAMPLE / "meta_Digital_Music.json.gz", "rt", encoding="utf-8") as f:
        for no, line in enumerate(f, start=1):
            if no > 1500 and line[10:20] not in reviewed:  # lines start with {'asin': '<10 chars>'
                continue
            d = ast.literal_eval(line)
            paths = d.get("categories") or [[]]
            expected_first.setdefault(d["asin"], paths[0][-1] if paths[0] else "")
            expected_last.setdefault(d["asin"], paths[-1][-1] if paths[-1] else "")
    assert reviewed <= set(expected_first)
    first, last = category_of(meta), category_of(meta_last)
    assert {k: first[k] for k in expected_first} == expected_first
    assert {k: last[k] for k in expected_last} == expected_last


# ---- items without category (issue 22, item 8) -------------------------------------------------


def reviews_of(items: list[str], users: int = 6) -> list[dict]:
    """Every user reviews every item once (times distinct per user)."""
    return [review(f"U{u}", item, 1000 + 10 * k + u) for u in range(users) for k, item in enumerate(items)]


ITEMS = [f"B{i:03d}" for i in range(10)]


def meta2014(item: str, cate: str | None) -> str:
    return repr({"asin": item, "title": "x"} if cate is None else {"asin": item, "categories": [["Electronics", cate]]})


def test_2018_meta_beside_2014_reviews_is_an_error_naming_both_files_and_the_release(tmp_path):
    """The same asins, but a 2018 meta file (JSON lines with 'category') read as a 2014 one: no
    item has 'categories', so every item would silently get the unknown category 0."""
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz", reviews_of(ITEMS))
    write_lines(tmp_path / "meta_Electronics.json.gz",
                [json.dumps({"asin": i, "title": "x", "category": ["Electronics", f"C{int(i[1:]) % 3}"]}) for i in ITEMS])
    with pytest.raises(DataError) as e:
        read(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    for word in ("10 of 10 reviewed items", "dataset.max_uncategorised=0.5", "reviews_Electronics_5.json.gz",
                 "meta_Electronics.json.gz", "2018", "dataset.release"):
        assert word in msg, (word, msg)


def test_2014_meta_beside_2018_reviews_read_with_skip_names_the_release(tmp_path):
    write_reviews(tmp_path / "Books_5.json.gz", reviews_of(ITEMS))
    write_lines(tmp_path / "meta_Books.json.gz", [meta2014(i, "Fiction") for i in ITEMS])
    with pytest.raises(DataError, match=r"all 10 meta lines were skipped as malformed.*looks like a 2014-release.*dataset\.release=2014"):
        read(tmp_path, category="Books", release=2018, on_bad_line="skip")


def test_meta_of_other_items_is_an_error(tmp_path):
    """A meta file that matches no reviewed item (another category's, say)."""
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz", reviews_of(ITEMS))
    write_lines(tmp_path / "meta_Electronics.json.gz", [meta2014(f"Z{i}", "Cables") for i in range(10)])
    with pytest.raises(DataError, match=r"none of the 10 reviewed items is in the meta file.*meta_Electronics.json.gz"):
        read(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_meta_gzip_without_lines_is_an_error(tmp_path, content):
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz", reviews_of(ITEMS))
    (tmp_path / "meta_Electronics.json.gz").write_bytes(gzip.compress(content))
    with pytest.raises(DataError) as e:
        read(tmp_path)
    assert "\n" not in str(e.value)
    assert "meta_Electronics.json.gz" in str(e.value) and "no lines" in str(e.value)


def test_some_items_without_category_warn_in_the_log_and_the_report(tmp_path, caplog):
    # 3 of 10 reviewed items without category: 2 with no meta line, 1 with a line without categories
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz", reviews_of(ITEMS))
    write_lines(tmp_path / "meta_Electronics.json.gz",
                [meta2014(i, None if i == "B002" else "Cables") for i in ITEMS[:8]])
    with caplog.at_level("WARNING", logger="ctrbench"):
        _, _, report, _ = read(tmp_path)
    assert report["reviewed_items_with_category"] == 7
    [warning] = report["warnings"]
    assert "3 of 10 reviewed items (30%) have no category" in warning
    assert "2 have no line in the meta file" in warning and "1 has a line without a category" in warning
    assert "meta_Electronics.json.gz" in warning and "\n" not in warning
    assert warning in caplog.text
    # the same files with a lower limit: an error
    with pytest.raises(DataError, match=r"3 of 10 reviewed items \(30%\).*dataset\.max_uncategorised=0\.2"):
        read(tmp_path, max_uncategorised=0.2)


def test_all_items_with_category_no_warning(tmp_path, caplog):
    write_reviews(tmp_path / "reviews_Electronics_5.json.gz", reviews_of(ITEMS))
    write_lines(tmp_path / "meta_Electronics.json.gz", [meta2014(i, "Cables") for i in ITEMS])
    with caplog.at_level("WARNING", logger="ctrbench"):
        _, _, report, _ = read(tmp_path)
    assert report["warnings"] == [] and "category" not in caplog.text


@pytest.mark.parametrize("bad", [1.5, -0.1, "half", True, float("nan")])
def test_max_uncategorised_must_be_a_fraction(bad):
    with pytest.raises(ConfigError, match="dataset.max_uncategorised"):
        AmazonSource(max_uncategorised=bad)


def test_prepare_fails_with_one_line_and_warns_in_the_statistics_table(tmp_path):
    from test_cli import ctrbench

    raw = tmp_path / "raw"
    raw.mkdir()
    # each of 8 users reviews 6 of the 10 items (so the protocol can draw negatives)
    write_reviews(raw / "reviews_Electronics_5.json.gz",
                  [review(f"U{u}", ITEMS[(u + k) % 10], 1000 + 10 * k) for u in range(8) for k in range(6)])
    write_lines(raw / "meta_Electronics.json.gz", [meta2014(i, f"C{int(i[1:]) % 3}") for i in ITEMS[:4]])
    args = ["dataset=amazon", f"dataset.raw_dir={raw}", "dataset.download=false"]
    proc = ctrbench("prepare", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "6 of 10 reviewed items (60%) have no category" in line and "dataset.max_uncategorised" in line
    ok = ctrbench("prepare", *args, "dataset.max_uncategorised=0.8", cwd=tmp_path)
    assert "warning" in ok.stdout and "no category" in ok.stdout.replace("\n", " ")
    [manifest] = (tmp_path / "data" / "processed").glob("*/manifest.json")
    [warning] = json.loads(manifest.read_text())["protocol"]["source"]["warnings"]
    assert warning.startswith("6 of 10 reviewed items (60%) have no category")


# ---- category names and missing files (issue 22, item 9) ---------------------------------------


@pytest.mark.parametrize(
    "release, category, expected",
    [
        (2014, "Magazine_Subscription", "the 2018 release has Magazine_Subscriptions (dataset.release=2018)"),
        (2018, "Magazine_Subscription", "did you mean Magazine_Subscriptions?"),
        (2014, "electronics", "did you mean Electronics?"),
        (2014, "Cell Phones & Accessories", "did you mean Cell_Phones_and_Accessories?"),
        (2014, "Movies_TV", "did you mean Movies_and_TV?"),
        (2018, "Beauty", "did you mean"),  # All_Beauty / Luxury_Beauty; 2014's Beauty
        (2014, "Xyzzy", "the 2014 release's categories are: Amazon_Instant_Video, Apps_for_Android"),
    ],
)
def test_unknown_category_is_a_config_error_with_suggestions(tmp_path, release, category, expected):
    source = AmazonSource(raw_dir=str(tmp_path), download=False, category=category, release=release)
    with pytest.raises(ConfigError) as e:
        source.locate(tmp_path, "amazon_x")
    msg = str(e.value)
    assert "\n" not in msg and "http" not in msg  # no download links for a category that does not exist
    assert f"dataset.category={category!r} is not a category of the Amazon {release} release" in msg
    assert expected in msg, msg
    assert str(tmp_path) in msg


def test_published_category_lists():
    from ctrbench.data.sources.amazon import CATEGORIES

    assert len(CATEGORIES[2014]) == 24 and len(CATEGORIES[2018]) == 29
    for release, names in CATEGORIES.items():
        assert len(set(names)) == len(names) and all(" " not in n and "/" not in n for n in names)
        for name in names:  # every published name passes the check (no ConfigError) and has its links
            urls = [r.url for r in AmazonSource(category=name, release=release).remote_files()]
            assert all(name in u for u in urls)
    assert {"Electronics", "Books", "Digital_Music", "Clothing_Shoes_and_Jewelry"} <= set(CATEGORIES[2014])
    assert {"Magazine_Subscriptions", "AMAZON_FASHION", "All_Beauty", "Cell_Phones_and_Accessories"} <= set(CATEGORIES[2018])


def test_unpublished_category_with_its_files_there_is_read(tmp_path):
    """A category name outside the published list is fine when both files are there (a subset a
    user made, say): the list is only checked before asking for (or downloading) files."""
    write_reviews(tmp_path / "reviews_My_Subset_5.json")
    write_lines(tmp_path / "meta_My_Subset.json", META_2014)
    events, _, _, _ = read(tmp_path, category="My_Subset")
    assert len(events) == len(REVIEWS)


@pytest.mark.parametrize("present", ["reviews", "meta"])
def test_one_file_there_says_which_is_missing(tmp_path, present):
    names = {"reviews": "reviews_Electronics_5.json.gz", "meta": "meta_Electronics.json.gz"}
    missing = "meta" if present == "reviews" else "reviews"
    if present == "reviews":
        write_reviews(tmp_path / names["reviews"])
    else:
        write_lines(tmp_path / "meta_Electronics.json", META_2014)  # un-gzipped counts as there
    source = AmazonSource(raw_dir=str(tmp_path), download=False)
    with pytest.raises(DataError) as e:
        source.locate(tmp_path, "amazon_x")
    first, *rest = str(e.value).splitlines()
    assert f"the {missing} file {names[missing]} is not there" in first, first
    assert f"the {present} file " in first and "is there" in first
    listed = "\n".join(rest)
    assert names[missing] in listed and names[present] not in listed  # only the missing file is asked for


def test_one_file_there_only_the_other_is_downloaded(tmp_path, monkeypatch):
    from ctrbench.data import download

    write_reviews(tmp_path / "reviews_Electronics_5.json.gz")
    fetched = []

    def fake_fetch(remote, raw_dir, timeout=30.0):
        fetched.append(remote.name)
        return write_lines(raw_dir / remote.name, META_2014)

    monkeypatch.setattr(download, "fetch", fake_fetch)
    inputs = AmazonSource(raw_dir=str(tmp_path)).locate(tmp_path, "amazon_x")
    assert fetched == ["meta_Electronics.json.gz"]
    assert inputs["reviews"].name == "reviews_Electronics_5.json.gz"


# ---- reading in chunks (issue 21: Books-size files) ----------------------------------------------
# The files are read in chunks of whole lines (amazon.READ_CHUNK, 8 MiB), gzip inflated by pyarrow
# with zlib deciding on damage; whatever the chunk size, what is read (and every error and count)
# must be what reading the whole file at once gives.


def snapshot(raw_dir: Path, **kw):
    """Everything ``read`` gives, as plain values, or the error's text."""
    try:
        events, meta, report, _ = read(raw_dir, **kw)
    except DataError as e:
        return str(e)
    return ([events.user.tolist(), events.item.tolist(), events.time.tolist(), events.rating.tolist()],
            [meta.item.tolist(), meta.cate.tolist()], report)


def random_reviews(n: int, seed: int = 0, text: int = 400) -> list[str]:
    """n review lines with random (hardly compressible) texts, users U0..U99 and items A0..A199."""
    rng = np.random.default_rng(seed)
    return [json.dumps(review(f"U{rng.integers(100)}", f"A{rng.integers(200)}", int(rng.integers(10**9)),
                              float(rng.integers(1, 6)), reviewText=rng.bytes(text // 2).hex()))
            for _ in range(n)]


def meta_of_random_reviews() -> list[str]:
    return [repr({"asin": f"A{i}", "categories": [["Electronics", f"Leaf {i % 7}"]]}) for i in range(200)]


@pytest.mark.parametrize("chunk", [1, 97, 4096])
@pytest.mark.parametrize("case", ["2014", "2014 bad lines", "2018 slow meta", "plain crlf blanks"])
def test_chunk_boundaries_change_nothing(tmp_path, monkeypatch, case, chunk):
    from ctrbench.data.sources import amazon

    kw: dict = {"max_uncategorised": 1.0}
    if case == "2014":
        write_reviews(tmp_path / "reviews_Electronics_5.json.gz", [json.loads(x) for x in random_reviews(40)])
        write_lines(tmp_path / "meta_Electronics.json.gz", META_2014 + meta_of_random_reviews())
    elif case == "2014 bad lines":  # line numbers counted across chunks
        write_lines(tmp_path / "reviews_Electronics_5.json.gz", lines_with("{oops", at=2) + ["", "[1]"] + lines_with("{x", at=4))
        write_lines(tmp_path / "meta_Electronics.json.gz", META_2014[:3] + ["{'title': 'no asin'}", ""] + META_2014[3:])
    elif case == "2018 slow meta":  # one bad line: the whole meta file through json.loads
        write_reviews(tmp_path / "Books_5.json.gz")
        write_lines(tmp_path / "meta_Books.json.gz", [json.dumps(m) for m in META_2018] + ['{"asin": "Z", "category": "x"}'])
        kw.update(category="Books", release=2018)
    else:
        (tmp_path / "reviews_Electronics_5.json").write_bytes(
            "\r\n".join(json.dumps(r) for r in REVIEWS[:3]).encode() + b"\n\n  \n" + json.dumps(REVIEWS[3]).encode())
        write_lines(tmp_path / "meta_Electronics.json", META_2014)
    expected = {policy: snapshot(tmp_path, on_bad_line=policy, **kw) for policy in ("error", "skip")}
    monkeypatch.setattr(amazon, "READ_CHUNK", chunk)
    for policy in ("error", "skip"):
        assert snapshot(tmp_path, on_bad_line=policy, **kw) == expected[policy]
    if case == "2014 bad lines":
        assert "reviews_Electronics_5.json.gz, line 3: not valid JSON" in expected["error"]
        bad = expected["skip"][2]["bad_lines"]
        assert [e.split(":")[0] for e in bad["reviews"]["examples"]] == ["line 3", "line 9", "line 14"]
        assert [e.split(":")[0] for e in bad["meta"]["examples"]] == ["line 4"]


def test_reviews_strings_are_shared_objects(dir2014):
    """One ``str`` per distinct user and item, not one per review (the memory of a Books-size read)."""
    events, _, _, _ = read(dir2014)
    assert len({id(u) for u in events.user}) == len(set(events.user.tolist())) == 3
    assert len({id(i) for i in events.item}) == len(set(events.item.tolist())) == 5


def expected_from_whole_file(path: Path, policy: str):
    """What reading the whole file with ``read_all_bytes`` gives: the reviews of its complete
    lines, or its error; and its bad-line report."""
    from ctrbench.data.sources.raw import LineErrors, read_all_bytes

    errors = LineErrors(path, policy)
    try:
        data = read_all_bytes(path, errors)
    except DataError as e:
        return str(e), None
    rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    if not rows:
        return f"{path}: no reviews in the file", None
    return [[r["reviewerID"] for r in rows], [r["unixReviewTime"] for r in rows]], errors.report()


@pytest.mark.parametrize("damage", ["corrupt block", "bad crc", "truncated", "zero padding", "garbage after", "zlib format"])
@pytest.mark.parametrize("chunk", [None, 1 << 16])
def test_damaged_gzip_read_as_a_whole_file_read_it(tmp_path, monkeypatch, damage, chunk):
    """pyarrow inflates; zlib decides on damage, which it finds at the start of the 4 MiB
    compressed block it is in: pyarrow may have given more by then, and the file is read again
    without it, so that the lines read and the error (or the count) are those of a whole-file read."""
    from ctrbench.data.sources import amazon

    if chunk:
        monkeypatch.setattr(amazon, "READ_CHUNK", chunk)
    content = ("\n".join(random_reviews(22_000, text=460)) + "\n").encode()
    data = gzip.compress(content, compresslevel=1)
    at = (1 << 22) + 500_000  # in the second of zlib's 4 MiB blocks
    assert len(data) > at + 1_000_000
    if damage == "corrupt block":
        data = data[:at] + bytes(b ^ 0x5A for b in data[at : at + 4]) + data[at + 4 :]
    elif damage == "bad crc":
        data = data[:-8] + b"\0\0\0\0" + data[-4:]
    elif damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "zero padding":
        data += b"\0" * 1000
    elif damage == "garbage after":
        data += b"not gzip"
    else:
        data = zlib.compress(content)
    path = tmp_path / "reviews_Electronics_5.json.gz"
    path.write_bytes(data)
    write_lines(tmp_path / "meta_Electronics.json.gz", meta_of_random_reviews())
    for policy in ("error", "skip"):
        expected, report = expected_from_whole_file(path, policy)
        got = snapshot(tmp_path, on_bad_line=policy)
        if isinstance(expected, str) or isinstance(got, str):
            assert got == expected
        else:
            assert [got[0][0], got[0][2]] == expected
            assert got[2]["bad_lines"]["reviews"] == report
    if damage == "zero padding":
        assert len(got[0][0]) == 22_000 and report["bad_lines_skipped"] == 0


def test_damaged_gzip_comes_before_bad_lines(tmp_path):
    """As when the whole file was read before any line: with on_bad_line=error a truncated file is
    the error even when a line before the damage is bad; with skip, the damage is the first bad
    line counted, then the bad lines before it."""
    lines = random_reviews(3000)
    lines[5] = "{oops"
    path = tmp_path / "reviews_Electronics_5.json.gz"
    data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)
    path.write_bytes(data[: len(data) // 2])
    write_lines(tmp_path / "meta_Electronics.json.gz", meta_of_random_reviews())
    with pytest.raises(DataError, match=r"reviews_Electronics_5\.json\.gz: the gzip stream is truncated"):
        read(tmp_path)
    events, _, report, _ = read(tmp_path, on_bad_line="skip")
    bad = report["bad_lines"]["reviews"]
    assert bad["bad_lines_skipped"] == 2
    assert "gzip stream is truncated" in bad["examples"][0] and bad["examples"][1].startswith("line 6: not valid JSON")
    assert len(events) == int(bad["examples"][0].split(":")[0].removeprefix("line ")) - 2


def test_chunks_of_blank_lines_keep_the_pyarrow_path(tmp_path, monkeypatch):
    from ctrbench.data.sources import amazon

    write_lines(tmp_path / "reviews_Electronics_5.json.gz", [json.dumps(REVIEWS[0]), "", " ", json.dumps(REVIEWS[1]), "\t", ""])
    write_lines(tmp_path / "meta_Electronics.json.gz", META_2014)
    expected = snapshot(tmp_path)
    monkeypatch.setattr(amazon, "READ_CHUNK", 1)
    monkeypatch.setattr(amazon, "_reviews_slow", lambda *a: pytest.fail("the per-line pass was taken"))
    assert snapshot(tmp_path) == expected and expected[2]["reviews_read"] == 2
