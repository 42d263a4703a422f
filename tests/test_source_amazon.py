"""The Amazon reader (ctrbench.data.sources.amazon): both releases' exact file formats, written by
the tests themselves, plus a check over the real 2014 sample in ../shared/data when it is there."""

from __future__ import annotations

import ast
import gzip
import json
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
    events, _, report, _ = read(tmp_path)
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
    kw = {"category": "Cell_Phones_and_Accessories", "release": 2018}
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
    _, meta, report, _ = read(tmp_path, category="Books", release=2018, on_bad_line="skip")
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
    events, _, report, _ = read(tmp_path, on_bad_line="skip")
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
