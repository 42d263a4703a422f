"""dataset=interactions: a behaviour log with named columns, in CSV / TSV / Parquet / JSON lines.

Every fixture is generated here; the equivalence tests read the real samples in ../shared/data/
(outside the repo; skipped, saying so, when absent), export them to a plain CSV and check that the
processed dataset equals the dedicated reader's."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from ctrbench.cli import conf_dir
from ctrbench.data.prepare import _construct, content_config
from ctrbench.data.protocols import DIENProtocol, DINProtocol, MovieLensProtocol
from ctrbench.data.sources.bars import AsIsProtocol
from ctrbench.data.sources.interactions import InteractionsSource, duplicate_rows
from ctrbench.data.store import config_hash
from ctrbench.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLS = {"user": "uid", "item": "sku", "time": "ts", "category": "cat", "label": "click"}

# A tiny log, hand-checked below. Items a < b < c < d get ids 1..4; users u1, u2 get 1, 2.
TINY = pd.DataFrame({
    "uid": ["u1", "u2", "u1", "u2", "u1", "u2", "u1", "u2", "u1"],
    "sku": ["a", "b", "b", "c", "c", "d", "a", "a", "d"],
    "ts": [1, 1, 2, 2, 3, 3, 4, 4, 5],
    "cat": ["x", "y", "y", "y", "y", "z", "x", "x", "z"],
    "click": [1, 1, 0, 1, 1, 0, 1, 1, 1],
})


def _write(frame: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif ".jsonl" in name:
        text = frame.to_json(orient="records", lines=True)
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    else:
        sep = "\t" if ".tsv" in name else ","
        frame.to_csv(path, index=False, sep=sep, compression="gzip" if name.endswith(".gz") else None)
    return path


def _source(path, tmp_path=None, **kw) -> InteractionsSource:
    kw.setdefault("columns", dict(COLS))
    s = InteractionsSource(path=str(path), **kw)
    s.locate(tmp_path or Path(path).parent, "interactions")
    return s


def _build(path, protocol=None, **kw):
    return _source(path, **kw).build(protocol or AsIsProtocol())


def _as_lists(splits) -> dict:
    return {k: (v.user.tolist(), v.item.tolist(), v.label.tolist(), v.hist_end.tolist()) for k, v in splits.items()}


def _same(a, b) -> None:
    """Two builds give the same streams, item categories and splits."""
    for f in ("offsets", "item", "cate", "time"):
        assert np.array_equal(getattr(a[0], f), getattr(b[0], f)), f
    if a[0].rating is not None or b[0].rating is not None:
        assert np.array_equal(a[0].rating, b[0].rating)
    assert np.array_equal(a[1], b[1])
    assert set(a[2]) == set(b[2])
    for s in a[2]:
        for f in ("user", "item", "cate", "label", "hist_end"):
            assert np.array_equal(getattr(a[2][s], f), getattr(b[2][s], f)), (s, f)


# ---- behaviour on a hand-built file -----------------------------------------------------------


def test_as_is_rows_are_samples_with_histories_of_earlier_positives(tmp_path):
    streams, item_cate, splits, info = _build(_write(TINY, tmp_path / "log.csv"))
    # u1: a@1 +, b@2 -, c@3 +, a@4 +, d@5 +  -> stream a c a d;  u2: b@1 +, c@2 +, d@3 -, a@4 + -> b c a
    assert streams.offsets.tolist() == [0, 0, 4, 7]
    assert streams.item.tolist() == [1, 3, 1, 4, 2, 3, 1]
    assert item_cate.tolist() == [0, 1, 2, 2, 3]  # a x, b y, c y, d z (categories x < y < z)
    # hist_end = the user's positives strictly earlier; P = positives; test >= P-1, valid == P-2.
    assert _as_lists(splits) == {
        "train": ([1, 1, 1, 2], [1, 2, 3, 2], [1.0, 0.0, 1.0, 1.0], [0, 1, 1, 0]),
        "valid": ([1, 2], [1, 3], [1.0, 1.0], [2, 1]),
        "test": ([1, 2, 2], [4, 4, 1], [1.0, 0.0, 1.0], [3, 2, 2]),
    }
    assert info["protocol"] == "as_is" and info["source"]["encoded"]["rows"] == 9
    assert info["source"]["encoded"]["behaviours"] == 7


def test_as_is_rows_at_one_time_share_a_history_and_light_users_only_train(tmp_path):
    frame = pd.DataFrame({
        "uid": [1, 1, 1, 1, 1, 2, 2],
        "sku": [10, 11, 12, 13, 14, 10, 11],
        "ts": [1, 1, 2, 2, 3, 1, 2],
        "click": [1, 0, 0, 1, 1, 1, 1],
    })
    cols = {"user": "uid", "item": "sku", "time": "ts", "label": "click"}
    _, _, splits, info = _build(_write(frame, tmp_path / "log.csv"), columns=cols)
    # user 1: positives at times 1, 2, 3 (P = 3): rows at time 1 see 0, at time 2 see 1, at 3 see 2.
    assert _as_lists(splits) == {
        "train": ([1, 1, 2, 2], [1, 2, 1, 2], [1.0, 0.0, 1.0, 1.0], [0, 0, 0, 1]),
        "valid": ([1, 1], [3, 4], [0.0, 1.0], [1, 1]),
        "test": ([1], [5], [1.0], [2]),
    }
    assert info["users_train_only_fewer_than_3_positives"] == 1
    _, _, splits, _ = _build(tmp_path / "log.csv", columns=cols, protocol=AsIsProtocol(valid="none"))
    assert len(splits["valid"]) == 0 and len(splits["train"]) == 6


def test_din_protocol_uses_the_positive_rows_as_behaviours(tmp_path):
    streams, _, splits, info = _build(_write(TINY, tmp_path / "log.csv"), DINProtocol())
    assert streams.item.tolist() == [1, 3, 1, 4, 2, 3, 1]
    assert info["source"]["label"]["negative_rows_dropped"] == 2
    # DIN: positions 1..n-1 of each user, each a positive and a drawn negative; u1 (4 behaviours):
    # train 1, valid 2, test 3; u2 (3): train 1, test 2 (no validation: it would leave no training).
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "valid": 2, "test": 4}
    no_label = {k: v for k, v in COLS.items() if k != "label"}
    streams, _, _, _ = _build(tmp_path / "log.csv", DIENProtocol(), columns=no_label)
    assert streams.n_behaviours == 9


def test_rating_column_with_the_movielens_protocol(tmp_path):
    frame = TINY.assign(stars=[5, 3, 4, 1, 4.5, 2, 5, 3, 4])
    cols = {"user": "uid", "item": "sku", "time": "ts", "rating": "stars"}
    streams, _, splits, _ = _build(_write(frame, tmp_path / "log.csv"), MovieLensProtocol(test_fraction=0.5, valid_fraction=0.0), columns=cols)
    assert streams.rating.tolist() == [5.0, 4.0, 4.5, 5.0, 4.0, 3.0, 1.0, 2.0, 3.0]
    labels = np.concatenate([s.label for s in splits.values()])
    assert sorted(labels.tolist()) == [0.0] * 4 + [1.0] * 5
    with pytest.raises(ConfigError, match="dataset.columns.rating"):
        _build(tmp_path / "log.csv", MovieLensProtocol(), columns={"user": "uid", "item": "sku", "time": "ts"})


# ---- formats, layouts, times and ids ----------------------------------------------------------


@pytest.mark.parametrize("name", ["log.tsv", "log.parquet", "log.jsonl", "log.csv.gz", "log.tsv.gz", "log.jsonl.gz"])
def test_every_format_gives_the_csv_result(tmp_path, name):
    expected = _build(_write(TINY, tmp_path / "log.csv"))
    (tmp_path / "other").mkdir()
    _same(_build(_write(TINY, tmp_path / "other" / name)), expected)


def test_format_override_delimiter_and_quoted_values(tmp_path):
    expected = _build(_write(TINY, tmp_path / "log.csv"))
    (tmp_path / "x").mkdir()
    TINY.to_csv(tmp_path / "x" / "log.txt", index=False, sep=";")
    _same(_build(tmp_path / "x" / "log.txt", format="csv", delimiter=";"), expected)
    (tmp_path / "q").mkdir()  # categories holding the delimiter and quotes (pandas quotes them)
    quoted = TINY.assign(cat=TINY.cat.map({"x": 'x, "one"', "y": "y, two", "z": "z"}))
    _same(_build(_write(quoted, tmp_path / "q" / "log.csv")), expected)


def test_a_folder_and_a_glob_read_every_file_in_name_order(tmp_path):
    expected = _build(_write(TINY, tmp_path / "log.csv"))
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(TINY.iloc[:4], folder / "part-0.csv")
    _write(TINY.iloc[4:7], folder / "part-1.parquet")
    _write(TINY.iloc[7:], folder / "part-2.jsonl")
    (folder / "README.md").write_text("not data")
    s = _source(folder)
    assert [p.name for p in s._behaviour_files()] == ["part-0.csv", "part-1.parquet", "part-2.jsonl"]
    _same(s.build(AsIsProtocol()), expected)
    _same(_build(str(folder / "part-*")), expected)
    with pytest.raises(DataError, match="matches no data file"):
        _build(str(folder / "nothing-*.csv"))
    with pytest.raises(DataError, match="no such file or folder"):
        _build(tmp_path / "absent.csv")


def test_path_null_reads_the_raw_folder_of_the_dataset(tmp_path):
    raw = tmp_path / "raw" / "interactions"
    raw.mkdir(parents=True)
    _write(TINY, raw / "log.csv")
    s = InteractionsSource(path=None, columns=dict(COLS))
    assert s.locate(tmp_path, "interactions") == {"behaviours": (raw / "log.csv").resolve()}
    with pytest.raises(DataError, match="dataset.path is not set"):
        InteractionsSource(path=None).locate(tmp_path, "elsewhere")


def test_iso_int_and_float_times_give_one_order(tmp_path):
    expected = _build(_write(TINY, tmp_path / "int.csv"))
    iso = TINY.assign(ts=pd.Timestamp("2024-03-01T12:00:00") + pd.to_timedelta(TINY.ts * 90, unit="s"))
    iso_text = iso.assign(ts=iso.ts.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    for name, frame in (("iso.csv", iso_text), ("iso.parquet", iso), ("float.csv", TINY.assign(ts=TINY.ts / 7.0))):
        got = _build(_write(frame, tmp_path / name))
        assert np.array_equal(got[0].item, expected[0].item) and np.array_equal(got[0].offsets, expected[0].offsets)
        for s in ("train", "valid", "test"):
            assert np.array_equal(got[2][s].hist_end, expected[2][s].hist_end)
    report = _build(tmp_path / "iso.csv")[3]["source"]
    assert report["time"].startswith("dates / date-times, stored as seconds")
    assert _build(tmp_path / "iso.csv")[0].time.min() == pd.Timestamp("2024-03-01T12:01:30", tz="UTC").timestamp()
    assert "rank" in _build(tmp_path / "float.csv")[3]["source"]["time"]
    # ISO dates with offsets and fractions: UTC order, microseconds kept
    frame = TINY.assign(ts=["2024-01-01T00:00:00.5+01:00", "2024-01-01", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00",
                            "2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03", "2024-01-04"])
    streams = _build(_write(frame, tmp_path / "tz.csv"))[0]
    assert "microseconds" in _build(tmp_path / "tz.csv")[3]["source"]["time"]
    assert streams.item[:4].tolist() == [1, 3, 1, 4]  # u1: a at 23:00:00.5 the day before


def test_integer_and_string_ids(tmp_path):
    # Integer ids (in text) sort as numbers: 2 < 10; string ids as text: "10" < "2" < "x".
    frame = pd.DataFrame({"uid": [10, 2, 10, 2], "sku": [7, 30, 30, 7], "ts": [1, 2, 3, 4], "cat": [1, 2, 2, 1], "click": [1, 1, 1, 1]})
    s = _build(_write(frame, tmp_path / "int.csv"))
    assert s[2]["train"].user.tolist() == [1, 1, 2, 2] and s[0].item.tolist() == [2, 1, 1, 2]
    assert s[3]["source"]["ids"] == {"user": "integers", "item": "integers"}
    _same(_build(_write(frame, tmp_path / "int.parquet")), s)
    _same(_build(_write(frame.astype({"uid": str, "sku": str}), tmp_path / "text.parquet")), s)
    text = frame.assign(uid=["10", "2", "10", "x"], sku=["007", "30", "30", "7"])  # "007" is not 7
    t = _build(_write(text, tmp_path / "text.csv"))
    assert t[3]["source"]["ids"] == {"user": "strings", "item": "strings"}
    assert t[0].offsets.tolist() == [0, 0, 2, 3, 4]  # "10", "2", "x"
    assert t[0].item.tolist() == [1, 2, 2, 3]  # "007" < "30" < "7"


def test_categories_from_a_column_a_metadata_file_or_none(tmp_path):
    log = _write(TINY.assign(cat=["x", "y", "y", "w", "y", "z", "x", "x", ""]), tmp_path / "log.csv")
    _, item_cate, _, info = _build(log)
    # c's first row says w (a later one y: counted); d's first row says z, its empty one says nothing
    assert item_cate.tolist() == [0, 2, 3, 1, 4] and info["source"]["items_with_several_categories"] == 1
    meta = _write(pd.DataFrame({"sku": ["a", "b", "c", "c", "e"], "genre": ["x", "y", "y", "q", "k"]}), tmp_path / "items.csv")
    no_cat = {k: v for k, v in COLS.items() if k != "category"}
    _, item_cate, _, info = _build(log, columns=no_cat, item_meta_path=str(meta), item_meta_columns={"category": "genre"})
    assert item_cate.tolist() == [0, 1, 2, 2, 0]  # d is not in the file: unknown 0, with a warning
    assert "1 of 4 items are not in the item-metadata file" in info["source"]["warnings"][0]
    _, item_cate, _, info = _build(log, columns=no_cat)
    assert item_cate.tolist() == [0, 1, 1, 1, 1] and "every item is in one category" in info["source"]["notes"][0]
    with pytest.raises(ConfigError, match="set one of them"):
        InteractionsSource(path=str(log), columns=dict(COLS), item_meta_path=str(meta))
    ints = _write(TINY.assign(sku=TINY.sku.map({"a": 1, "b": 2, "c": 3, "d": 4})), tmp_path / "ints.csv")
    text_meta = _write(pd.DataFrame({"sku": ["1", "x", "3", "04"], "category": ["p", "q", "r", "s"]}), tmp_path / "text.csv")
    _, item_cate, _, _ = _build(ints, columns=no_cat, item_meta_path=str(text_meta))  # "1", "3" match 1, 3; "04" is not 4
    assert item_cate.tolist() == [0, 1, 0, 2, 0]
    with pytest.raises(DataError, match="none of the 4 items"):
        _build(log, columns=no_cat, item_meta_path=str(_write(pd.DataFrame({"sku": [1, 2], "category": ["x", "y"]}), tmp_path / "m.parquet")))


# ---- bad input --------------------------------------------------------------------------------


def test_a_missing_column_names_it_and_lists_the_files_columns(tmp_path):
    for name in ("log.csv", "log.parquet", "log.jsonl"):
        path = _write(TINY, tmp_path / name)
        with pytest.raises(DataError, match=re.escape("no column 'when' (dataset.columns.time); the file's columns are: 'uid', 'sku', 'ts', 'cat', 'click'")):
            _build(path, columns={**COLS, "time": "when"})


def test_a_wrong_type_names_the_column_and_a_sample_value(tmp_path):
    cases = [
        ("log.csv", TINY.assign(ts="yesterday"), r"column 'ts' \(dataset.columns.time\) holds 'yesterday' \(line 2, type string\); expected times"),
        ("log.parquet", TINY.assign(sku=np.arange(9) + 0.5), r"column 'sku' \(dataset.columns.item\) holds 0.5 \(row 1, type double\); expected ids"),
        ("log.jsonl", TINY.assign(click="yes"), r"column 'click' \(dataset.columns.label\) holds 'yes' \(line 1, type string\); expected labels: 0 or 1"),
        ("log2.jsonl", TINY.assign(ts=[[1]] * 9), r"column 'ts' \(dataset.columns.time\) holds \[1\]"),
    ]
    for name, frame, message in cases:
        with pytest.raises(DataError, match=message):
            _build(_write(frame, tmp_path / name))


def _text_with(tmp_path, name, line_no, text) -> Path:
    lines = TINY.to_csv(index=False).splitlines()
    lines.insert(line_no - 1, text)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad, reason", [
    ("u9,a,7", "expected 5 comma-separated fields (uid, sku, ts, cat, click), got 3"),
    ("u9,a,soon,x,1", "ts='soon' is not a number"),
    ("u9,,7,x,1", "sku is empty or missing"),
    ("u9,a,7,x,2", "click='2' is not 0 or 1"),
])
def test_malformed_lines_follow_on_bad_line(tmp_path, bad, reason):
    path = _text_with(tmp_path, "log.csv", 4, bad)
    with pytest.raises(DataError, match=re.escape(f"log.csv, line 4: {reason} (set dataset.on_bad_line=skip")):
        _build(path)
    got = _build(path, on_bad_line="skip")
    _same(got, _build(_write(TINY, tmp_path / "clean.csv")))
    assert got[3]["source"]["bad_lines"]["log.csv"]["bad_lines_skipped"] == 1


def test_blank_lines_and_bad_bytes_keep_line_numbers(tmp_path):
    path = tmp_path / "log.csv"
    body = TINY.to_csv(index=False).encode().replace(b"u2,c,2", b"\n\nu2,c\xff,2")
    path.write_bytes(body)
    with pytest.raises(DataError, match=r"log.csv, line 7: sku is not valid UTF-8"):
        _build(path)
    path.write_bytes(TINY.to_csv(index=False).encode().replace(b"u2,c,2,y,1", b"\n\nu2,c,2,y,1,extra\nu2,c,2,y,1"))
    with pytest.raises(DataError, match=r"log.csv, line 7: expected 5"):
        _build(path)
    got = _build(path, on_bad_line="skip")
    _same(got, _build(_write(TINY, tmp_path / "clean.csv")))


def test_bad_json_lines_and_parquet_rows(tmp_path):
    lines = TINY.to_json(orient="records", lines=True).splitlines()
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines[:3] + ["null", "{not json"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"log.jsonl, line 4: not a JSON object"):
        _build(path)
    assert _build(path, on_bad_line="skip")[3]["source"]["bad_lines"]["log.jsonl"]["bad_lines_skipped"] == 2
    mixed = tmp_path / "mixed.jsonl"  # a column of numbers and strings: read as text
    mixed.write_text("\n".join(lines[:8] + [json.dumps({**json.loads(lines[8]), "uid": 7})]) + "\n")
    assert _build(mixed)[0].offsets.tolist() == [0, 0, 1, 4, 7]  # "7" < "u1" < "u2"
    frame = TINY.assign(ts=pd.array([1, 1, 2, None, 3, 3, 4, 4, 5], dtype="Int64"))
    with pytest.raises(DataError, match=r"log.parquet, row 4: ts is empty or missing \(set dataset.on_bad_line=skip to skip such rows\)"):
        _build(_write(frame, tmp_path / "log.parquet"))
    assert _build(tmp_path / "log.parquet", on_bad_line="skip")[3]["source"]["bad_lines"]["log.parquet"]["bad_lines_skipped"] == 1
    with pytest.raises(DataError, match="a JSON array"):
        (tmp_path / "array.json").write_text(TINY.to_json(orient="records"))
        _build(tmp_path / "array.json")


def test_duplicate_rows_are_counted_kept_or_dropped(tmp_path):
    path = _write(pd.concat([TINY, TINY.iloc[[2, 2, 5]]]), tmp_path / "log.csv")
    no_label = {k: v for k, v in COLS.items() if k != "label"}
    kept = _build(path, protocol=DIENProtocol(), columns=no_label)
    assert kept[3]["source"]["duplicate_rows"] == 3 and kept[0].n_behaviours == 12
    assert "3 duplicate rows" in kept[3]["source"]["warnings"][0]
    dropped = _build(path, duplicates="drop")
    _same(dropped, _build(_write(TINY, tmp_path / "clean.csv")))
    assert duplicate_rows([np.array([1, 1, 1, 2]), np.array(["a", "a", "b", "a"], dtype=object)]).tolist() == [False, True, False, False]


def test_config_errors(tmp_path):
    path = _write(TINY, tmp_path / "log.csv")
    with pytest.raises(ConfigError, match="needs a 0/1 label"):
        _build(path, columns={"user": "uid", "item": "sku", "time": "ts"})
    with pytest.raises(ConfigError, match=r"dataset.columns.time is missing"):
        InteractionsSource(path=str(path), columns={"user": "uid", "item": "sku"})
    with pytest.raises(ConfigError, match=r"dataset.columns.score: unknown"):
        InteractionsSource(path=str(path), columns={**COLS, "score": "x"})
    with pytest.raises(ConfigError, match="dataset.format='xls'"):
        InteractionsSource(path=str(path), format="xls")
    with pytest.raises(ConfigError, match="dataset.duplicates"):
        InteractionsSource(path=str(path), duplicates="merge")
    (tmp_path / "log.xlsx").write_text("x")
    with pytest.raises(ConfigError, match="set dataset.format"):
        _build(tmp_path / "log.xlsx")


# ---- config, cache key, CLI -------------------------------------------------------------------


def _compose(overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="prepare", overrides=overrides)


def test_the_cache_key_holds_the_files_identity_not_their_place(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    path = _write(TINY, a / "log.csv")
    cfg = _compose(["dataset=interactions", f"dataset.path={path}", "dataset.columns.user=uid", "dataset.columns.item=sku",
                    "dataset.columns.time=ts", "dataset.columns.category=cat", "dataset.columns.label=click", "dataset/protocol=as_is"])
    assert cfg.dataset.source.columns.user == "uid"

    def key(dataset_cfg):
        source = _construct(dataset_cfg.source, "dataset.source")
        source.locate(tmp_path, dataset_cfg.name)
        return config_hash(content_config(dataset_cfg, source))

    first = key(cfg.dataset)
    shutil.copy2(path, b / "log.csv")
    cfg.dataset.path = str(b / "log.csv")
    assert key(cfg.dataset) == first  # moved: same name, size and time
    os.utime(b / "log.csv", ns=(0, 10**18))
    assert key(cfg.dataset) != first  # touched
    cfg.dataset.columns.category = None
    assert key(cfg.dataset) != key(_compose(["dataset=interactions", f"dataset.path={b / 'log.csv'}"]).dataset)


@pytest.mark.slow
def test_cli_prepare_and_train(tmp_path):
    from test_cli import ctrbench, only_run

    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({
        "uid": rng.integers(0, 80, n), "sku": [f"s{i}" for i in rng.integers(0, 200, n)],
        "ts": (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")).strftime("%Y-%m-%d %H:%M:%S"),
        "click": rng.integers(0, 2, n),
    })
    frame["cat"] = "c" + (frame.sku.str[1:].astype(int) % 9).astype(str)
    _write(frame, tmp_path / "clicks.csv")
    args = ["dataset=interactions", "dataset.path=clicks.csv", "dataset.columns.user=uid", "dataset.columns.item=sku",
            "dataset.columns.time=ts", "dataset.columns.category=cat"]
    prep = ctrbench("prepare", *args, cwd=tmp_path)
    assert "dataset interactions · protocol din" in prep.stdout and "train samples" in prep.stdout
    bad = ctrbench("prepare", *args, "dataset.columns.time=when", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no column 'when' (dataset.columns.time)" in bad.stderr + bad.stdout
    ctrbench("train", *args, "dataset/protocol=as_is", "dataset.columns.label=click", "model=din", "trainer.max_steps=10",
             "trainer.batch_size=64", "trainer.eval_every=5", "trainer.progress=false", "device=cpu", cwd=tmp_path)
    m = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert 0.0 < m["test"]["auc"] < 1.0 and m["test"]["n"] > 0


# ---- the same processed dataset as the dedicated readers, on the real samples ---------------


def _shared(folder: str) -> Path:
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"the real data sample {path} is absent (it lives outside the repo, in ../shared/data/)")
    return path


def test_movielens_latest_small_as_a_csv_equals_the_movielens_reader(tmp_path):
    from ctrbench.data.sources.movielens import MovieLensSource

    raw = _shared("ml-latest-small")
    ratings, movies = pd.read_csv(raw / "ratings.csv"), pd.read_csv(raw / "movies.csv")
    genre = movies.genres.str.split("|").str[0].replace("(no genres listed)", "")
    ratings.assign(genre=ratings.movieId.map(dict(zip(movies.movieId, genre)))).to_csv(tmp_path / "ratings.csv", index=False)
    pd.DataFrame({"movie": movies.movieId, "genre": genre}).to_parquet(tmp_path / "movies.parquet")
    ml = MovieLensSource(release="latest-small", raw_dir=str(raw), download=False)
    ml.locate(tmp_path, "movielens_latest_small")
    protocol = MovieLensProtocol()
    expected = ml.build(protocol)
    cols = {"user": "userId", "item": "movieId", "time": "timestamp", "rating": "rating"}
    got = _build(tmp_path / "ratings.csv", protocol, columns={**cols, "category": "genre"})
    _same(got, expected)
    assert got[3]["source"]["encoded"] == expected[3]["source"]["encoded"]
    with_meta = _build(tmp_path / "ratings.csv", protocol, columns=cols, item_meta_path=str(tmp_path / "movies.parquet"),
                       item_meta_columns={"item": "movie", "category": "genre"})
    _same(with_meta, expected)


def _amazon_export(raw: Path, out: Path) -> None:
    """reviews -> a CSV (reviewerID, asin, unixReviewTime, overall, category), the category being the
    DIN code's categories[-1][-1] of the item's first meta line, read with ast (not our reader)."""
    with gzip.open(raw / "reviews_Digital_Music_5.json.gz") as f:
        reviews = [json.loads(line) for line in f]
    frame = pd.DataFrame({k: [r[k] for r in reviews] for k in ("reviewerID", "asin", "unixReviewTime", "overall")})
    wanted, category = set(frame.asin), {}
    asin_at = re.compile(rb"'asin': '([^']+)'")
    with gzip.open(raw / "meta_Digital_Music.json.gz") as f:
        for line in f:
            m = asin_at.search(line)
            if m and m.group(1).decode() in wanted and m.group(1).decode() not in category:
                paths = ast.literal_eval(line.decode()).get("categories") or []
                category[m.group(1).decode()] = paths[-1][-1] if paths and paths[-1] else None
    frame.assign(category=frame.asin.map(category)).to_csv(out, index=False)


def test_amazon_digital_music_as_a_csv_equals_the_amazon_reader(tmp_path):
    from ctrbench.data.sources.amazon import AmazonSource

    raw = _shared("amazon2014-digital-music")
    _amazon_export(raw, tmp_path / "reviews.csv")
    cols = {"user": "reviewerID", "item": "asin", "time": "unixReviewTime", "rating": "overall", "category": "category"}
    for protocol in (DINProtocol(), DIENProtocol()):
        amazon = AmazonSource(category="Digital_Music", raw_dir=str(raw), download=False)
        amazon.locate(tmp_path, "amazon")
        expected = amazon.build(protocol)
        got = _build(tmp_path / "reviews.csv", protocol, columns=cols)
        _same(got, expected)
        assert got[3]["source"]["encoded"] == expected[3]["source"]["encoded"]


def test_taobao_sample_as_a_csv_equals_the_taobao_reader(tmp_path):
    from ctrbench.data.sources.taobao import TaobaoSource

    raw = _shared("taobao-userbehavior")
    names = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    pd.read_csv(raw / "UserBehavior.csv", header=None, names=names).to_csv(tmp_path / "behaviours.csv", index=False)
    taobao = TaobaoSource(raw_dir=str(raw), download=False)
    taobao.locate(tmp_path, "taobao")
    expected = taobao.build(DINProtocol())
    cols = {"user": "user_id", "item": "item_id", "time": "timestamp", "category": "category_id"}
    got = _build(tmp_path / "behaviours.csv", DINProtocol(), columns=cols)
    _same(got, expected)
    assert got[3]["source"]["encoded"] == expected[3]["source"]["encoded"]


# ---- the guide's section (docs/extending.md) ---------------------------------------------------


def test_the_guides_example_runs(tmp_path, monkeypatch):
    """The section's pandas script writes the log; its prepare command builds the dataset (in this
    process, for speed); its train commands compose and pass the config checks."""
    import shlex

    from ctrbench.config_checks import check_train
    from ctrbench.data.prepare import prepare

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text(encoding="utf-8")
    section = next(p for p in re.split(r"(?m)^(?=## )", text) if p.startswith("## Your data: dataset=interactions"))
    blocks = {lang: body for lang, body in re.findall(r"(?ms)^```(\w*)[^\n]*\n(.*?)^```", section)}
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks["python"], "make_clicks.py", "exec"), {"__name__": "__main__"})  # noqa: S102 - the guide's own script
    commands = [shlex.split(line)[1:] for line in blocks["bash"].splitlines() if line.startswith("ctrbench ")]
    assert [c[0] for c in commands] == ["prepare", "train", "train"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=commands[0][1:])
        path, built = prepare(cfg.dataset, tmp_path / "data")
        assert built and json.loads((path / "manifest.json").read_text())["vocab"]["n_cates"] == 21
        for command in commands[1:]:
            overrides = [o for o in command[1:] if o != "-m" and not o.startswith("seed=")]
            check_train(compose(config_name="train", overrides=overrides))


def test_the_statistics_table_says_when_every_item_is_in_one_category(tmp_path):
    from rich.console import Console

    from ctrbench.data.prepare import prepare
    from ctrbench.data.store import read_manifest
    from ctrbench.report.dataset_stats import dataset_table

    path = _write(pd.concat([TINY, TINY.iloc[[0]]]), tmp_path / "log.csv")
    cfg = _compose(["dataset=interactions", f"dataset.path={path}", "dataset.columns.user=uid", "dataset.columns.item=sku",
                    "dataset.columns.time=ts", "dataset.columns.label=click", "dataset/protocol=as_is"])
    folder, _ = prepare(cfg.dataset, tmp_path / "data")
    console = Console(record=True, width=250)
    console.print(dataset_table(read_manifest(folder), folder, True, None))
    text = " ".join(console.export_text().split())
    assert "every item is in one category" in text and "1 duplicate rows" in text
