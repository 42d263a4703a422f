"""`ctrbench predict`: a split of the run's own data scores exactly as `ctrbench evaluate` scores it;
rows from a file (CSV, Parquet, JSON lines; processed or raw ids) score exactly as the same samples
in evaluation (one chunk: bit for bit; many chunks: to float rounding), in input order; raw ids
map through the rebuilt vocabulary, unknown ids map to 0 and are counted; bad input is one line
and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

from ctrbench.errors import ConfigError, DataError
from ctrbench.serve.predict import (
    Counts,
    Rows,
    ScoringRun,
    Vocabulary,
    encode_table,
    load_run,
    predict_file,
    rows_batcher,
    rows_logits,
    split_logits,
    vocabulary,
    with_small_ends,
)

FAST = ["+debug=fast", "device=cpu", "device.threads=1"]


def ctrbench(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(cwd / "data")
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "ctrbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctrbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict")


_RUNS: dict[str, Path] = {}


def trained(work: Path, model: str) -> Path:
    """A fast run of ``model`` (trained once per module)."""
    if model not in _RUNS:
        ctrbench("train", *FAST, f"model={model}", f"hydra.run.dir=outputs/{model}", cwd=work)
        _RUNS[model] = work / "outputs" / model
    return _RUNS[model]


@pytest.fixture(scope="module")
def din_run(work) -> Path:
    return trained(work, "din")


@pytest.fixture(scope="module")
def din(work, din_run) -> ScoringRun:
    torch.set_num_threads(1)
    return load_run(din_run, work / "data")


def evaluate_logits_of(run: ScoringRun, split: str) -> np.ndarray:
    """The logits `ctrbench evaluate` computes (commands.run_evaluate's steps, spelled out)."""
    from ctrbench.data.batches import eval_max_len
    from ctrbench.train.evaluate import eval_batcher, predict_logits

    max_len = int(run.cfg.dataset.max_len)
    cut = max_len if split == "train" else eval_max_len(run.dataset, run.cfg.dataset.get("eval_max_len", max_len))
    return predict_logits(run.model, eval_batcher(run.dataset, split, None, run.model, torch.device("cpu"), cut), torch.device("cpu"), run.reg)


def split_rows(run: ScoringRun, split: str, max_len: int | None = None) -> pd.DataFrame:
    """The split's samples as request rows (processed ids): user, item, cate, the history the model
    sees as lists, label."""
    ds = run.dataset
    s, st = ds.splits[split], ds.streams
    cut = max_len or run.cut(split)
    start = st.offsets[s.user] + np.maximum(s.history_start(), s.hist_end - cut)
    end = st.offsets[s.user] + s.hist_end
    return pd.DataFrame({
        "user": s.user, "item": s.item, "cate": s.cate,
        "hist_item": [st.item[a:b].tolist() for a, b in zip(start, end)],
        "hist_cate": [st.cate[a:b].tolist() for a, b in zip(start, end)],
        "label": s.label.astype(np.int64),
    })


def write_rows(df: pd.DataFrame, path: Path, sep: str = "|") -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    elif path.suffix == ".csv":
        out = df.copy()
        for c in ("hist_item", "hist_cate"):
            if c in out:
                out[c] = out[c].map(lambda xs: sep.join(str(x) for x in xs))
        out.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False)
    return pd.read_json(path, lines=True)


