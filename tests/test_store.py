"""Processed datasets: cached by a hash of the config, written atomically, checked on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctrbench.data import store
from ctrbench.data.prepare import content_config, load_dataset, prepare
from ctrbench.errors import DataError

from conftest import tiny_dataset_cfg


def test_round_trip_and_manifest(tmp_path):
    cfg = tiny_dataset_cfg()
    path, built = prepare(cfg, tmp_path)
    assert built and path.parent == tmp_path / "processed"
    m = json.loads((path / "manifest.json").read_text())
    assert m["rows"]["train"] > 0 and set(m["checksums"]) >= {"behaviours.parquet", "train.parquet", "test.parquet"}
    assert m["oracle"]["test"]["gauc"] > 0.5 and m["vocab"]["n_items"] == 201
    ds = store.load(path)
    again = load_dataset(cfg, tmp_path)
    for split in ("train", "valid", "test"):
        for col, v in ds.splits[split].columns().items():
            np.testing.assert_array_equal(v, again.splits[split].columns()[col])
    # the CSR streams come back exactly
    assert ds.streams.offsets[-1] == ds.streams.n_behaviours == m["rows"]["behaviours"]


def test_cache_is_reused_and_keyed_by_config(tmp_path):
    a, built_a = prepare(tiny_dataset_cfg(), tmp_path)
    b, built_b = prepare(tiny_dataset_cfg(), tmp_path)
    assert a == b and built_a and not built_b
    c, built_c = prepare(tiny_dataset_cfg(seed=5), tmp_path)
    assert c != a and built_c
    # max_len only changes what the Batcher reads: same cache
    cfg = tiny_dataset_cfg()
    cfg.max_len = 3
    assert prepare(cfg, tmp_path)[0] == a


def test_interrupted_prepare_leaves_nothing_trusted(tmp_path, monkeypatch):
    cfg = tiny_dataset_cfg(seed=11)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "atomic_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, tmp_path)
    monkeypatch.undo()
    processed = tmp_path / "processed"
    # only the (empty) lock file may remain: no dataset folder, no temporary folder
    assert not processed.exists() or [p for p in processed.iterdir() if not p.name.endswith(".lock")] == []
    path, built = prepare(cfg, tmp_path)
    assert built and (path / "manifest.json").exists()


def test_folder_without_manifest_is_not_trusted(tmp_path):
    cfg = tiny_dataset_cfg(seed=12)
    target = store.dataset_dir(tmp_path, "synthetic", content_config(cfg))
    target.mkdir(parents=True)
    (target / "train.parquet").write_bytes(b"half written")
    path, built = prepare(cfg, tmp_path)  # rebuilt, not trusted
    assert built
    with pytest.raises(DataError, match="manifest.json is missing"):
        store.load(tmp_path / "processed" / "nothing-here")


def test_corrupted_file_is_detected(tmp_path):
    path, _ = prepare(tiny_dataset_cfg(seed=13), tmp_path)
    f = path / "test.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        store.load(path)


def test_force_rebuilds(tmp_path):
    cfg = tiny_dataset_cfg(seed=14)
    path, _ = prepare(cfg, tmp_path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        store.load(path)
    path2, built = prepare(cfg, tmp_path, force=True)
    assert built and path2 == path and store.load(path)


def _prepare_in_process(args):
    data_dir, = args
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from conftest import tiny_dataset_cfg as cfg

    path, built = prepare(cfg(), data_dir)
    return str(path), built


def test_concurrent_prepares_build_once(tmp_path):
    """Two processes preparing the same dataset at once: one builds it (under the file lock), the
    other waits and reuses it; one processed folder, no temporary leftovers."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_prepare_in_process, [(str(tmp_path),), (str(tmp_path),)])
    assert len({p for p, _ in results}) == 1
    assert sorted(b for _, b in results) == [False, True]
    folders = [p for p in (tmp_path / "processed").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and not [p for p in (tmp_path / "processed").iterdir() if ".tmp-" in p.name]
