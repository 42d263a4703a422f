"""A GPU check ready to run: DIN and DIEN training and evaluation throughput, peak GPU memory, and
whether a short CPU run and a short GPU run reach the same metrics. Prints one JSON line.

    python scripts/gpu_check.py                         # on a CUDA machine: well under 5 minutes
    python scripts/gpu_check.py --steps 500             # longer timings
    python scripts/gpu_check.py -o dataset=amazon_electronics -o dataset.raw_dir=/data/amazon   # real data
    python scripts/gpu_check.py --cpu-fallback --steps 5    # without CUDA (what CI runs): tiny data, CPU

For each model (DIN, DIEN), training batch (32: the tables' setup; 1,024) and precision (fp32,
bf16) it composes the table setup, ``ctrbench train +experiment=din_table3 +row=din_table3/din``
or ``+experiment=dien_table2 +row=dien_table2/dien``, with ``trainer.batch_size`` and
``device.precision``, builds the Trainer as ``ctrbench train`` does, and times ``--steps`` whole
training iterations (the Batcher's gather on the CPU, the copy and the step) after ``--warmup``
ones, synchronising the GPU before reading the clock; then one fp32 evaluation pass over the test
split (the trainer's own evaluation batches), and ``torch.cuda.max_memory_allocated`` over both
(reset between configurations).

Agreement: the DIN table setup at batch 32 on a small synthetic dataset, trained ``--agree-steps``
steps from the same seed on the CPU and on the GPU, then scored on the test split with the
trainer's evaluation (AUC, GAUC, logloss); ``agree`` is true when |ΔAUC| and |ΔGAUC| are below
``--tolerance``.

Without CUDA (or with ``--cpu-fallback``) the same code runs on the CPU with tiny data: ``"device":
"cpu"``, ``"fallback": true``, and the agreement compares two CPU runs. ``--max-seconds`` (270)
stops adding configurations when the next one would not fit in the budget; the JSON lists those
skipped. Progress goes to stderr; stdout holds the JSON line only.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "din": ["+experiment=din_table3", "+row=din_table3/din"],
    "dien": ["+experiment=dien_table2", "+row=dien_table2/dien"],
}
BATCHES = (32, 1024)
PRECISIONS = ("fp32", "bf16")
#: the synthetic source of the CPU fallback: +debug=fast's sizes (conf/debug/fast.yaml)
TINY_SOURCE = {"n_users": 300, "n_items": 200, "n_cates": 10, "mean_len": 8.0, "max_len": 20}


def say(msg: str) -> None:
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)


def should_skip(elapsed: float, estimate: float, max_seconds: float) -> bool:
    """Whether a configuration expected to take ``estimate`` seconds, started ``elapsed`` seconds
    into the run, would end past ``max_seconds``."""
    return elapsed + estimate > max_seconds


def estimate_seconds(durations: dict[tuple, float], model: str, batch: int) -> float:
    """The expected seconds of the next configuration: the longest measured one of the same model
    and batch, else of the same model, else of any (0 before the first)."""
    for keep in (lambda k: k[:2] == (model, batch), lambda k: k[0] == model, lambda k: True):
        seen = [s for k, s in durations.items() if keep(k)]
        if seen:
            return max(seen)
    return 0.0


def bf16_supported(device) -> tuple[bool, str]:
    """(supported, why not): bf16 autocast on this device, tried on a small matmul."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return False, "torch.cuda.is_bf16_supported() is false"
    try:
        x = torch.randn(8, 8, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            y = x @ x
        if y.dtype != torch.bfloat16:
            return False, f"autocast gave {y.dtype}"
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """Composes configs, caches the datasets, and builds trainers."""

    def __init__(self, a: argparse.Namespace, device_name: str, tmp: Path) -> None:
        self.a = a
        self.device_name = device_name
        self.tmp = tmp
        self.data_dir = a.data_dir or os.environ.get("CTRBENCH_DATA_DIR") or str(tmp / "data")
        self.datasets: dict[str, object] = {}
        self.prepare_seconds = 0.0

    def source_overrides(self, small: bool) -> list[str]:
        """Synthetic sizes: +debug=fast's in the fallback; ``--agree-users`` users for the agreement
        run; else ``--users``. None when ``-o`` picks another dataset."""
        if any(o.split("=", 1)[0].lstrip("+~") == "dataset" for o in self.a.override):
            return []
        if self.a.fallback:
            return [f"dataset.source.{k}={v}" for k, v in TINY_SOURCE.items()]
        users = self.a.agree_users if small else self.a.users
        return [f"dataset.source.n_users={users}"] if users else []

    def compose(self, model: str, batch: int, precision: str, device: str, small: bool = False):
        from hydra import compose, initialize_config_dir

        from ctrbench.cli import conf_dir

        overrides = [
            *MODELS[model], f"trainer.batch_size={batch}", f"device={device}", f"device.precision={precision}",
            f"device.threads={self.a.threads}", f"seed={self.a.seed}", f"paths.data_dir={self.data_dir}",
            "trainer.progress=false", *self.source_overrides(small), *self.a.override,
        ]
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)

    def dataset(self, cfg):
        from omegaconf import OmegaConf

        from ctrbench.data.prepare import load_dataset

        key = json.dumps(OmegaConf.to_container(cfg.dataset, resolve=True), sort_keys=True)
        if key not in self.datasets:
            t0 = time.perf_counter()
            self.datasets[key] = load_dataset(cfg.dataset, cfg.paths.data_dir)
            secs = time.perf_counter() - t0
            self.prepare_seconds += secs
            say(f"dataset {cfg.dataset.name} ({cfg.dataset.protocol._target_.rsplit('.', 1)[-1]}) ready in {secs:.1f}s")
        return self.datasets[key]

    def trainer(self, cfg):
        from ctrbench.train.loop import Progress, Trainer

        trainer = Trainer(cfg, run_dir=Path(tempfile.mkdtemp(prefix="run_", dir=self.tmp)))
        trainer.setup(self.dataset(cfg))
        trainer.progress = Progress()
        trainer.model.train()
        return trainer


