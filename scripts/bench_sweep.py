"""Benchmark: a shortened din_table3 sweep, with the default parallel plan and one job at a time.

Issue 21's target: the sweep's wall time with the default plan (jobs side by side, the cores split
between them) at most 0.6x that of the same sweep run one job at a time (``hydra/launcher=basic``,
each job with the default ``device.threads``), on 2 cores. Prints one JSON line:

    {"jobs": 14, "cores": 2, "parallel_s": ..., "basic_s": ..., "ratio": ..., "target": 0.6, ...}

    python scripts/bench_sweep.py                                   # 7 rows x seeds 1,2, 300 steps each
    python scripts/bench_sweep.py --max-steps 1000 --seeds 1,2,3
    python scripts/bench_sweep.py --rows lr,base,din --override dataset=amazon_electronics
    python scripts/bench_sweep.py --max-steps 4 --seeds 1 --rows lr,base --override +debug=fast   # a smoke test

The processed dataset is built first (``ctrbench prepare``, in --data-dir), so neither timing
includes it. Run it on a quiet machine; the two sweeps run one after the other (--order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = ("lr", "base", "wdl", "pnn", "deepfm", "din", "din_dice")


def run(cmd: list[str], env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode} (log: {log}):\n{tail}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-steps", type=int, default=300, help="trainer.max_steps of each job")
    ap.add_argument("--seeds", default="1,2", help="the sweep's seeds (the experiment has 1-5)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"din_table3 rows to sweep (default all: {','.join(ROWS)})")
    ap.add_argument("--override", action="append", default=[], help="an extra override for every job (repeatable)")
    ap.add_argument("--basic-threads", type=int, default=None,
                    help="device.threads of the one-at-a-time sweep (default: the default, 0 = auto)")
    ap.add_argument("--order", default="parallel,basic", help="which sweep runs first")
    ap.add_argument("--workdir", default=None, help="where the sweeps and their logs go (default: a temporary folder)")
    ap.add_argument("--data-dir", default=None, help="the processed-data cache (default: <workdir>/data)")
    a = ap.parse_args()

    from ctrbench.cores import usable_cores

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-sweep-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(Path(a.data_dir).resolve() if a.data_dir else work / "data")
    env.setdefault("COLUMNS", "140")
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown din_table3 rows {unknown}: expected some of {', '.join(ROWS)}")
    ctrbench = [sys.executable, "-m", "ctrbench"]
    sweep = ["train", "-m", "+experiment=din_table3", "+row=" + ",".join(f"din_table3/{r}" for r in rows), f"seed={a.seeds}",
             *a.override, f"trainer.max_steps={a.max_steps}", "trainer.progress=false"]
    jobs = len(rows) * len([s for s in a.seeds.split(",") if s.strip()])

    dataset_overrides = [o for o in a.override if o.lstrip("+~").startswith(("dataset", "debug"))]
    run([*ctrbench, "prepare", *dataset_overrides], env, work / "prepare.log")

    walls, plan_line = {}, None
    for name in [x.strip() for x in a.order.split(",") if x.strip()]:
        if name == "parallel":
            extra = []
        elif name == "basic":
            extra = ["hydra/launcher=basic"] + ([f"device.threads={a.basic_threads}"] if a.basic_threads is not None else [])
        else:
            raise SystemExit(f"--order: unknown sweep {name!r}: expected parallel and basic")
        log = work / f"{name}.log"
        walls[name] = run([*ctrbench, *sweep, *extra, f"hydra.sweep.dir={work / name}"], env, log)
        done = len(list((work / name).glob("*/metrics.json")))
        if done != jobs:
            raise SystemExit(f"the {name} sweep left {done} metrics.json for {jobs} jobs (log: {log})")
        if name == "parallel":
            plan_line = next((line for line in log.read_text().splitlines() if line.startswith("ctrbench train: ")), None)
    out = {
        "bench": "sweep", "experiment": "din_table3", "rows": rows, "seeds": a.seeds, "jobs": jobs,
        "max_steps": a.max_steps, "overrides": a.override, "cores": usable_cores(),
        "parallel_s": round(walls.get("parallel", float("nan")), 1), "basic_s": round(walls.get("basic", float("nan")), 1),
        "ratio": round(walls["parallel"] / walls["basic"], 3) if {"parallel", "basic"} <= set(walls) else None,
        "target": 0.6, "plan": plan_line, "workdir": str(work),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
