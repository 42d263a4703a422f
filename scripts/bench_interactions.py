"""Benchmark ``dataset=interactions``: read + encode an Electronics-size behaviour log in each format.

    python scripts/bench_interactions.py                          # 1,689,188 rows: CSV, Parquet, JSON lines
    python scripts/bench_interactions.py --rows 100000 --out /tmp/bench_small --formats csv
    python scripts/bench_interactions.py --amazon /tmp/bench_amazon   # + the Amazon reader, same sitting
    python scripts/bench_interactions.py --formats ratings              # vs the MovieLens reader, one file

Writes ``clicks.csv`` / ``clicks.parquet`` / ``clicks.jsonl`` into ``--out`` (reused unless
``--force``): one behaviour a row, columns ``uid`` (Amazon-like reviewer ids), ``sku`` (asin-like
item ids), ``ts`` (integer seconds), ``rating`` and ``cat`` (the item's category); sizes follow
the DIN paper's Electronics set (192,403 users, 63,001 items, 801 categories, 1,689,188 rows). The
content is random; only the sizes and the id shapes are realistic.

``--formats ratings`` writes the same rows as ``ratings.csv`` in the MovieLens-20M layout
(``userId,movieId,rating,timestamp``, integer ids) and times, on that one file, both the built-in
MovieLens ratings reader (``read_ratings_csv`` + ``encode``) and ``dataset=interactions``: the
like-for-like comparison with a built-in delimited reader.

Each format is then measured in a fresh process: ``InteractionsSource.read`` + ``encode`` (what
``scripts/bench_prepare_amazon.py`` times for the Amazon reader), printing seconds, rows/s and the
peak resident memory. ``--amazon DIR`` also runs that script's measurement on the Amazon files it
wrote there (``python scripts/bench_prepare_amazon.py --out DIR``), so the two rates come from one
sitting: on a shared machine, compare rates measured together, not across days.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("csv", "parquet", "jsonl", "ratings")
ALPHANUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
COLUMNS = {"user": "uid", "item": "sku", "time": "ts", "rating": "rating", "category": "cat"}
ML_COLUMNS = {"user": "userId", "item": "movieId", "time": "timestamp", "rating": "rating"}


def file_of(out: Path, fmt: str) -> Path:
    return out / ("ratings.csv" if fmt == "ratings" else f"clicks.{fmt}")


def random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """n distinct ids: ``prefix`` + ``length`` random upper-case letters and digits."""
    out: set[str] = set()
    while len(out) < n:
        chars = ALPHANUM[rng.integers(0, len(ALPHANUM), size=(n, length))]
        out.update(prefix + row.tobytes().decode() for row in chars)
    return np.array(sorted(out)[:n], dtype=object)


def generate(out: Path, rows: int, users: int, items: int, cates: int, seed: int, formats: list[str]) -> None:
    import pandas as pd

    rng = np.random.default_rng(seed)
    user_ids, item_ids = random_ids(rng, users, "A", 13), random_ids(rng, items, "B00", 7)
    item_cate = np.array([f"Category {c}" for c in rng.integers(0, cates, size=items)], dtype=object)
    # Every user has at least 5 rows (a 5-core log, as the Amazon files); items Zipf-like.
    per_user = np.full(users, min(5, rows // users))
    per_user += np.bincount(rng.integers(0, users, size=rows - per_user.sum()), minlength=users)
    user = np.repeat(np.arange(users), per_user)
    item = np.minimum(rng.zipf(1.3, size=rows) - 1, items - 1)
    frame = pd.DataFrame({
        "uid": user_ids[user], "sku": item_ids[item], "ts": rng.integers(1_000_000_000, 1_400_000_000, size=rows),
        "rating": rng.integers(1, 6, size=rows).astype(float), "cat": item_cate[item],
    }).sample(frac=1.0, random_state=seed)  # rows in no particular order, as a log export
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        t0 = time.perf_counter()
        path = file_of(out, fmt)
        if fmt == "ratings":
            idx = frame.index.to_numpy()  # the same rows, in the same (shuffled) order, with integer ids
            pd.DataFrame({"userId": user[idx] + 1, "movieId": item[idx] + 1, "rating": frame.rating.to_numpy(),
                          "timestamp": frame.ts.to_numpy()}).to_csv(path, index=False)
        elif fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")


def measure(path: Path, reader: str = "interactions") -> None:
    """Read + encode one file in this (fresh) process; print timings and peak RSS. ``reader``:
    interactions, or movielens (the built-in ratings.csv reader)."""
    from ctrbench.data.encode import encode
    from ctrbench.data.sources.interactions import InteractionsSource
    from ctrbench.data.sources.movielens import read_ratings_csv
    from ctrbench.data.sources.raw import LineErrors

    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if reader == "movielens":
        events, meta, report = read_ratings_csv(path, LineErrors(path)), None, {"rows_read": None, "duplicate_rows": None}
    else:
        source = InteractionsSource(path=str(path), columns=dict(ML_COLUMNS if path.name == "ratings.csv" else COLUMNS))
        inputs = source.locate(path.parent, "interactions_bench")
        t0, c0 = time.perf_counter(), time.process_time()
        events, meta, report = source.read(inputs)
    t1 = time.perf_counter()
    _, _, encoded = encode(events, meta)
    t2, c2 = time.perf_counter(), time.process_time()
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{reader}, {path.name} ({path.stat().st_size / 2**20:.0f} MiB): read {t1 - t0:.1f} s   encode {t2 - t1:.1f} s   "
          f"total {t2 - t0:.1f} s (CPU {c2 - c0:.1f} s)   {len(events) / (t2 - t0):,.0f} rows/s   peak RSS {rss_gib:.2f} GiB   "
          f"load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"    rows read {report['rows_read']}, duplicates {report['duplicate_rows']}; encoded {encoded}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_interactions"))
    ap.add_argument("--rows", type=int, default=1_689_188)
    ap.add_argument("--users", type=int, default=192_403)
    ap.add_argument("--items", type=int, default=63_001)
    ap.add_argument("--cates", type=int, default=801)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, of " + ", ".join(FORMATS))
    ap.add_argument("--amazon", type=Path, default=None, help="also time the Amazon reader on the files bench_prepare_amazon.py wrote there")
    ap.add_argument("--force", action="store_true", help="write the files again even when they are there")
    ap.add_argument("--measure-only", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reader", default="interactions", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure_only is not None:
        measure(args.measure_only, args.reader)
        return
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        ap.error(f"--formats: unknown {unknown[0]!r}; expected some of {', '.join(FORMATS)}")
    if args.users > args.rows:
        ap.error("--users must not exceed --rows")
    missing = [f for f in formats if not file_of(args.out, f).is_file()]
    if args.force or missing:
        generate(args.out, args.rows, args.users, args.items, args.cates, args.seed, formats if args.force else missing)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    for fmt in formats:
        readers = ["movielens", "interactions"] if fmt == "ratings" else ["interactions"]
        for reader in readers:
            subprocess.run([sys.executable, __file__, "--measure-only", str(file_of(args.out, fmt)), "--reader", reader], check=True)
    if args.amazon is not None:
        script = Path(__file__).resolve().parent / "bench_prepare_amazon.py"
        print(f"Amazon reader on {args.amazon}:")
        subprocess.run([sys.executable, str(script), "--out", str(args.amazon), "--measure-only"], check=True)


if __name__ == "__main__":
    main()