def train_steps(trainer, it, n: int) -> tuple[int, float]:
    """(samples, last loss) of ``n`` whole training iterations."""
    samples, loss = 0, float("nan")
    for _ in range(n):
        batch = next(it)
        loss = trainer.train_step(batch)
        trainer.progress.step += 1
        samples += len(batch)
    return samples, loss


def measure(runner: Runner, model: str, batch: int, precision: str) -> dict:
    """Train-step and evaluation throughput, and peak GPU memory, of one configuration."""
    import torch

    from ctrbench.train.evaluate import predict_logits

    a = runner.a
    cfg = runner.compose(model, batch, precision, runner.device_name)
    runner.dataset(cfg)  # prepared before the clock and the memory peak
    cuda = runner.device_name == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = runner.trainer(cfg)
    device = trainer.device
    it = trainer.train_batches.forever()
    train_steps(trainer, it, a.warmup)
    sync(device)
    t0 = time.perf_counter()
    samples, loss = train_steps(trainer, it, a.steps)
    sync(device)
    train_s = time.perf_counter() - t0
    # evaluation: one fp32 pass over the test split, with the trainer's evaluation batches
    test = trainer.test_batches
    sync(device)
    t0 = time.perf_counter()
    predict_logits(trainer.eval_model, test, device, trainer.reg, workers=trainer.eval_workers)
    sync(device)
    eval_s = time.perf_counter() - t0
    row = {
        "model": model, "batch": batch, "precision": precision,
        "train_samples_per_s": round(samples / max(train_s, 1e-9), 1),
        "eval_samples_per_s": round(test.n / max(eval_s, 1e-9), 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        "steps_timed": a.steps, "train_rows": trainer.train_batches.n, "eval_rows": test.n,
        "eval_batch_size": trainer.eval_batch_size, "loss_last": round(loss, 5),
    }
    del trainer, it
    return row


def short_run(runner: Runner, device_name: str) -> dict:
    """The DIN table setup at batch 32 on small data, ``--agree-steps`` steps, then the test metrics."""
    from ctrbench.train.evaluate import evaluate

    cfg = runner.compose("din", 32, "fp32", device_name, small=True)
    trainer = runner.trainer(cfg)
    it = trainer.train_batches.forever()
    _, loss = train_steps(trainer, it, runner.a.agree_steps)
    metrics, _ = evaluate(trainer.eval_model, trainer.test_batches, trainer.device, trainer.weighting, trainer.reg,
                          workers=trainer.eval_workers)
    return {"device": str(trainer.device), "auc": float(metrics["auc"]), "gauc": float(metrics["gauc"]),
            "logloss": float(metrics["logloss"]), "loss_last": round(loss, 6), "test_rows": int(metrics["n"])}


def agreement(runner: Runner) -> dict:
    first = short_run(runner, "cpu")
    second = short_run(runner, runner.device_name)
    d_auc = abs(first["auc"] - second["auc"])
    d_gauc = abs(first["gauc"] - second["gauc"])
    tol = runner.a.tolerance
    return {
        "setup": "din_table3/din, batch 32, fp32", "steps": runner.a.agree_steps,
        "cpu": first, runner.device_name if runner.device_name != "cpu" else "cpu_again": second,
        "abs_diff_auc": d_auc, "abs_diff_gauc": d_gauc, "abs_diff_logloss": abs(first["logloss"] - second["logloss"]),
        "tolerance": tol, "agree": bool(d_auc < tol and d_gauc < tol),
    }


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per configuration (default 200 on a GPU, 5 in the fallback)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20 on a GPU, 2 in the fallback)")
    ap.add_argument("--models", default="din,dien")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--users", type=int, default=20000, help="synthetic users of the timed runs (0: the dataset config's)")
    ap.add_argument("--agree-users", type=int, default=2000, help="synthetic users of the agreement runs")
    ap.add_argument("--agree-steps", type=int, default=None, help="training steps of the agreement runs (default 50, 20 in the fallback)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="|ΔAUC| and |ΔGAUC| below this: agree")
    ap.add_argument("--max-seconds", type=float, default=270.0, help="stop adding configurations past this budget")
    ap.add_argument("--cpu-fallback", action="store_true", help="run on the CPU with tiny settings even when CUDA is available")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (device.threads; 0: auto)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=None, help="processed-data cache (default: CTRBENCH_DATA_DIR, else a temporary folder)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to import ctrbench from")
    ap.add_argument("-o", "--override", action="append", default=[], help="extra Hydra override (repeatable)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    start = time.perf_counter()
    a = parse_args(argv)
    sys.path.insert(0, str(a.root.resolve()))
    import torch

    a.fallback = a.cpu_fallback or not torch.cuda.is_available()
    device_name = "cpu" if a.fallback else "cuda"
    a.steps = a.steps if a.steps is not None else (5 if a.fallback else 200)
    a.warmup = a.warmup if a.warmup is not None else (2 if a.fallback else 20)
    a.agree_steps = a.agree_steps if a.agree_steps is not None else (20 if a.fallback else 50)
    models = [m for m in a.models.split(",") if m]
    batches = [int(b) for b in a.batches.split(",") if b]
    precisions = [p for p in a.precisions.split(",") if p]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"gpu_check: unknown model(s) {unknown}: expected {', '.join(MODELS)}", file=sys.stderr)
        return 2

    results, skipped, durations = [], [], {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp, contextlib.redirect_stdout(sys.stderr):
        runner = Runner(a, device_name, Path(tmp))
        say(f"device {device_name}{' (fallback: no CUDA)' if a.fallback and not a.cpu_fallback else ''}, "
            f"torch {torch.__version__}, data in {runner.data_dir}")
        bf16_ok, bf16_why = bf16_supported(torch.device(device_name))
        t0 = time.perf_counter()
        agree = agreement(runner)
        say(f"agreement: {json.dumps(agree)} ({time.perf_counter() - t0:.1f}s)")
        for model in models:
            for batch in batches:
                for precision in precisions:
                    key = (model, batch, precision)
                    if precision == "bf16" and not bf16_ok:
                        skipped.append({"model": model, "batch": batch, "precision": precision, "reason": f"bf16 unsupported: {bf16_why}"})
                        continue
                    elapsed = time.perf_counter() - start
                    estimate = estimate_seconds(durations, model, batch)
                    if should_skip(elapsed, estimate, a.max_seconds):
                        skipped.append({"model": model, "batch": batch, "precision": precision,
                                        "reason": f"time budget: {elapsed:.0f}s spent + ~{estimate:.0f}s > --max-seconds {a.max_seconds:g}"})
                        say(f"skip {key}: {skipped[-1]['reason']}")
                        continue
                    t0 = time.perf_counter()
                    row = measure(runner, model, batch, precision)
                    durations[key] = row["seconds"] = round(time.perf_counter() - t0, 2)
                    results.append(row)
                    say(json.dumps(row))
        prepare_s = runner.prepare_seconds
        source, agree_source = runner.source_overrides(False), runner.source_overrides(True)
        data_dir = runner.data_dir

    out = {
        "device": torch.cuda.get_device_name(0) if device_name == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "fallback": a.fallback,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "steps": a.steps, "warmup": a.warmup,
        "data": {"overrides": a.override, "timed_runs": source, "agreement_runs": agree_source,
                 "data_dir": data_dir if (a.data_dir or os.environ.get("CTRBENCH_DATA_DIR")) else "(temporary)",
                 "prepare_seconds": round(prepare_s, 1)},
        "timing": "whole training iterations (batch gather + copy + step), device synchronised before each clock read; "
                  "eval: one fp32 pass over the test split",
        "results": results,
        "skipped": skipped,
        "agreement": agree,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
