"""Taobao UserBehavior reader: behaviour filter, categories from the file, out-of-period times,
bad lines, configuration. Fixtures are written into tmp_path; the real-sample test reads
../shared/data/taobao-userbehavior when it is there (skipped otherwise)."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.encode import encode
from ctrbench.data.sources.taobao import PERIOD, TaobaoSource
from ctrbench.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

T = PERIOD[0] + 1000  # a time inside the documented period
ROWS = f"""1,100,7,pv,{T}
1,101,8,buy,{T + 5}
2,100,7,cart,{T + 1}
2,102,9,fav,{T + 2}
1,100,99,pv,{T + 9}
3,103,8,pv,-10
"""  # item 100 seen again with another category (99): the first (7) wins; user 3 has a negative time


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read(raw_dir: Path, tmp_path: Path, **kw):
    s = TaobaoSource(raw_dir=str(raw_dir), download=False, **kw)
    inputs = s.locate(tmp_path / "data", "taobao")
    return s.read(inputs)


def test_all_behaviours_and_categories_from_the_file(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", ROWS)
    events, meta, report = read(tmp_path / "raw", tmp_path)
    assert events.user.tolist() == [1, 1, 2, 2, 1, 3]
    assert events.item.tolist() == [100, 101, 100, 102, 100, 103]
    assert events.time.dtype == np.int64 and events.rating is None
    assert dict(zip(meta.item.tolist(), meta.cate.tolist())) == {100: 7, 101: 8, 102: 9, 103: 8}
    assert report["items_with_several_categories"] == 1
    assert report["rows_by_behavior"]["pv"] == {"kept": 3, "dropped": 0}
    # the negative timestamp is kept and counted, not dropped silently
    oop = report["out_of_period"]
    assert oop["rows"] == 1 and oop["negative_timestamps"] == 1 and oop["action"] == "kept" and oop["min_timestamp"] == -10
    _, item_cate, encoded = encode(events, meta)
    assert encoded["categories"] == 3 and encoded["items_without_category"] == 0


def test_behaviour_filter(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", ROWS)
    events, meta, report = read(tmp_path / "raw", tmp_path, behaviors=["buy", "cart"])
    assert events.item.tolist() == [101, 100]
    assert report["behaviors_kept"] == ["buy", "cart"]
    assert report["rows_by_behavior"] == {
        "pv": {"kept": 0, "dropped": 3}, "buy": {"kept": 1, "dropped": 0},
        "cart": {"kept": 1, "dropped": 0}, "fav": {"kept": 0, "dropped": 1},
    }
    # categories still come from every row of the file
    assert 102 in meta.item.tolist()


def test_out_of_period_rows_can_be_dropped(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", ROWS)
    events, _, report = read(tmp_path / "raw", tmp_path, keep_out_of_period=False)
    assert 3 not in events.user.tolist() and report["out_of_period"]["action"] == "dropped"
    assert report["rows_by_behavior"]["pv"] == {"kept": 2, "dropped": 1}


def test_filter_leaving_nothing_is_an_error(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", "1,100,7,pv,1511600000\n")
    with pytest.raises(DataError, match="no behaviour is left"):
        read(tmp_path / "raw", tmp_path, behaviors=["buy"])


@pytest.mark.parametrize("behaviors, match", [
    (["click"], "unknown behaviour type 'click'"),
    ("buy", "expected null or a list"),
    ([], "is empty"),
])
def test_bad_behaviour_config(behaviors, match):
    with pytest.raises(ConfigError, match=match):
        TaobaoSource(behaviors=behaviors, download=False)


def test_bad_lines_name_the_line_or_are_skipped(tmp_path):
    text = ROWS + f"4,104,8,click,{T}\n4,105,8,pv\n4,abc,8,pv,{T}\n\n5,106,8,pv,{T}\n"
    write(tmp_path / "raw" / "UserBehavior.csv", text)
    with pytest.raises(DataError, match=r"UserBehavior\.csv, line 7: behavior_type='click' is not one of pv, buy, cart, fav"):
        read(tmp_path / "raw", tmp_path)
    events, _, report = read(tmp_path / "raw", tmp_path, on_bad_line="skip")
    assert events.user.tolist() == [1, 1, 2, 2, 1, 3, 5]
    bad = report["bad_lines"]["behaviors"]
    assert bad["bad_lines_skipped"] == 3
    assert [e.split(":")[0] for e in bad["examples"]] == ["line 7", "line 8", "line 9"]
    assert "expected 5" in bad["examples"][1] and "item_id='abc' is not an integer" in bad["examples"][2]


def test_header_line_is_a_bad_line(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", "user_id,item_id,category_id,behavior_type,timestamp\n" + ROWS)
    with pytest.raises(DataError, match=r"line 1: user_id='user_id' is not an integer"):
        read(tmp_path / "raw", tmp_path)


def test_gz_zip_and_subfolder(tmp_path):
    raw = tmp_path / "gz" / "sub"
    raw.mkdir(parents=True)
    with gzip.open(raw / "UserBehavior.csv.gz", "wt") as f:
        f.write(ROWS)
    events, _, _ = read(tmp_path / "gz", tmp_path)
    assert len(events) == 6

    raw = tmp_path / "zip"
    raw.mkdir()
    with zipfile.ZipFile(raw / "UserBehavior.csv.zip", "w") as z:
        z.writestr("UserBehavior.csv", ROWS)
    events, _, _ = read(raw, tmp_path)
    assert len(events) == 6 and (raw / "UserBehavior.csv").is_file()


def test_missing_file_points_to_tianchi(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"(?s)UserBehavior\.csv.*tianchi\.aliyun\.com/dataset/649 \(manual download\)"):
        read(tmp_path / "raw", tmp_path)


def test_empty_file(tmp_path):
    write(tmp_path / "raw" / "UserBehavior.csv", "")
    with pytest.raises(DataError, match="is empty"):
        read(tmp_path / "raw", tmp_path)


def test_real_taobao_sample(tmp_path):
    d = SHARED_DATA / "taobao-userbehavior"
    if not (d / "UserBehavior.csv").exists():
        pytest.skip(f"the real Taobao sample is not at {d}")
    events, meta, report = read(d, tmp_path)
    assert len(events) == 84_475 and np.unique(events.user).size == 815
    assert sum(v["kept"] for v in report["rows_by_behavior"].values()) == 84_475
    assert report["bad_lines"]["behaviors"]["bad_lines_skipped"] == 0
    assert report["out_of_period"]["rows"] > 0  # the real file has some; kept and counted
    _, _, encoded = encode(events, meta)
    assert encoded["items_without_category"] == 0 and encoded["categories"] == 2_914
    buys, _, _ = read(d, tmp_path, behaviors=["buy"])
    assert len(buys) == report["rows_by_behavior"]["buy"]["kept"]