# ---- a split of the run's own data ----------------------------------------------------------------
def test_predict_split_is_evaluate_bit_for_bit(din_run, work):
    """The CLI's split=test output: logits equal evaluate's computation exactly, and its metrics equal
    those `ctrbench evaluate` writes."""
    ctrbench("evaluate", str(din_run), "split=test", *FAST[1:], cwd=work)
    proc = ctrbench("predict", str(din_run), "split=test", *FAST[1:], cwd=work)
    assert "wrote" in proc.stdout
    out = pq.read_table(din_run / "predict_test.parquet").to_pandas()
    run = load_run(din_run, work / "data")
    want = evaluate_logits_of(run, "test")
    s = run.dataset.splits["test"]
    assert list(out.columns[:5]) == ["user", "item", "cate", "label", "hist_end"] and list(out.columns[-2:]) == ["score", "logit"]
    assert np.array_equal(out["user"].to_numpy(), s.user) and np.array_equal(out["item"].to_numpy(), s.item)
    assert out["logit"].dtype == np.float32 and np.array_equal(out["logit"].to_numpy(), want)
    assert np.allclose(out["score"].to_numpy(), 1 / (1 + np.exp(-want.astype(np.float64))), rtol=1e-12, atol=0)
    from ctrbench.metrics import evaluate_logits

    ev = json.loads((din_run / "eval_test.json").read_text())
    mine = evaluate_logits(out["user"].to_numpy(), out["label"].to_numpy(), out["logit"].to_numpy())
    for k in ("auc", "gauc", "logloss"):
        assert mine[k] == ev[k], k


@pytest.mark.parametrize("model", ["din", "dien", "base"])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_split_and_file_rows_score_as_evaluate(model, split, work, tmp_path):
    """The same samples as rows of a file (processed ids), scored in one chunk, give evaluate's logits
    bit for bit; cut into small chunks, the same to float rounding."""
    run = load_run(trained(work, model), work / "data")
    want = evaluate_logits_of(run, split)
    assert np.array_equal(split_logits(run, split), want)
    src = write_rows(split_rows(run, split), tmp_path / "rows.parquet")
    out = tmp_path / "scored.parquet"
    summary = predict_file(run, src, out, ids="processed")
    got = pq.read_table(out).column("logit").to_numpy()
    assert summary["rows"] == len(want) and summary["unknown"]["item"] == 0
    assert np.array_equal(got, want)
    predict_file(run, src, out, ids="processed", chunk_rows=37)
    np.testing.assert_allclose(pq.read_table(out).column("logit").to_numpy(), want, rtol=1e-5, atol=1e-5)


# ---- rows from files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_format_round_trips_rows_and_scores(din, tmp_path, suffix):
    df = split_rows(din, "test").head(120).copy()
    df["note"] = [f"r{i}" for i in range(len(df))]  # a column of the user's own, carried to the output
    df = df.drop(columns=["cate", "hist_cate"])  # categories from the dataset's item -> category map
    src = write_rows(df, tmp_path / f"rows{suffix}")
    out = tmp_path / f"out{suffix}"
    summary = predict_file(din, src, out, ids="raw")  # synthetic data: its raw ids are its ids
    got = read_output(out)
    assert list(got.columns) == [*df.columns, "score", "logit"]
    assert got["note"].tolist() == df["note"].tolist() and got["label"].tolist() == df["label"].tolist()
    want = evaluate_logits_of(din, "test")[:120]
    np.testing.assert_allclose(got["logit"].to_numpy(dtype=np.float64), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["score"].to_numpy(), 1 / (1 + np.exp(-want.astype(np.float64))), rtol=1e-5)
    assert summary["rows"] == 120 and summary["behaviours"] == sum(map(len, df["hist_item"]))
    if suffix == ".csv":  # lists written back as they came
        assert got["hist_item"].tolist() == ["|".join(map(str, h)) for h in df["hist_item"]]


def test_parquet_output_leaves_only_the_scores_without_dictionaries(din, tmp_path):
    df = split_rows(din, "test").head(300).copy()
    df["label"] = df["label"].astype(np.float32)  # a float column of the input's own
    out = tmp_path / "out.parquet"
    predict_file(din, write_rows(df, tmp_path / "rows.parquet"), out, ids="processed", chunk_rows=100)
    meta = pq.read_metadata(out)
    assert meta.num_row_groups > 1
    for g in range(meta.num_row_groups):
        chunks = {meta.row_group(g).column(i).path_in_schema: meta.row_group(g).column(i) for i in range(meta.num_columns)}
        assert not chunks["score"].has_dictionary_page and not chunks["logit"].has_dictionary_page
        assert chunks["label"].has_dictionary_page and chunks["hist_item.list.element"].has_dictionary_page


