"""Serving latency of one request (a user, a history of L behaviours, C candidates): p50 / p99 and
requests per second, for DIN and DIEN, on 1 and 2 CPU threads, eager and exported.

    python scripts/bench_serve.py                                   # the whole grid (a few minutes)
    python scripts/bench_serve.py --model dien --candidates 100 --history 50 --threads 1
    python scripts/bench_serve.py --run outputs/<date>/<time>        # a trained run's weights and requests
    python scripts/bench_serve.py --predict outputs/<date>/<time>    # `predict` vs `evaluate` throughput instead

One JSON line per configuration on stdout (``--jsonl F`` appends them to F too), with at least
model, candidates, history, threads, format, p50_ms, p99_ms, requests_per_s. Formats:

* ``eager``: the request path (ctrbench/serve/request.py), user-side work once per request;
* ``torchscript``: the same module through ``torch.jit.script``;
* ``rows``: the baseline, the model's own forward on the request's C rows (the history repeated per
  candidate, as a row-wise batch scores them);
* ``export-torchscript`` / ``export-onnx``: the artifacts ``ctrbench export`` wrote for ``--run``
  (``<run>/export/model.torchscript.pt``, ``model.onnx``; onnxruntime when installed), fed the C rows.

Each configuration is timed ``--repeats`` times (each at least ``--min-requests`` requests and
``--seconds`` seconds, but at most ``--max-seconds`` once it has 15, after a warm-up), cycling
through 32 distinct requests; p50_ms / p99_ms are
the medians over the repeats and best_p50_ms / best_p99_ms the best repeat (on a shared machine the
best is the closer estimate of the code's own cost). requests_per_s is one stream of sequential
requests: requests / wall time. cpu_p50_ms / cpu_p99_ms: the process's CPU time per request (all its
threads), which a loaded machine inflates less than wall time. Every line also says how far its logits are from the ``rows``
baseline's (max_abs_diff), the commit, the date and the load average.

Without ``--run`` the models have random weights and the vocabulary of Amazon Electronics (192,403
users, 63,001 items, 801 categories; the DIN paper's Table 1), the default model configs
(conf/model/din.yaml, dien.yaml) and PReLU; requests draw uniform random ids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("din", "dien")
CANDIDATES = (1, 100, 500)
HISTORIES = (20, 100)
# the target points (1 thread): DIEN and DIN, 100 candidates with a history of 50 (and 500)
EXTRA = ((100, 50), (500, 50))
THREADS = (1, 2)
FORMATS = ("eager", "torchscript", "rows", "export-torchscript", "export-onnx")
MIN_SLOW_REQUESTS = 15  # a repeat past max_seconds still times at least this many requests
ELECTRONICS = (192404, 63002, 802)  # vocabulary sizes with the padding id 0


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build(model_name: str, run: Path | None):
    """(model in eval mode, vocab, requests source) for the bench."""
    from omegaconf import OmegaConf

    from ctrbench.data.schema import Vocab
    from ctrbench.train.build import build_model

    if run is not None:
        from ctrbench.serve.predict import load_run

        loaded = load_run(run, os.environ.get("CTRBENCH_DATA_DIR", "data"))
        return loaded.model.eval(), loaded.dataset.vocab, loaded
    torch.manual_seed(0)
    vocab = Vocab(*ELECTRONICS)
    conf = ROOT / "conf"
    model = build_model(OmegaConf.load(conf / "model" / f"{model_name}.yaml"), OmegaConf.load(conf / "act" / "prelu.yaml"), vocab)
    return model.eval(), vocab, None


def make_requests(vocab, C: int, L: int, n: int = 32, seed: int = 0, loaded=None) -> list[tuple[torch.Tensor, ...]]:
    """``n`` requests (user [1], hist_item [L], hist_cate [L], item [C], cate [C]): uniform random ids,
    or, with a run, histories of its test rows (cut or repeated to L) and random candidates with
    their own categories."""
    g = torch.Generator().manual_seed(seed)
    out = []
    item_cate = None if loaded is None else torch.from_numpy(np.array(loaded.dataset.item_cate, dtype=np.int64))
    for r in range(n):
        user = torch.randint(1, vocab.n_users, (1,), generator=g)
        if loaded is None:
            hi = torch.randint(1, vocab.n_items, (L,), generator=g)
            hc = torch.randint(1, vocab.n_cates, (L,), generator=g)
            it = torch.randint(1, vocab.n_items, (C,), generator=g)
            ca = torch.randint(1, vocab.n_cates, (C,), generator=g)
        else:
            st = loaded.dataset.streams
            s = loaded.dataset.splits["test"]
            row = int(torch.randint(0, len(s), (1,), generator=g))
            u = int(s.user[row])
            stream = torch.from_numpy(np.array(st.item[st.offsets[u] : st.offsets[u + 1]], dtype=np.int64))
            if len(stream) == 0:
                stream = torch.randint(1, vocab.n_items, (1,), generator=g)
            hi = stream.repeat((L + len(stream) - 1) // len(stream))[-L:]
            hc = item_cate[hi]
            user = torch.tensor([u])
            it = torch.randint(1, vocab.n_items, (C,), generator=g)
            ca = item_cate[it]
        out.append((user, hi, hc, it, ca))
    return out


def runners(model, fmt: str, run: Path | None):
    """A callable(request) -> logits [C] for ``fmt``, or None when it is not available (with why)."""
    from ctrbench.serve.request import request_batch, request_scorer

    if fmt == "eager":
        scorer = request_scorer(model).eval()
        return (lambda req: scorer(*req)), None
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(request_scorer(model).eval())
        return (lambda req: scripted(*req)), None
    if fmt == "rows":
        return (lambda req: model(request_batch(*req)).logits), None
    if run is None:
        return None, "needs --run (the artifacts of `ctrbench export`)"
    if fmt == "export-torchscript":
        path = run / "export" / "model.torchscript.pt"
        if not path.exists():
            return None, f"no {path} (run `ctrbench export {run}`)"
        art = torch.jit.load(str(path))

        def call(req):
            b = request_batch(*req)
            return art(b.user.contiguous(), b.item, b.cate, b.hist_item.contiguous(), b.hist_cate.contiguous(), b.hist_len)

        return call, None
    if fmt == "export-onnx":
        path = run / "export" / "model.onnx"
        try:
            import onnxruntime as ort
        except ImportError:
            return None, "onnxruntime is not installed"
        if not path.exists():
            return None, f"no {path} (run `ctrbench export {run} format=onnx`)"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def call(req):
            b = request_batch(*req)
            feed = dict(zip(names, (b.user, b.item, b.cate, b.hist_item, b.hist_cate, b.hist_len)))
            return torch.from_numpy(sess.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in feed.items()})[0])

        return call, None
    raise ValueError(fmt)


def time_config(call, requests, repeats: int, min_requests: int, seconds: float, warmup: int, max_seconds: float = 2.0) -> dict:
    """Latencies of ``call`` over the requests, ``repeats`` times."""
    reps = []
    with torch.inference_mode():
        for i in range(warmup):
            call(requests[i % len(requests)])
        for _ in range(repeats):
            lat, cpu = [], []
            t_start = time.perf_counter()
            i = 0
            while i < min_requests or time.perf_counter() - t_start < seconds:
                req = requests[i % len(requests)]
                t0, c0 = time.perf_counter(), time.process_time()
                call(req)
                lat.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                i += 1
                if i >= MIN_SLOW_REQUESTS and time.perf_counter() - t_start >= max_seconds:
                    break  # a slow configuration: at most max_seconds per repeat
            wall = time.perf_counter() - t_start
            a, c = np.asarray(lat) * 1e3, np.asarray(cpu) * 1e3
            reps.append({"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                         "cpu_p50_ms": float(np.percentile(c, 50)), "cpu_p99_ms": float(np.percentile(c, 99)),
                         "mean_ms": float(a.mean()), "requests": len(a), "requests_per_s": len(a) / wall})
    med = lambda k: statistics.median(r[k] for r in reps)
    return {
        "p50_ms": round(med("p50_ms"), 3), "p99_ms": round(med("p99_ms"), 3), "requests_per_s": round(med("requests_per_s"), 1),
        "mean_ms": round(med("mean_ms"), 3), "cpu_p50_ms": round(med("cpu_p50_ms"), 3), "cpu_p99_ms": round(med("cpu_p99_ms"), 3),
        "best_p50_ms": round(min(r["p50_ms"] for r in reps), 3), "best_p99_ms": round(min(r["p99_ms"] for r in reps), 3),
        "best_requests_per_s": round(max(r["requests_per_s"] for r in reps), 1),
        "repeats": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in reps],
    }


def latency(args) -> None:
    from ctrbench.runtime import tune_malloc
    from ctrbench.serve.request import request_batch

    tune_malloc()  # as every ctrbench process: mid-size blocks stay on the heap (ctrbench/runtime.py)
    torch.set_num_interop_threads(1)
    run = Path(args.run) if args.run else None
    grid = [(c, h) for c in args.candidates for h in args.history]
    if args.extra:
        grid += [x for x in EXTRA if x not in grid]
    meta = {"commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S%z"), "torch": torch.__version__,
            "weights": str(run) if run else "random (Amazon Electronics vocabulary)"}
    out = open(args.jsonl, "a") if args.jsonl else None  # noqa: SIM115 - appended to line by line, for the whole grid
    for name in args.model:
        model, vocab, loaded = build(name, run)
        if run is not None and loaded.cfg.model.name != name:
            print(f"# --run is a {loaded.cfg.model.name} run: --model {name} skipped", file=sys.stderr)
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            calls = {}
            for fmt in args.format:
                call, why = runners(model, fmt, run)
                if call is None:
                    if fmt in args.explicit_formats:
                        print(f"# {name} {fmt}: skipped: {why}", file=sys.stderr)
                    continue
                calls[fmt] = call
            for C, L in grid:
                requests = make_requests(vocab, C, L, loaded=loaded)
                with torch.inference_mode():
                    ref = model(request_batch(*requests[0])).logits
                for fmt, call in calls.items():
                    with torch.inference_mode():
                        diff = float((call(requests[0]).reshape(-1) - ref).abs().max())
                    load0 = os.getloadavg()[0]
                    r = time_config(call, requests, args.repeats, args.min_requests, args.seconds, args.warmup, args.max_seconds)
                    line = {"model": name, "candidates": C, "history": L, "threads": threads, "format": fmt, **{
                        k: r[k] for k in ("p50_ms", "p99_ms", "requests_per_s", "mean_ms", "best_p50_ms", "best_p99_ms",
                                          "best_requests_per_s", "cpu_p50_ms", "cpu_p99_ms")},
                        "max_abs_diff": diff, "repeats": r["repeats"], "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)], **meta}
                    text = json.dumps(line)
                    print(text, flush=True)
                    if out:
                        out.write(text + "\n")
                        out.flush()


def throughput(args) -> None:
    """``predict`` against ``evaluate`` on the run's ``--split``: rows/s of evaluate's scoring (its
    own figure: predict_logits + metrics), of ``predict split=`` (scoring + writing Parquet) and of
    ``predict input=`` on the split's rows written as Parquet and CSV (reading, id mapping, scoring,
    writing). One JSON line each."""
    import tempfile

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf

    from ctrbench.serve.predict import (
        _lists_joined,
        load_run,
        predict_file,
        predict_split,
    )
    from ctrbench.train.evaluate import eval_batcher, evaluate

    threads = args.threads[0]
    run = load_run(args.predict, os.environ.get("CTRBENCH_DATA_DIR", "data"), OmegaConf.create({"type": "cpu", "threads": threads, "tune_malloc": True}))
    split = args.split
    ds, cut = run.dataset, run.cut(split)
    s, st = ds.splits[split], ds.streams
    start = st.offsets[s.user] + np.maximum(s.history_start(), s.hist_end - cut)
    lens = st.offsets[s.user] + s.hist_end - start
    flat = np.repeat(start - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(int(lens.sum()))
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    table = pa.table({"user": s.user, "item": s.item, "cate": s.cate, "hist_item": pa.ListArray.from_arrays(off, st.item[flat]),
                      "hist_cate": pa.ListArray.from_arrays(off, st.cate[flat]), "label": s.label})
    meta = {"model": run.cfg.model.name, "rows": len(s), "split": split, "threads": torch.get_num_threads(), "commit": commit(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S%z")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pq.write_table(table, tmp / "rows.parquet")
        pacsv.write_csv(_lists_joined(table, "|"), tmp / "rows.csv")
        for rep in range(args.repeats):
            b = eval_batcher(ds, split, None, run.model, run.device, cut)
            _, secs = evaluate(run.model, b, run.device, "impressions", run.reg)
            results = {"evaluate": len(s) / secs}
            results["predict-split"] = predict_split(run, split, tmp / "out.parquet")["rows_per_s"]
            results["predict-parquet"] = predict_file(run, tmp / "rows.parquet", tmp / "out.parquet", "processed", max_len=cut)["rows_per_s"]
            results["predict-csv"] = predict_file(run, tmp / "rows.csv", tmp / "out.csv", "raw", max_len=cut)["rows_per_s"]
            for what, rps in results.items():
                print(json.dumps({**meta, "what": what, "repeat": rep, "rows_per_s": round(rps, 1), "loadavg": round(os.getloadavg()[0], 2)}), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", choices=MODELS, default=None)
    p.add_argument("--candidates", nargs="+", type=int, default=None, help=f"C (default {CANDIDATES})")
    p.add_argument("--history", nargs="+", type=int, default=None, help=f"L (default {HISTORIES})")
    p.add_argument("--threads", nargs="+", type=int, default=None, help=f"torch CPU threads (default {THREADS})")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=None)
    p.add_argument("--run", default=None, help="a trained run folder: its weights, vocabulary, histories and exported artifacts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-requests", type=int, default=40)
    p.add_argument("--seconds", type=float, default=0.4, help="at least this long per repeat")
    p.add_argument("--max-seconds", type=float, default=2.0, help="a repeat stops here once it has 15 requests (slow configurations)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--jsonl", default=None, help="also append the lines to this file")
    p.add_argument("--predict", default=None, metavar="RUN_DIR", help="instead: predict vs evaluate throughput on this run's --split")
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
    if args.predict:
        args.threads = args.threads or [1]
        throughput(args)
        return
    # no flag: the whole grid, plus the target points (C=100 and 500 with L=50)
    args.extra = args.candidates is None and args.history is None
    if args.run and not args.model:
        from omegaconf import OmegaConf

        args.model = [str(OmegaConf.load(Path(args.run) / "config.yaml").model.name)]
    args.model = args.model or list(MODELS)
    args.candidates = args.candidates or list(CANDIDATES)
    args.history = args.history or list(HISTORIES)
    args.threads = args.threads or list(THREADS)
    args.explicit_formats = set(args.format or [])
    args.format = args.format or list(FORMATS)
    if min(args.candidates) < 1 or min(args.threads) < 1 or min(args.history) < 0:
        p.error("--candidates and --threads must be >= 1, --history >= 0")
    latency(args)


if __name__ == "__main__":
    main()
