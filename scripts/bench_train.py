"""Benchmark: train a model for a fixed number of steps on synthetic data of a given size.

Prints train and eval samples/s and peak memory as one JSON line (plus a readable line), e.g.

    python scripts/bench_train.py --model din --steps 300 --batch 256 --threads 2
    python scripts/bench_train.py --model base --users 50000 --items 20000 --cates 200

The processed dataset is cached under --data-dir like any other (the first run builds it).
Only the training steps are timed for train samples/s (after --warmup steps); eval samples/s is
one pass over the test split. Timings vary by ~10-15% on shared machines: compare in one sitting.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctrbench.cli import conf_dir  # noqa: E402
from ctrbench.data.batches import Batcher  # noqa: E402
from ctrbench.data.prepare import load_dataset  # noqa: E402
from ctrbench.train.evaluate import predict_logits  # noqa: E402
from ctrbench.train.loop import Trainer  # noqa: E402


def profile_steps(trainer, n: int, warmup: int, shapes: bool = False) -> None:
    """Profile n training steps (after warmup ones) and print the ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    batches = []
    for _, batch in trainer.train_batches:
        batches.append(batch)
        if len(batches) >= n + warmup:
            break
    for batch in batches[:warmup]:
        trainer.train_step(batch)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for batch in batches[warmup:]:
            trainer.train_step(batch)
    print(prof.key_averages(group_by_input_shape=shapes).table(sort_by="self_cpu_time_total", row_limit=30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="din")
    ap.add_argument("--act", default="prelu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--eval-batch", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--users", type=int, default=None, help="synthetic users (default: the dataset config's)")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--cates", type=int, default=None)
    ap.add_argument("--mean-len", type=float, default=None)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--bucket", type=int, default=50)
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="instead of timing, profile N training steps with torch.profiler and print the top ops")
    a = ap.parse_args()

    overrides = [
        f"model={a.model}", f"act={a.act}", "device=cpu", f"device.threads={a.threads}",
        f"trainer.batch_size={a.batch}", f"trainer.eval_batch_size={a.eval_batch}",
        f"trainer.bucket={a.bucket}", f"dataset.max_len={a.max_len}", f"paths.data_dir={a.data_dir}",
    ]
    for key, val in (("n_users", a.users), ("n_items", a.items), ("n_cates", a.cates), ("mean_len", a.mean_len)):
        if val is not None:
            overrides.append(f"dataset.source.{key}={val}")
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides + a.override)

    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
    load_s = time.perf_counter() - t0
    trainer = Trainer(cfg, run_dir=Path("."))
    trainer.setup(dataset)
    from ctrbench.train.progress import Progress

    trainer.progress = Progress()
    trainer.model.train()
    if a.profile:
        profile_steps(trainer, a.profile, a.warmup)
        return
    steps, samples, timed_samples, timed = 0, 0, 0, 0.0
    epoch = 0
    while steps < a.steps + a.warmup:
        trainer.train_batches.set_epoch(epoch)
        for _, batch in trainer.train_batches:
            t = time.perf_counter()
            trainer.train_step(batch)
            dt = time.perf_counter() - t
            steps += 1
            trainer.progress.step = steps
            if steps > a.warmup:
                timed += dt
                timed_samples += len(batch)
            samples += len(batch)
            if steps >= a.steps + a.warmup:
                break
        epoch += 1
    # Train throughput including batch assembly: time whole iterations too.
    t = time.perf_counter()
    n_iter = 0
    it = iter(trainer.train_batches)
    for _ in range(min(50, len(trainer.train_batches))):
        _, batch = next(it)
        trainer.train_step(batch)
        n_iter += len(batch)
    with_batching = n_iter / (time.perf_counter() - t)

    test = Batcher(dataset, "test", a.eval_batch, a.max_len)
    t = time.perf_counter()
    predict_logits(trainer.model, test, trainer.device)
    eval_s = time.perf_counter() - t
    result = {
        "model": a.model,
        "act": a.act,
        "threads": torch.get_num_threads(),
        "batch": a.batch,
        "train_rows": trainer.train_batches.n,
        "vocab_items": dataset.vocab.n_items - 1,
        "steps_timed": a.steps,
        "train_samples_per_s": round(timed_samples / timed, 1),
        "train_samples_per_s_with_batching": round(with_batching, 1),
        "eval_samples_per_s": round(test.n / eval_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dataset_load_s": round(load_s, 2),
    }
    print(json.dumps(result))
    print(
        f"{a.model}: train {result['train_samples_per_s']:,.0f} samples/s "
        f"({result['train_samples_per_s_with_batching']:,.0f} with batch assembly), "
        f"eval {result['eval_samples_per_s']:,.0f} samples/s, peak RSS {result['peak_rss_mb']:,.0f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
