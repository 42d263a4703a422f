"""Benchmark: relative training speed of several models, measured interleaved in one process.

Shared machines drift by 10-30% between runs, which swamps a ratio taken from two separate runs.
This script builds one trainer per model on the same dataset and alternates them: each round
times ``--steps`` training steps of every model in turn; a model's rate is the median over rounds.

    python scripts/bench_compare.py --models din,dien --rounds 5 --steps 60
    python scripts/bench_compare.py --models base,din --override trainer.batch_size=1024

    python scripts/bench_compare.py --models din --variant loop=optim.fused=false --variant fused=optim.fused=true

``--variant LABEL=OVERRIDE[,OVERRIDE...]`` (repeatable) compares variants of one model (the first of
``--models``) instead of models: each variant is a trainer with those extra overrides.

Prints one JSON line with each model's (or variant's) samples/s (median and all rounds) and its
rate relative to the first one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctrbench.cli import conf_dir  # noqa: E402
from ctrbench.data.prepare import load_dataset  # noqa: E402
from ctrbench.train.loop import Progress, Trainer  # noqa: E402




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="din,dien", help="comma-separated model names; the first is the reference")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60, help="timed steps per model per round")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--override", action="append", default=[], help="Hydra override for every model (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=OVERRIDE[,OVERRIDE...]",
                    help="compare variants of the first model instead of models (repeatable)")
    a = ap.parse_args()

    names = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.variant:  # label -> (model, extra overrides)
        runs = {}
        for v in a.variant:
            label, sep, extra = v.partition("=")
            if not sep or not label:
                ap.error(f"--variant {v!r}: expected LABEL=OVERRIDE[,OVERRIDE...]")
            runs[label] = (names[0], [o for o in extra.split(",") if o])
    else:
        runs = {name: (name, []) for name in names}
    models = list(runs)
    trainers, streams = {}, {}
    dataset = None
    for name, (model, extra) in runs.items():
        overrides = [f"model={model}", "device=cpu", f"device.threads={a.threads}", f"paths.data_dir={a.data_dir}", *a.override, *extra]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        if dataset is None:
            dataset = load_dataset(cfg.dataset, cfg.paths.data_dir)
        trainer = Trainer(cfg, run_dir=Path("."))
        trainer.setup(dataset)
        trainer.progress = Progress()
        trainer.model.train()
        trainers[name], streams[name] = trainer, trainer.train_batches.forever()
        for _ in range(a.warmup):
            trainer.train_step(next(streams[name]))

    rates: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(a.rounds):
        for name in models:
            trainer, stream = trainers[name], streams[name]
            batches = [next(stream) for _ in range(a.steps)]  # assembled outside the timed region
            t = time.perf_counter()
            for batch in batches:
                trainer.train_step(batch)
            rates[name].append(sum(len(b) for b in batches) / (time.perf_counter() - t))

    ref = statistics.median(rates[models[0]])
    result = {
        "threads": torch.get_num_threads(),
        "batch": trainers[models[0]].train_batches.batch_size,
        "rounds": a.rounds,
        "steps_per_round": a.steps,
        "models": {
            m: {
                "train_samples_per_s": round(statistics.median(r), 1),
                "rounds": [round(x) for x in r],
                f"relative_to_{models[0]}": round(statistics.median(r) / ref, 3),
            }
            for m, r in rates.items()
        },
    }
    print(json.dumps(result))
    for m, r in result["models"].items():
        print(f"{m}: {r['train_samples_per_s']:,.0f} samples/s (median of {a.rounds}), "
              f"{r[f'relative_to_{models[0]}']:.2f}x {models[0]}", file=sys.stderr)


if __name__ == "__main__":
    main()
