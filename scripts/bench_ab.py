"""Compare training-step settings in one process: one trainer per variant, alternated in blocks.

    python scripts/bench_ab.py --row din_table3/din --variant flat= --variant torch=trainer.flat_sgd=false
    python scripts/bench_ab.py --row din_table3/wdl --blocks 10 --block 200 \
        -o dataset=amazon_electronics -o dataset.raw_dir=/tmp/bench_amazon -o dataset.download=false

Each ``--variant NAME=OVERRIDE[,OVERRIDE...]`` builds a trainer exactly as ``ctrbench train
+experiment=<experiment> +row=<row>`` does, plus its overrides (the data is loaded once and shared).
After ``--warmup`` steps each, the variants take turns of ``--block`` training steps (the order
reversed every other turn), so that a shared machine's slow phases hit every variant alike; on these
hosts two separate processes run minutes apart differ by up to 30%. Prints one JSON line per variant:
training samples/s over its timed steps and the mean loss of its last 100 (the same data order, so
equal updates give equal losses). Settings that need two checkouts (old and new code) cannot be
compared this way: use ``scripts/bench_table.py --root`` and alternate runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="din_table3")
    ap.add_argument("--row", default="din_table3/din")
    ap.add_argument("--variant", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...] (repeatable; at least 2)")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override for every variant (repeatable)")
    a = ap.parse_args()
    variants = []
    for v in a.variant or ["flat=", "torch=trainer.flat_sgd=false"]:
        name, sep, overrides = v.partition("=")
        if not sep or not name:
            ap.error(f"--variant {v!r}: expected NAME=OVERRIDE[,OVERRIDE...]")
        variants.append((name, [o for o in overrides.split(",") if o]))
    if len(variants) < 2:
        ap.error("give at least two --variant")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import torch
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import conf_dir
    from ctrbench.data.prepare import load_dataset
    from ctrbench.train.loop import Progress, Trainer

    torch.set_num_threads(a.threads)
    base = [f"+experiment={a.experiment}", f"+row={a.row}", "device=cpu", f"device.threads={a.threads}", f"seed={a.seed}", *a.override]
    dataset, runs = None, []
    for name, overrides in variants:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=base + overrides)
        if dataset is None:
            dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
        trainer = Trainer(cfg, run_dir=Path(tempfile.mkdtemp(prefix="bench_ab_")))
        trainer.setup(dataset)
        trainer.progress = Progress()
        trainer.model.train()
        runs.append({"name": name, "trainer": trainer, "batches": iter(trainer.train_batches), "secs": 0.0, "losses": [],
                     "batch": int(cfg.trainer.batch_size)})

    def steps(run: dict, n: int) -> None:
        for _ in range(n):
            _, batch = next(run["batches"])
            run["losses"].append(run["trainer"].train_step(batch))

    for run in runs:
        steps(run, a.warmup)
    gc.collect()  # as `ctrbench train` before its loop (ctrbench/runtime.py: long_lived_frozen): no first full
    gc.freeze()   # collection of the set-up's objects (~140 ms) inside one variant's block
    for k in range(a.blocks):
        for run in runs if k % 2 == 0 else runs[::-1]:
            t = time.perf_counter()
            steps(run, a.block)
            run["secs"] += time.perf_counter() - t
    for run in runs:
        last = run["losses"][-100:]
        print(json.dumps({
            "variant": run["name"], "row": a.row, "threads": torch.get_num_threads(), "steps_timed": a.blocks * a.block,
            "train_samples_per_s": round(a.blocks * a.block * run["batch"] / run["secs"], 1),
            "loss_last_100": sum(last) / len(last),
        }))


if __name__ == "__main__":
    main()
