"""Benchmark the published tables' training regime: one row of a table sweep, timed step by step.

    python scripts/bench_table.py --row din_table3/din                      # batch 32, SGD, clip 5
    python scripts/bench_table.py --row din_table3/base --steps 3000
    python scripts/bench_table.py --experiment dien_table2 --row dien_table2/dien
    python scripts/bench_table.py --row din_table3/din -o dataset=amazon_electronics \
        -o dataset.raw_dir=/tmp/bench_amazon -o paths.data_dir=/tmp/benchdata   # Electronics size

Composes ``ctrbench train +experiment=<experiment> +row=<row>`` (plus ``-o`` overrides), builds the
trainer exactly as ``ctrbench train`` does, and times ``--steps`` whole training iterations after
``--warmup`` ones: the Batcher's gather and the step together, in the order the run takes them.
Prints one JSON line: training samples/s, seconds per epoch (the training split's size over that
rate), the loss after the timed steps (the same data order and updates give the same loss, so two
commits can be checked for equal results side by side), threads and the peak RSS.

Runs with whatever ``ctrbench`` is importable (``--root`` puts another checkout first on the path:
compare two commits side by side by alternating runs of each).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="din_table3")
    ap.add_argument("--row", default="din_table3/din")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout to import ctrbench from")
    ap.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    a = ap.parse_args()
    sys.path.insert(0, str(a.root.resolve()))

    import torch
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import conf_dir
    from ctrbench.data.prepare import load_dataset
    from ctrbench.train.loop import Progress, Trainer

    overrides = [f"+experiment={a.experiment}", f"+row={a.row}", "device=cpu", f"device.threads={a.threads}",
                 f"seed={a.seed}", *a.override]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
    import tempfile

    trainer = Trainer(cfg, run_dir=Path(tempfile.mkdtemp(prefix="bench_table_")))
    trainer.setup(dataset)
    trainer.progress = Progress()
    trainer.model.train()
    it = iter(trainer.train_batches)
    total = a.warmup + a.steps
    losses = []
    t0 = None
    for i in range(total):
        if i == a.warmup:
            gc.collect()  # as `ctrbench train` before its loop (ctrbench/runtime.py: long_lived_frozen): no first full
            gc.freeze()   # collection of the set-up's objects (~140 ms) inside the timed steps, whichever checkout runs
            t0 = time.perf_counter()
        _, batch = next(it)
        losses.append(trainer.train_step(batch))
        trainer.progress.step = i + 1
    secs = time.perf_counter() - t0
    rate = a.steps * int(cfg.trainer.batch_size) / secs
    n_train = trainer.train_batches.n
    print(json.dumps({
        "row": a.row, "dataset": str(cfg.dataset.name), "batch": int(cfg.trainer.batch_size),
        "threads": torch.get_num_threads(), "steps_timed": a.steps,
        "train_samples_per_s": round(rate, 1), "epoch_s": round(n_train / rate, 1), "train_rows": n_train,
        "loss_last_100": sum(losses[-100:]) / len(losses[-100:]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "root": str(a.root),
    }))


if __name__ == "__main__":
    main()