def test_empty_histories_unknown_ids_and_chunking(din, tmp_path):
    """An empty history, unknown (out-of-range) ids and a null history score; unknowns count per
    field; chunks of 2 rows give the one-chunk scores in input order."""
    n_items = din.dataset.vocab.n_items
    rows = pd.DataFrame({
        "user": [1, 2, 3, 10**9, 5],
        "item": [5, n_items + 7, 9, 4, 0],
        "hist_item": ["3|4|5", "", f"7|{n_items + 1}|8", "2", "11 | 12"],
    })
    src = tmp_path / "rows.csv"
    rows.to_csv(src, index=False)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    s1 = predict_file(din, src, one, ids="processed")
    s2 = predict_file(din, src, two, ids="processed", chunk_rows=2)
    assert s1["unknown"] == {"user": 1, "item": 2, "cate": 0, "hist_item": 1, "hist_cate": 0}
    assert s1["behaviours"] == 9 and s1["rows"] == 5 and s1 == {**s2, "seconds": s1["seconds"], "rows_per_s": s1["rows_per_s"], "output": s1["output"]}
    a, b = read_output(one), read_output(two)
    assert np.isfinite(a["logit"]).all() and a["hist_item"].tolist() == ["3|4|5", "", f"7|{n_items + 1}|8", "2", "11 | 12"]
    np.testing.assert_allclose(a["logit"], b["logit"], rtol=1e-6, atol=1e-6)
    # an unknown id scores as the id 0 given explicitly
    zero = rows.assign(item=[5, 0, 9, 4, 0], hist_item=["3|4|5", "", "7|0|8", "2", "11|12"])
    zero.to_csv(tmp_path / "zero.csv", index=False)
    predict_file(din, tmp_path / "zero.csv", tmp_path / "zero_out.csv", ids="processed")
    np.testing.assert_allclose(read_output(tmp_path / "zero_out.csv")["logit"], a["logit"], rtol=1e-6, atol=1e-6)


def test_large_inputs_get_small_chunks_at_both_ends_in_order():
    """The first table is cut into 4096, 16384, ... rows and the last one's end likewise in
    reverse; a single table stays whole; every row once, in input order."""
    def tables(sizes):
        start = 0
        for n in sizes:
            yield pa.table({"a": np.arange(start, start + n)})
            start += n

    for sizes, want in [
        ([65536, 65536, 1000], [4096, 16384, 45056, 65536, 1000]),
        ([65536, 65536], [4096, 16384, 45056, 45056, 16384, 4096]),
        ([65536, 30000], [4096, 16384, 45056, 9520, 16384, 4096]),
        ([65536], [65536]), ([5000], [5000]), ([3, 3, 3], [3, 3, 3]), ([], []),
    ]:
        out = list(with_small_ends(tables(sizes), 4096))
        assert [t.num_rows for t in out] == want, sizes
        assert np.array_equal(np.concatenate([t.column("a").to_numpy() for t in out] or [np.zeros(0)]), np.arange(sum(sizes)))


