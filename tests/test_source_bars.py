"""BARS AmazonElectronics_x1 import: streams from the longest history, hist_end, the validation
carve-out, the prefix check, bad input, the as_is protocol. A tiny hand-made train/test pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctrbench.data.protocols import DINProtocol
from ctrbench.data.sources.bars import AsIsProtocol, BarsSource
from ctrbench.errors import ConfigError, DataError

HEADER = "label,user_id,item_id,cate_id,item_history,cate_history\n"
# user 10: stream 5,7,9 (cates 1,1,2); train positions 1 and 2, test position 3.
# user 3: stream 7,2 (cates 1,3); one train position (stays in train), test position 2.
# Raw ids are 0-based as in the DIN data: item 0 / cate 0 / user 0 are real ids.
TRAIN = HEADER + """1,10,7,1,5,1
0,3,6,3,7,1
0,10,3,2,5,1
1,10,9,2,5^7,1^1
1,3,2,3,7,1
0,10,4,3,5^7,1^1
1,0,7,1,0,0
0,0,8,2,0,0
"""
TEST = HEADER + """1,10,8,2,5^7^9,1^1^2
0,10,2,3,5^7^9,1^1^2
1,3,5,1,7^2,1^3
0,3,9,2,7^2,1^3
1,0,5,1,0^7,0^1
0,0,6,3,0^7,0^1
"""


def write_pair(raw: Path, train: str = TRAIN, test: str = TEST) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "train.csv").write_text(train)
    (raw / "test.csv").write_text(test)
    return raw


def source(raw: Path, tmp_path: Path, **kw) -> BarsSource:
    s = BarsSource(raw_dir=str(raw), download=False, **kw)
    s.locate(tmp_path / "data", "amazon_electronics_x1")
    return s


def build(raw: Path, tmp_path: Path, **kw):
    return source(raw, tmp_path, **kw).build(AsIsProtocol())


def test_streams_ids_and_splits(tmp_path):
    streams, item_cate, splits, info = build(write_pair(tmp_path / "raw"), tmp_path)
    # dense ids in sorted raw order: users 0,3,10 -> 1,2,3; items 0,2,3,...,9 -> 1..9; cates 0..3 -> 1..4
    assert streams.offsets.tolist() == [0, 0, 2, 4, 7]
    assert streams.item.tolist() == [1, 7, 7, 2, 5, 7, 9]  # user 0: 0,7; user 3: 7,2; user 10: 5,7,9
    assert streams.cate.tolist() == [1, 2, 2, 4, 2, 2, 3]
    assert streams.time.tolist() == [0, 1, 0, 1, 0, 1, 2]
    assert item_cate.tolist() == [0, 1, 4, 3, 4, 2, 4, 2, 3, 3]
    tr, va, te = splits["train"], splits["valid"], splits["test"]
    # test = test.csv, as-is (file order), hist_end = history length
    assert te.user.tolist() == [3, 3, 2, 2, 1, 1] and te.hist_end.tolist() == [3, 3, 2, 2, 2, 2]
    assert te.label.tolist() == [1, 0, 1, 0, 1, 0] and te.label.dtype == np.float32
    assert te.item.tolist() == [8, 2, 5, 9, 5, 6]
    # valid = user 10's last training position (positive and negative); users 3 and 0 have one
    # training position only and keep it in train
    assert va.user.tolist() == [3, 3] and va.hist_end.tolist() == [2, 2] and va.item.tolist() == [9, 4]
    assert tr.user.tolist() == [3, 2, 3, 2, 1, 1] and tr.hist_end.tolist() == [1] * 6
    assert (tr.cate == item_cate[tr.item]).all()
    # every sample's history is a prefix of its user's stream (what the store relies on)
    assert (te.hist_end <= np.diff(streams.offsets)[te.user]).all()
    assert info["protocol"] == "as_is" and info["rows"] == {"train": 6, "valid": 2, "test": 6}
    src = info["source"]
    assert src["rows"] == {"train.csv": 8, "test.csv": 6} and src["item_category_conflicts"] == 0
    assert src["encoded"] == {"behaviours": 7, "users": 3, "items": 9, "categories": 4, "items_without_category": 0}
    assert src["md5"]["train.csv"]["matches_published"] is False


def test_empty_history_rows(tmp_path):
    train = HEADER + "1,1,5,1,,\n0,1,6,2,,\n1,1,6,2,5,1\n0,1,7,1,5,1\n"
    test = HEADER + "1,1,7,1,5^6,1^2\n0,1,8,2,5^6,1^2\n"
    streams, _, splits, _ = build(write_pair(tmp_path / "raw", train, test), tmp_path)
    assert streams.offsets.tolist() == [0, 0, 2]
    assert splits["train"].hist_end.tolist() == [0, 0] and splits["valid"].hist_end.tolist() == [1, 1]


def test_read_gives_the_streams_as_raw_events(tmp_path):
    s = source(write_pair(tmp_path / "raw"), tmp_path)
    events, meta, _ = s.read(s._inputs)
    assert events.user.tolist() == [0, 0, 3, 3, 10, 10, 10]
    assert events.item.tolist() == [0, 7, 7, 2, 5, 7, 9]
    assert dict(zip(meta.item.tolist(), meta.cate.tolist()))[9] == 2


def test_detection_in_a_subfolder(tmp_path):
    write_pair(tmp_path / "raw" / "AmazonElectronics_x1")
    s = source(tmp_path / "raw", tmp_path)
    assert s._inputs["train"] == tmp_path / "raw" / "AmazonElectronics_x1" / "train.csv"


def test_prefix_violation_names_file_and_line(tmp_path):
    bad = TRAIN.replace("1,10,9,2,5^7,1^1", "1,10,9,2,5^8,1^1")  # line 5: 5,8 is not a prefix of 5,7,9
    raw = write_pair(tmp_path / "raw", train=bad)
    with pytest.raises(DataError, match=r"train\.csv, line 5: the history of user 10 is not a prefix"):
        build(raw, tmp_path)
    bad = TEST.replace("0,3,9,2,7^2,1^3", "0,3,9,2,7^2,1^2")  # a category differs
    raw = write_pair(tmp_path / "raw2", test=bad)
    with pytest.raises(DataError, match=r"test\.csv, line (4|5): the history of user 3"):
        build(raw, tmp_path)


def test_wrong_header_lists_expected_columns(tmp_path):
    raw = write_pair(tmp_path / "raw", train=TRAIN.replace("item_history", "hist"))
    with pytest.raises(DataError, match=r"train\.csv: the header .*label,user_id,item_id,cate_id,item_history,cate_history"):
        build(raw, tmp_path)


def test_bad_label_and_mismatched_histories(tmp_path):
    bad = TRAIN + "2,10,4,3,5,1\n1,10,4,3,5^7,1\n1,10,4,3,5^x,1^1\n"
    raw = write_pair(tmp_path / "raw", train=bad)
    with pytest.raises(DataError, match=r"train\.csv, line 10: label=2 is not 0 or 1"):
        build(raw, tmp_path)
    _, _, splits, info = build(raw, tmp_path, on_bad_line="skip")
    bad_lines = info["source"]["bad_lines"]["train"]
    assert bad_lines["bad_lines_skipped"] == 3
    assert "line 11: item_history has 2 ids but cate_history has 1" in bad_lines["examples"][1]
    assert "line 12: item_history has an element 'x'" in bad_lines["examples"][2]
    assert len(splits["train"]) + len(splits["valid"]) == 8


def test_non_integer_id_names_line(tmp_path):
    raw = write_pair(tmp_path / "raw", test=TEST + "1,u7,5,1,7,1\n")
    with pytest.raises(DataError, match=r"test\.csv, line 8: user_id='u7' is not an integer"):
        build(raw, tmp_path)


def test_protocols(tmp_path):
    s = source(write_pair(tmp_path / "raw"), tmp_path)
    with pytest.raises(ConfigError, match="imported as-is.*not 'din'"):
        s.build(DINProtocol())
    with pytest.raises(ConfigError, match="only works with the BARS source"):
        AsIsProtocol().build(None, None)
    with pytest.raises(ConfigError, match="dataset.protocol.valid='random'"):
        AsIsProtocol(valid="random")


def test_missing_files_point_to_the_page(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"(?s)train\.csv.*reczoo/Datasets.*manual download"):
        source(tmp_path / "raw", tmp_path)


# Rows with unrelated histories (the peers' speed-benchmark files): user 10 has two events whose
# histories are not prefixes of one another; each event's positive and negative share a history,
# and the negatives come in a block after the positives (not next to their positive).
UNRELATED_TRAIN = HEADER + """1,10,7,1,5^6,1^1
1,10,9,2,8,2
1,3,2,3,7,1
0,10,4,3,5^6,1^1
0,10,3,2,8,2
0,3,6,3,7,1
"""
UNRELATED_TEST = HEADER + """1,10,8,2,9^5^6,2^1^1
0,10,2,3,9^5^6,2^1^1
1,3,5,1,,
0,3,9,2,,
"""


def test_histories_rows_keeps_each_rows_own_history_and_shares_equal_ones(tmp_path):
    from ctrbench.data.batches import Batcher
    from ctrbench.data.schema import ProcessedDataset, Vocab

    raw = write_pair(tmp_path / "raw", UNRELATED_TRAIN, UNRELATED_TEST)
    with pytest.raises(DataError, match="histories=rows"):
        build(raw, tmp_path)  # the default layout verifies prefixes
    src = source(raw, tmp_path, histories="rows")
    streams, item_cate, splits, info = src.build(AsIsProtocol(valid="none"))
    assert len(splits["valid"]) == 0 and len(splits["train"]) == 6
    # distinct histories: user 3: [7]; user 10: [5,6], [8], [9,5,6]  ->  7 behaviours, not 12
    assert streams.n_behaviours == 1 + 2 + 1 + 3
    ds = ProcessedDataset(
        "t", Vocab(len(streams.offsets) - 1, len(item_cate), int(item_cate.max()) + 1), streams, item_cate, splits
    )
    items = {}  # raw item id -> dense id: sorted raw order 2,3,4,5,6,7,8,9 -> 1..8
    for raw_id, dense in zip([2, 3, 4, 5, 6, 7, 8, 9], range(1, 9)):
        items[raw_id] = dense
    for split, expected in (
        ("train", [[5, 6], [8], [7], [5, 6], [8], [7]]),
        ("test", [[9, 5, 6], [9, 5, 6], [], []]),
    ):
        b = Batcher(ds, split, 16, max_len=10).gather(torch.arange(len(splits[split])))
        got = [[int(i) for i, m in zip(row, mask) if m] for row, mask in zip(b.hist_item, b.hist_mask)]
        assert got == [[items[i] for i in h] for h in expected]
    # max_len keeps the most recent behaviours of the row's own window
    b = Batcher(ds, "test", 16, max_len=2).gather(torch.arange(2))
    assert [[int(i) for i, m in zip(row, mask) if m] for row, mask in zip(b.hist_item, b.hist_mask)] == [[items[5], items[6]]] * 2


def test_histories_layout_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="dataset.source.histories"):
        BarsSource(raw_dir=str(tmp_path), download=False, histories="nope")
    with pytest.raises(ConfigError, match="dataset.protocol.valid"):
        AsIsProtocol(valid="sometimes")
