"""Benchmark reading the Amazon 2014 files: an Electronics-size synthetic pair, then read + encode.

    python scripts/bench_prepare_amazon.py                         # 1.7M reviews, 0.5M meta lines
    python scripts/bench_prepare_amazon.py --reviews 100000 --meta 30000 --out /tmp/bench_small

Writes ``reviews_Electronics_5.json.gz`` (strict JSON lines with the real fields: reviewerID, asin,
reviewerName, helpful, reviewText, overall, summary, unixReviewTime, reviewTime) and
``meta_Electronics.json.gz`` (Python dict literals as the 2014 release has them: asin, imUrl,
related with also_bought / also_viewed / bought_together lists, salesRank, categories, title,
price, brand, description; keys in varying orders; some strings double-quoted because they hold an
apostrophe) into ``--out``; files already there are reused unless ``--force``. Sizes follow the
DIN paper's Electronics set (192,403 users, 63,001 reviewed items, 1,689,188 reviews, 801 leaf
categories, 498,196 meta lines). The content is random; only the format and sizes are realistic.

Then, in a fresh process, times ``AmazonSource.read`` and ``encode`` and prints seconds and the
peak resident memory of that process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (  # noqa: SIM905
    "the a this it is was great good bad cable sound quality price works well not very easy to use battery life "
    "screen camera lens charger case fits perfectly after months stopped working recommend would buy again "
    "cheap sturdy lightweight plug adapter usb hdmi speaker headphones bass volume remote tv player disc drive "
    "memory card fast slow setup instructions manual product amazon shipping arrived broken return customer "
    "service I'm don't can't it's \"best\" caf\u00e9 5\" 10-inch"
).split()
ALPHANUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
KEY_ORDERS = (  # orders of the 2014 meta keys, as they vary in the real files (Python 2 dict order)
    ("asin", "categories", "description", "title", "price", "salesRank", "imUrl", "related"),
    ("asin", "related", "title", "price", "salesRank", "imUrl", "brand", "categories", "description"),
    ("asin", "title", "price", "imUrl", "related", "salesRank", "categories"),
    ("asin", "description", "title", "price", "imUrl", "salesRank", "categories"),
    ("asin", "imUrl", "salesRank", "categories"),
)


def random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> list[str]:
    """n distinct ids like ``A2SUAM1J3GNN3B`` (prefix + random upper-case letters and digits)."""
    out: set[str] = set()
    while len(out) < n:
        chars = ALPHANUM[rng.integers(0, len(ALPHANUM), size=(n, length))]
        out.update(prefix + row.tobytes().decode() for row in chars)
    return sorted(out)[:n]


def text_pool(rng: np.random.Generator, n: int, mean_words: int) -> list[str]:
    """n random texts of about ``mean_words`` words."""
    lengths = rng.geometric(1.0 / mean_words, size=n)
    words = np.array(WORDS, dtype=object)
    return [" ".join(words[rng.integers(0, len(words), size=k)]) for k in lengths]


def category_paths(rng: np.random.Generator, n_leaves: int) -> list[list[str]]:
    """n_leaves category paths of depth 2..4 under 'Electronics' (some names with apostrophes)."""
    tops = ["Computers & Accessories", "Camera & Photo", "Car Electronics", "Home Audio", "Kids' Electronics",
            "Portable Audio & Video", "TV & Video", "Accessories & Supplies", "GPS & Navigation", "Security"]
    paths = []
    for k in range(n_leaves):
        top = tops[k % len(tops)]
        depth = int(rng.integers(0, 3))
        mids = [f"{top.split()[0]} Group {k % 37}", f"Sub {k % 11}"][:depth]
        leaf = f"Leaf {k}" + (" Men's" if k % 50 == 0 else "")
        paths.append(["Electronics", top, *mids, leaf])
    return paths


def write_reviews(path: Path, n: int, users: list[str], items: list[str], rng: np.random.Generator) -> None:
    """``n`` review lines over ``users`` (each with >= 5 when n allows) and ``items`` (Zipf-like)."""
    per_user = np.maximum(1, np.round(rng.pareto(2.0, size=len(users)) * 4 + min(5, n // len(users))))
    per_user = np.floor(per_user * n / per_user.sum()).astype(np.int64)
    per_user[: n - int(per_user.sum())] += 1
    user_of = np.repeat(np.arange(len(users)), per_user)
    popularity = 1.0 / np.arange(1, len(items) + 1) ** 0.8
    item_of = rng.choice(len(items), size=n, p=popularity / popularity.sum())
    times = rng.integers(946684800, 1406073600, size=n) // 86400 * 86400
    texts, summaries = text_pool(rng, 20000, 110), text_pool(rng, 5000, 5)
    t_idx, s_idx = rng.integers(0, len(texts), size=n), rng.integers(0, len(summaries), size=n)
    ratings = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=n, p=[0.05, 0.05, 0.1, 0.25, 0.55])
    helpful = rng.integers(0, 5, size=(n, 2))
    day_text = {int(t): time.strftime("%m %d, %Y", time.gmtime(int(t))) for t in np.unique(times)}
    with gzip.open(path, "wt", compresslevel=1, encoding="utf-8") as f:
        for i in range(n):
            t = int(times[i])
            line = {
                "reviewerID": users[user_of[i]], "asin": items[item_of[i]], "reviewerName": f"Name {user_of[i] % 997}",
                "helpful": [int(helpful[i, 0]), int(helpful[i].sum())], "reviewText": texts[t_idx[i]],
                "overall": float(ratings[i]), "summary": summaries[s_idx[i]], "unixReviewTime": t,
                "reviewTime": day_text[t],
            }
            f.write(json.dumps(line) + "\n")


def write_meta(path: Path, n: int, reviewed: list[str], others: list[str], rng: np.random.Generator, n_leaves: int) -> None:
    """``n`` meta lines (Python dict literals): every reviewed item, then others; random key order."""
    paths = category_paths(rng, n_leaves)
    titles, descriptions = text_pool(rng, 20000, 8), text_pool(rng, 20000, 60)
    asins = reviewed + others[: max(0, n - len(reviewed))]
    order = rng.permutation(len(asins))
    pool = np.array(asins, dtype=object)
    with gzip.open(path, "wt", compresslevel=1, encoding="utf-8") as f:
        for i in order[:n]:
            n_paths = 1 + int(rng.random() < 0.3)
            fields = {
                "asin": asins[i],
                "categories": [paths[int(k)] for k in rng.integers(0, n_leaves, size=n_paths)],
                "description": descriptions[int(rng.integers(len(descriptions)))],
                "title": titles[int(rng.integers(len(titles)))],
                "price": round(float(rng.uniform(1, 500)), 2),
                "salesRank": {"Electronics": int(rng.integers(1, 500000))},
                "imUrl": f"http://ecx.images-amazon.com/images/I/{asins[i]}L._SY300_.jpg",
                "related": {
                    "also_bought": list(pool[rng.integers(0, len(pool), size=int(rng.integers(0, 60)))]),
                    "also_viewed": list(pool[rng.integers(0, len(pool), size=int(rng.integers(0, 40)))]),
                    "bought_together": list(pool[rng.integers(0, len(pool), size=int(rng.integers(0, 3)))]),
                },
                "brand": f"Brand {i % 3001}",
            }
            keys = KEY_ORDERS[int(rng.integers(len(KEY_ORDERS)))]
            f.write(repr({k: fields[k] for k in keys}) + "\n")


def generate(out: Path, n_reviews: int, n_meta: int, seed: int) -> None:
    scale = n_reviews / 1_689_188
    n_users, n_items = max(10, round(192_403 * scale)), max(10, round(63_001 * scale))
    rng = np.random.default_rng(seed)
    users = random_ids(rng, n_users, "A", 13)
    items = random_ids(rng, n_items + max(0, n_meta - n_items), "B00", 7)
    reviewed, others = items[:n_items], items[n_items:]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_reviews(out / "reviews_Electronics_5.json.gz", n_reviews, users, reviewed, rng)
    write_meta(out / "meta_Electronics.json.gz", n_meta, reviewed, others, rng, n_leaves=801)
    print(f"generated {n_reviews:,} reviews ({n_users:,} users, {n_items:,} items) and {n_meta:,} meta lines "
          f"in {time.perf_counter() - t0:.1f} s")


LOAD_BEFORE = os.getloadavg()[0]  # other jobs on the machine slow the wall-clock figures


def measure(out: Path) -> None:
    """Read + encode in this (fresh) process; print timings and peak RSS."""
    from ctrbench.data.encode import encode
    from ctrbench.data.sources.amazon import AmazonSource

    source = AmazonSource(raw_dir=str(out), category="Electronics", download=False)
    inputs = source.locate(out, "amazon_bench")
    t0, c0 = time.perf_counter(), time.process_time()
    events, meta, report = source.read(inputs)
    t1 = time.perf_counter()
    _, _, encoded = encode(events, meta)
    t2, c2 = time.perf_counter(), time.process_time()
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    sizes = {p.name: p.stat().st_size / 2**20 for p in inputs.values()}
    print("files: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()))
    print(f"read: {t1 - t0:.1f} s   encode: {t2 - t1:.1f} s   total: {t2 - t0:.1f} s (CPU {c2 - c0:.1f} s)   "
          f"peak RSS: {rss_gib:.2f} GiB   load average before/after: {LOAD_BEFORE:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"reviews {report['reviews_read']:,}, meta lines {report['meta_lines_read']:,}, "
          f"meta items {report['meta_items']:,}; encoded {encoded}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_amazon"))
    ap.add_argument("--reviews", type=int, default=1_689_188)
    ap.add_argument("--meta", type=int, default=498_196)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="write the files again even when they are there")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure_only:
        measure(args.out)
        return
    have = all((args.out / n).is_file() for n in ("reviews_Electronics_5.json.gz", "meta_Electronics.json.gz"))
    if args.force or not have:
        generate(args.out, args.reviews, args.meta, args.seed)
    else:
        print(f"reusing the files in {args.out} (--force to write them again)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    subprocess.run([sys.executable, __file__, "--out", str(args.out), "--measure-only"], check=True)


if __name__ == "__main__":
    main()