def _left_behind(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_a_failure_in_a_later_chunk_leaves_no_output(din, tmp_path, monkeypatch):
    """A bad row in a later chunk, an output that cannot take a later chunk, and a model that fails
    mid-file: the error is raised, no output or temporary file is left, and the I/O thread ends."""
    import threading

    rows = split_rows(din, "test").head(9).reset_index(drop=True)
    bad = rows.copy()
    bad.at[6, "hist_cate"] = [*bad.at[6, "hist_cate"], 1]
    src = write_rows(bad, tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"row 7: hist_cate has \d+ entries and hist_item"):
        predict_file(din, src, tmp_path / "out.parquet", ids="processed", chunk_rows=2)
    assert _left_behind(tmp_path, {"bad.csv"}) == []
    # a column whose type changes in a later chunk (JSON lines infer types per chunk)
    lines = [json.dumps({"user": 1, "item": 2, "hist_item": [3], "note": 5 if i < 4 else "x"}) for i in range(8)]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="change type between chunks"):
        predict_file(din, tmp_path / "mixed.jsonl", tmp_path / "out.parquet", ids="processed", chunk_rows=2)
    assert _left_behind(tmp_path, {"bad.csv", "mixed.jsonl"}) == []
    # the model fails on its third batch (the I/O thread still reading), then on its last (the I/O
    # thread waiting for the scores to write)
    good = write_rows(rows, tmp_path / "good.parquet")
    forward = din.model.forward
    for fail_at in (3, len(rows)):
        calls = []

        def failing(batch, calls=calls, fail_at=fail_at):
            calls.append(1)
            if len(calls) == fail_at:
                raise RuntimeError("the model failed")
            return forward(batch)

        monkeypatch.setattr(din.model, "forward", failing)
        with pytest.raises(RuntimeError, match="the model failed"):
            predict_file(din, good, tmp_path / "out.parquet", ids="processed", chunk_rows=1)
        assert len(calls) == fail_at
        assert _left_behind(tmp_path, {"bad.csv", "mixed.jsonl", "good.parquet"}) == []
        assert not [t for t in threading.enumerate() if t.name == "ctrbench-predict-io"]


def test_the_rows_users_reach_the_model(din):
    rows = Rows(user=np.array([7, 3, 9]), item=np.array([1, 2, 3]), cate=np.array([1, 1, 2]),
                hist_item=np.array([4, 5, 6]), hist_cate=np.array([1, 2, 3]), lengths=np.array([2, 0, 1]))
    b = rows_batcher(din, rows)
    batch = b.gather(torch.arange(3))
    assert batch.user.tolist() == [7, 3, 9] and batch.hist_len.tolist() == [2, 0, 1]
    assert batch.hist_item[0, :2].tolist() == [4, 5] and batch.hist_item[2, :1].tolist() == [6]
    assert len(rows_logits(din, rows)) == 3


def test_processed_ids_from_strings_and_nulls_are_defined(din):
    v = Vocabulary({"user": 10, "item": 10, "cate": 3})
    ids, unknown = v.lookup("item", pa.array(["3", "x", None, "12", "4.0", "-1"]))
    assert ids.tolist() == [3, 0, 0, 0, 4, 0] and unknown == 4
    keyed = Vocabulary({"user": 4, "item": 4, "cate": 2}, {"user": np.array(["a", "b", "c"], dtype=object), "item": np.array([10, 20, 30]), "cate": np.array(["k"], dtype=object)})
    assert keyed.lookup("user", pa.array(["b", "z", "c", None]))[0].tolist() == [2, 0, 3, 0]
    assert keyed.lookup("item", pa.array(["20", "10", "11"]))[0].tolist() == [2, 1, 0]  # integer keys read from text
    assert keyed.lookup("item", pa.array([30, 40]))[0].tolist() == [3, 0]


