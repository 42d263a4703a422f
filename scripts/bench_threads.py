"""Benchmark: the default thread choice (device.threads=0, auto) against fixed thread counts, on a
quiet machine and beside busy processes.

Issue 21's target: auto never loses more than 20% against the best of device.threads=1|2, quietly
and with two other busy processes (``yes > /dev/null``; this script starts and stops them itself).
Each run is ``ctrbench train`` (DIN on the default synthetic data unless --override says otherwise)
cut at --max-steps; its train samples/s comes from its metrics.json (training time only). Settings
run interleaved, --repeats rounds, medians reported. Prints JSON lines: one per (busy processes,
setting), then one summary per load with auto / best.

    python scripts/bench_threads.py                                  # busy 0 and 2, settings 0,1,2, 3 rounds
    python scripts/bench_threads.py --busy 0,1,2 --max-steps 600 --repeats 5
    python scripts/bench_threads.py --max-steps 5 --repeats 1 --override +debug=fast   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_busy(n: int) -> list[subprocess.Popen]:
    """n processes that keep one core each busy: ``yes > /dev/null`` (or a Python loop without yes)."""
    cmd = ["yes"] if shutil.which("yes") else [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    if procs:
        time.sleep(1.0)  # running, and seen as such by the run's /proc/stat sample
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def train(setting: int, a, env: dict, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "ctrbench", "train", *a.override, f"trainer.max_steps={a.max_steps}",
           "trainer.progress=false", f"device.threads={setting}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"samples_per_s": m["train_samples_per_s"], "threads": m["threads"], "threads_choice": m.get("threads_choice")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-steps", type=int, default=300, help="trainer.max_steps of each run")
    ap.add_argument("--settings", default="0,1,2", help="device.threads values to compare (0 = auto)")
    ap.add_argument("--busy", default="0,2", help="numbers of busy processes to run beside the runs")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds per load (medians reported)")
    ap.add_argument("--override", action="append", default=[], help="an extra override for every run (repeatable)")
    ap.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    ap.add_argument("--data-dir", default=None, help="the processed-data cache (default: <workdir>/data)")
    a = ap.parse_args()

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-threads-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(Path(a.data_dir).resolve() if a.data_dir else work / "data")
    settings = [int(s) for s in a.settings.split(",") if s.strip()]
    loads = [int(b) for b in a.busy.split(",") if b.strip()]
    dataset_overrides = [o for o in a.override if o.lstrip("+~").startswith(("dataset", "debug"))]
    prep = subprocess.run([sys.executable, "-m", "ctrbench", "prepare", *dataset_overrides], env=env, capture_output=True, text=True)
    if prep.returncode != 0:
        raise SystemExit(f"ctrbench prepare failed:\n{prep.stderr[-2000:]}")

    from ctrbench.cores import usable_cores

    n = 0
    for busy in loads:
        results: dict[int, list[dict]] = {s: [] for s in settings}
        for _ in range(a.repeats):
            for s in settings:
                procs = start_busy(busy)  # fresh for every run, so each starts beside the same load
                try:
                    n += 1
                    results[s].append(train(s, a, env, work / f"run{n:03d}"))
                finally:
                    stop_busy(procs)
        medians = {}
        for s in settings:
            rates = [r["samples_per_s"] for r in results[s]]
            medians[s] = statistics.median(rates)
            print(json.dumps({"bench": "threads", "busy": busy, "cores": usable_cores(), "setting": "auto" if s == 0 else str(s),
                              "threads_used": sorted({r["threads"] for r in results[s]}),
                              "threads_choice": sorted({str(r["threads_choice"]) for r in results[s]}),
                              "samples_per_s": round(medians[s], 1), "runs": [round(r, 1) for r in rates]}), flush=True)
        fixed = {s: v for s, v in medians.items() if s > 0}
        if 0 in medians and fixed:
            best = max(fixed, key=fixed.get)
            print(json.dumps({"bench": "threads", "busy": busy, "summary": True, "auto": round(medians[0], 1),
                              "best": round(fixed[best], 1), "best_setting": best,
                              "auto_vs_best": round(medians[0] / fixed[best], 3), "target": ">= 0.8"}), flush=True)


if __name__ == "__main__":
    main()
