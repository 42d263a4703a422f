"""The speed benchmark: train and evaluate one ctrbench model on the peers' data shape; time GAUC
and prepare. Prints one JSON line on stdout (and a readable summary on stderr).

Training (the shape of ../shared/bench: embeddings of --embedding-dim per field, item and category
tables shared by target and history, a user embedding, attention MLP 80-40, MLP 200-80, Adam lr
1e-3, no regularization, --epochs passes over every training row, then one pass over the test rows):

    python scripts/bench.py --bars-csv DIR --model din --batch 1024 --threads 2 --epochs 1 --embedding-dim 18
    python scripts/bench.py --synthetic --model dien --batch 1024 --threads 2 --epochs 1

``--bars-csv DIR`` reads a BARS-format folder (``train.csv``, ``test.csv`` with
``label,user_id,item_id,cate_id,item_history,cate_history``: the files the other libraries read;
``../shared/bench/npz_to_bars.py`` writes them). Rows whose histories are not prefixes of one
per-user stream (as in that generator) are imported with ``histories=rows``. ``--synthetic``
generates ctrbench's built-in synthetic data instead (``--users/--items/--cates/--mean-len``; the
defaults give about 400k training rows; ``--users 192403 --items 63001 --cates 801 --mean-len 8.8``
is Electronics-size: 2.6M training rows over 1.7M behaviours, the memory target).

Every training row is trained on (no validation carve-out, ``trainer.selection=last``), as the
peers' one-epoch runs do. ``train_samples_per_s`` is training rows / training seconds, batch
assembly included and evaluation excluded. ``eval_samples_per_s`` is the median over
``--eval-passes`` test passes (predictions + metrics) of test rows / seconds of the pass: the run's
own test pass, then the same evaluation again on the trained model (each rate is in
``eval_pass_samples_per_s``, the run's own first). A test pass is a fraction of a second against
training's many seconds, so a single pass is at the mercy of whatever else the machine does in
that moment; every pass must give the run's test metrics. ``peak_rss_mb`` is the process's peak
resident memory, data included.

Other modes:

    python scripts/bench.py --mode gauc [--n 1000000 --gauc-users 100000]   # seconds for one GAUC
    python scripts/bench.py --mode prepare --bars-csv DIR                     # seconds to prepare the cache

The processed cache goes to --data-dir (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dataset_overrides(a: argparse.Namespace) -> list[str]:
    if a.bars_csv:
        return [
            "dataset=amazon_electronics_x1", f"dataset.raw_dir={Path(a.bars_csv).resolve()}", "dataset.download=false",
            f"dataset.source.histories={a.histories}", "dataset.protocol.valid=none", f"dataset.max_len={a.max_len}",
        ]
    out = ["dataset=synthetic", f"dataset.max_len={a.max_len}", "dataset.protocol.valid_positions=0"]
    for key, val in (("n_users", a.users), ("n_items", a.items), ("n_cates", a.cates), ("mean_len", a.mean_len)):
        out.append(f"dataset.source.{key}={val}")
    return out


def compose(a: argparse.Namespace, data_dir: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ctrbench.cli import conf_dir

    overrides = [
        *dataset_overrides(a), f"model={a.model}", f"act={a.act}", "reg=none", "optim=adam", "optim.lr=0.001",
        "device=cpu" if a.device == "cpu" else f"device={a.device}", f"device.threads={a.threads}",
        f"trainer.batch_size={a.batch}", "trainer.eval_batch_size=" + ("null" if a.eval_batch is None else str(a.eval_batch)), f"trainer.eval_workers={a.eval_workers}", f"trainer.max_epochs={a.epochs}",
        "trainer.selection=last", "trainer.patience=0", "trainer.progress=false", f"seed={a.seed}",
        f"model.embedding_dim={a.embedding_dim}", "model.use_user=true", f"paths.data_dir={data_dir}", *a.override,
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def run_prepare(a: argparse.Namespace, data_dir: str) -> dict:
    from ctrbench.data.prepare import load_dataset

    cfg = compose(a, data_dir)
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
    secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_dataset(cfg.dataset, cfg.paths.data_dir)
    return {
        "mode": "prepare",
        "prepare_seconds": round(secs, 2),
        "cached_load_seconds": round(time.perf_counter() - t0, 2),
        "rows": {k: len(v) for k, v in dataset.splits.items()},
        "behaviours": dataset.streams.n_behaviours,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_train(a: argparse.Namespace, data_dir: str) -> dict:
    import torch

    from ctrbench.data.prepare import load_dataset
    from ctrbench.train.loop import Trainer

    cfg = compose(a, data_dir)
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="ctrbench-bench-run-") as run_dir:
        trainer = Trainer(cfg, run_dir=Path(run_dir))
        trainer.setup(dataset)
        m = trainer.fit()
        pass_rates = [m["eval_samples_per_s"], *repeat_test_passes(trainer, m["test"], a.eval_passes - 1)]
    return {
        "mode": "train",
        "model": a.model,
        "act": a.act,
        "data": f"bars-csv:{a.bars_csv}" if a.bars_csv else "synthetic",
        "train_rows": len(dataset.splits["train"]),
        "test_rows": len(dataset.splits["test"]),
        "epochs": a.epochs,
        "batch": a.batch,
        "eval_batch": m["eval_batch_size"],
        "eval_positions": m["eval_positions"],
        "eval_workers": a.eval_workers,
        "embedding_dim": a.embedding_dim,
        "threads": torch.get_num_threads(),
        "device": m["device"],
        "train_samples_per_s": m["train_samples_per_s"],
        "eval_samples_per_s": round(float(np.median(pass_rates)), 1),
        "eval_pass_samples_per_s": pass_rates,
        "train_seconds": m["train_seconds"],
        "test_auc": m["test"]["auc"],
        "test_gauc": m["test"]["gauc"],
        "test_logloss": m["test"]["logloss"],
        "peak_rss_mb": peak_rss_mb(),
        "dataset_load_seconds": round(load_s, 2),
    }


def repeat_test_passes(trainer, test_metrics: dict, n: int) -> list[float]:
    """Test rows per second of ``n`` more test passes of the trained model (predictions + metrics),
    each checked to give the run's own test metrics."""
    from ctrbench.train.evaluate import evaluate

    rates = []
    for _ in range(n):
        metrics, secs = evaluate(trainer.eval_model, trainer.test_batches, trainer.device, trainer.weighting, trainer.reg, trainer.dist, trainer.eval_workers)
        if json.dumps(metrics, sort_keys=True) != json.dumps(test_metrics, sort_keys=True):  # nan-safe
            raise RuntimeError(f"a repeated test pass gave other metrics: {metrics} against the run's {test_metrics}")
        rates.append(round(trainer.test_batches.n / max(secs, 1e-9), 1))
    return rates