def test_processed_int64_ids_are_used_in_place_unless_some_are_out_of_range():
    v = Vocabulary({"user": 10, "item": 10, "cate": 3})
    values = pa.array([3, 0, 9, 1], pa.int64())
    ids, unknown = v.lookup("item", values)
    assert ids.tolist() == [3, 0, 9, 1] and unknown == 1
    assert np.shares_memory(ids, values.to_numpy()) and not ids.flags.writeable  # no copy of the Arrow buffer
    values = pa.array([3, 10, -2, 1, None], pa.int64())
    ids, unknown = v.lookup("item", values)
    assert ids.tolist() == [3, 0, 0, 1, 0] and unknown == 3
    ids, unknown = v.lookup("item", pa.array([3, 12, 1], pa.int32()))  # other integer types: converted
    assert ids.tolist() == [3, 0, 1] and ids.dtype == np.int64 and unknown == 1
    # a file whose ids are all read in place scores as before (the Batcher copies the streams)
    hist = pa.array([[1, 2], [], [9]], pa.list_(pa.int64()))
    rows = encode_table(pa.table({"user": [1, 2, 3], "item": [4, 5, 6], "hist_item": hist}), v, np.arange(10) % 3, Counts())
    assert rows.hist_item.tolist() == [1, 2, 9] and rows.hist_cate.tolist() == [1, 2, 0] and rows.lengths.tolist() == [2, 0, 1]


def test_missing_columns_and_uneven_categories_are_one_line_errors(din):
    with pytest.raises(DataError, match=r"no columns 'item', 'hist_item': expected columns user, item, hist_item .* found user, foo"):
        encode_table(pa.table({"user": [1], "foo": [2]}), Vocabulary({"user": 9, "item": 9, "cate": 9}), np.zeros(9, dtype=np.int64), Counts())
    t = pa.table({"user": [1, 2], "item": [1, 2], "hist_item": [[1, 2], [3]], "hist_cate": [[1, 2], [3, 4]]})
    with pytest.raises(DataError, match=r"row 2: hist_cate has 2 entries and hist_item 1"):
        encode_table(t, Vocabulary({"user": 9, "item": 9, "cate": 9}), np.zeros(9, dtype=np.int64), Counts())


# ---- raw ids of a real source ----------------------------------------------------------------------
def movielens_files(raw: Path, users: int = 40, per_user: int = 12, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    movies = [m * 10 + 3 for m in range(1, 60)]
    genres = ["Drama", "Comedy", "Action", "(no genres listed)", "Horror"]
    lines = ["movieId,title,genres"] + [f"{m},Movie {m},{genres[(m // 10) % 5]}|Other" for m in movies]
    (raw / "movies.csv").write_text("\n".join(lines) + "\n")
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(users):
        for j, m in enumerate(rng.choice(movies, per_user, replace=False)):
            rows.append(f"{1000 + 7 * u},{m},{rng.integers(1, 6)}.0,{900000000 + 1000 * j + u}")
    (raw / "ratings.csv").write_text("\n".join(rows) + "\n")


def test_raw_keys_map_through_the_rebuilt_vocabulary(tmp_path):
    """A MovieLens-layout dataset: the vocabulary rebuilt from the raw files maps every user's raw
    behaviours onto its processed stream, is cached beside the processed dataset, and counts
    unknown keys."""
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import conf_dir
    from ctrbench.data.prepare import load_dataset

    raw, data = tmp_path / "raw", tmp_path / "data"
    movielens_files(raw)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("prepare", ["dataset=movielens_latest_small", f"dataset.raw_dir={raw}", "dataset.download=false"])
    ds = load_dataset(cfg.dataset, data)
    run = ScoringRun(tmp_path, OmegaConf.create({"dataset": OmegaConf.to_container(cfg.dataset)}), ds, None, None, torch.device("cpu"), None, data)
    v = vocabulary(run, "raw")
    assert (len(v.keys["user"]) + 1, len(v.keys["item"]) + 1) == (ds.vocab.n_users, ds.vocab.n_items)
    assert (run.dataset_dir.parent / (run.dataset_dir.name + ".keys") / "keys.json").exists()
    ratings = pd.read_csv(raw / "ratings.csv").sort_values(["userId", "timestamp"], kind="stable")
    uids, _ = v.lookup("user", pa.array(ratings["userId"].to_numpy()))
    iids, unknown = v.lookup("item", pa.array(ratings["movieId"].to_numpy()))
    assert unknown == 0
    st = ds.streams
    for u in np.unique(uids)[:10]:
        assert st.item[st.offsets[u] : st.offsets[u + 1]].tolist() == iids[uids == u].tolist()
    genres = v.lookup("cate", pa.array(["Drama", "Comedy", "Romance"]))
    assert genres[1] == 1 and genres[0][2] == 0
    # the second call reads the cache (the raw files are no longer needed)
    (raw / "ratings.csv").rename(raw / "moved.csv")
    again = vocabulary(run, "raw")
    assert again.keys["item"].tolist() == v.keys["item"].tolist() and again.keys["cate"].tolist() == v.keys["cate"].tolist()
    # rows in raw keys: string or integer ids alike
    t = pa.table({"user": ["1000", "999"], "item": [13, 99999], "hist_item": [["23", "33"], []]})
    counts = Counts()
    rows = encode_table(t, again, np.asarray(ds.item_cate), counts)
    assert rows.user[1] == 0 and rows.item[1] == 0 and counts.unknown["user"] == 1 and counts.unknown["item"] == 1
    assert rows.hist_item.tolist() == again.lookup("item", pa.array([23, 33]))[0].tolist()


# ---- the command line --------------------------------------------------------------------------------
def test_cli_scores_a_csv_and_reports_unknowns(din_run, work, tmp_path):
    run = load_run(din_run, work / "data")
    df = split_rows(run, "valid").head(50).drop(columns=["hist_cate"])
    df.loc[0, "item"] = 10**6
    src = write_rows(df, tmp_path / "req.csv")
    proc = ctrbench("predict", str(din_run), f"input={src}", *FAST[1:], cwd=work)
    out = pd.read_csv(tmp_path / "req.scored.csv")
    assert len(out) == 50 and {"score", "logit"} <= set(out.columns) and "item 1" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["input=nowhere.csv"], "input file 'nowhere.csv' does not exist"),
        (["split=tset"], "split='tset': expected one of train, valid, test"),
        ([], "give either input=FILE (rows to score) or split=valid|test (the run's own data), not neither"),
        (["input=rows.txt"], "input='rows.txt': expected a .csv, .parquet or .jsonl file"),
        (["split=test", "chunk_rows=0"], "chunk_rows=0: expected an integer >= 1"),
        (["input=bad.csv"], "the input has no columns 'item', 'hist_item': expected columns user, item, hist_item"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(din_run, work, args, message):
    (work / "bad.csv").write_text("user,items\n1,2\n")
    proc = ctrbench("predict", str(din_run), *args, *FAST[1:], cwd=work, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (proc.returncode, err)
    assert message in err, err


def test_cli_no_run_folder(work):
    proc = ctrbench("predict", "no/such/run", "split=test", cwd=work, check=False)
    assert proc.returncode == 2 and "run folder 'no/such/run' does not exist" in proc.stderr


def test_python_api_refuses_both_sources_and_same_file(din, tmp_path):
    from ctrbench.serve.predict import run_predict

    cfg = OmegaConf.create({"run_dir": str(din.path), "input": "a.csv", "split": "test", "output": None, "ids": "raw", "list_sep": "|",
                            "chunk_rows": 10, "batch_size": None, "max_len": None, "paths": {"data_dir": str(din.data_dir)}})
    with pytest.raises(ConfigError, match="not both"):
        run_predict(cfg)
    src = write_rows(split_rows(din, "test").head(3), tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match="is the input file"):
        predict_file(din, src, src)


def test_the_predict_config_composes_and_is_in_the_help():
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import COMMANDS, POSITIONAL, conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("predict", ["split=test"])
    c = OmegaConf.to_container(cfg, resolve=True)
    assert c["ids"] == "raw" and c["chunk_rows"] == 65536 and c["input"] is None and c["device"]["type"] == "auto"
    assert "predict" in COMMANDS and POSITIONAL["predict"] == "run_dir"