def run_gauc(a: argparse.Namespace) -> dict:
    from ctrbench.metrics import gauc

    rng = np.random.default_rng(a.seed)
    users = rng.integers(0, a.gauc_users, a.n)
    labels = rng.integers(0, 2, a.n)
    scores = rng.random(a.n).astype(np.float32)
    gauc(users, labels, scores)  # warm-up
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        gauc(users, labels, scores)
        times.append(time.perf_counter() - t0)
    return {"mode": "gauc", "n": a.n, "users": a.gauc_users, "gauc_seconds_best": round(min(times), 4),
            "gauc_seconds_median": round(float(np.median(times)), 4)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("train", "gauc", "prepare"), default="train")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--bars-csv", metavar="DIR", help="a BARS-format folder with train.csv and test.csv")
    src.add_argument("--synthetic", action="store_true", help="generate ctrbench's synthetic data (the default)")
    ap.add_argument("--histories", choices=("prefix", "rows"), default="rows",
                    help="BARS rows: prefix (a user's rows share one stream) | rows (any history; default)")
    ap.add_argument("--model", default="din")
    ap.add_argument("--act", default="prelu")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--eval-batch", type=int, default=None,
                    help="evaluation batch (default: the trainer's automatic choice, 384 rows for DIN and 2,048 "
                         "for the other models on CPU; docs/performance.md)")
    ap.add_argument("--eval-workers", type=int, default=1,
                    help="trainer.eval_workers: threads scoring evaluation batches side by side (default 1, the "
                         "trainer's own default; 0: one per torch thread)")
    ap.add_argument("--eval-passes", type=int, default=5,
                    help="test passes whose median rate is eval_samples_per_s: the run's own, then repeats (default 5)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--embedding-dim", type=int, default=18)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--users", type=int, default=20000, help="--synthetic: users")
    ap.add_argument("--items", type=int, default=20000, help="--synthetic: items")
    ap.add_argument("--cates", type=int, default=200, help="--synthetic: categories")
    ap.add_argument("--mean-len", type=float, default=12.5, help="--synthetic: mean stream length")
    ap.add_argument("--n", type=int, default=1_000_000, help="--mode gauc: predictions")
    ap.add_argument("--gauc-users", type=int, default=100_000, help="--mode gauc: users")
    ap.add_argument("--repeat", type=int, default=5, help="--mode gauc: timed calls")
    ap.add_argument("--data-dir", default=None, help="processed cache (default: a temporary folder)")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--jsonl", default=None, help="also append the JSON line to this file")
    a = ap.parse_args(argv)
    if a.eval_passes < 1:
        ap.error(f"--eval-passes must be at least 1, got {a.eval_passes}")

    with tempfile.TemporaryDirectory(prefix="ctrbench-bench-data-") as tmp:
        data_dir = a.data_dir or tmp
        if a.mode == "gauc":
            result = run_gauc(a)
        elif a.mode == "prepare":
            result = run_prepare(a, data_dir)
        else:
            result = run_train(a, data_dir)
    result.update({"commit": commit(), "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
                   "command": "python scripts/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    line = json.dumps(result)
    print(line, flush=True)
    if a.jsonl:
        with open(a.jsonl, "a") as f:
            f.write(line + "\n")
    summary = {k: v for k, v in result.items() if k.endswith(("_per_s", "_auc", "_gauc", "_mb", "_seconds", "_seconds_best"))}
    print("  ".join(f"{k}={v}" for k, v in summary.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
