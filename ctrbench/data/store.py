"""Processed datasets on disk: Parquet files plus ``manifest.json``, cached by a hash of the config.

Layout of ``<data_dir>/processed/<name>-<hash>/``:

    behaviours.parquet   user, item, cate, time [, rating]   (sorted by user, then time: the CSR streams)
    items.parquet        item, cate               (category of every item id, 0 = padding)
    train.parquet        user, item, cate, label, hist_end [, score]
    valid.parquet        (same)
    test.parquet         (same)
    manifest.json        config, vocab sizes, row counts, sha256 of every file, versions, stats

A dataset is written into a temporary sibling folder and renamed into place only when complete,
so an interrupted ``prepare`` never leaves a folder that ``load`` would trust: ``load`` requires
``manifest.json`` (written last) and checks every file's checksum against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import ctrbench
from ctrbench.atomic import atomic_write_text
from ctrbench.checksums import file_digest
from ctrbench.data.schema import SPLITS, ProcessedDataset, Samples, Streams, Vocab
from ctrbench.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def config_hash(config: dict) -> str:
    """A stable hash of the dataset's content-defining config (source + protocol + format)."""
    blob = json.dumps({"format": FORMAT_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dataset_dir(data_dir: str | Path, name: str, config: dict) -> Path:
    return Path(data_dir) / "processed" / f"{name}-{config_hash(config)}"


def write(
    target: Path,
    name: str,
    config: dict,
    streams: Streams,
    item_cate: np.ndarray,
    splits: dict[str, Samples],
    extra: dict,
) -> Path:
    """Write a processed dataset atomically to ``target``; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        users = np.repeat(np.arange(len(streams.offsets) - 1, dtype=np.int64), streams.lengths())
        files = {
            "behaviours.parquet": {
                "user": users, "item": streams.item, "cate": streams.cate, "time": streams.time,
                **({} if streams.rating is None else {"rating": streams.rating}),
            },
            "items.parquet": {"item": np.arange(len(item_cate), dtype=np.int64), "cate": item_cate},
        }
        for split in SPLITS:
            files[f"{split}.parquet"] = splits[split].columns()
        for fname, cols in files.items():
            pq.write_table(pa.table(cols), tmp / fname, compression="zstd")
        vocab = Vocab(
            n_users=len(streams.offsets) - 1,
            n_items=len(item_cate),
            n_cates=int(max(item_cate.max(initial=0), streams.cate.max(initial=0))) + 1,
        )
        manifest = {
            "name": name,
            "format_version": FORMAT_VERSION,
            "config": config,
            "config_hash": config_hash(config),
            "vocab": vocab.__dict__,
            "rows": {"behaviours": streams.n_behaviours, **{s: len(splits[s]) for s in SPLITS}},
            "checksums": {f: file_digest(tmp / f) for f in files},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ctrbench_version": ctrbench.__version__,
            **extra,
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, default=_json_default))
        if target.exists() and not (target / MANIFEST).exists():
            # An incomplete folder (no manifest) is never trusted: replace it.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same dataset first: keep theirs (identical content).
            if (target / MANIFEST).exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o)}")


def read_manifest(path: Path) -> dict:
    mpath = Path(path) / MANIFEST
    if not mpath.exists():
        raise DataError(f"'{path}' is not a complete processed dataset: {MANIFEST} is missing (re-run `ctrbench prepare`)")
    try:
        return json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"'{mpath}' is not valid JSON ({e.msg} at line {e.lineno}); delete the folder and re-run `ctrbench prepare`") from None


def load(path: str | Path, verify: bool = True) -> ProcessedDataset:
    """Load a processed dataset written by ``write``; checks checksums when ``verify``."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"'{path}' has format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; re-run `ctrbench prepare`"
        )
    for fname, digest in manifest["checksums"].items():
        fpath = path / fname
        if not fpath.exists():
            raise DataError(f"'{fpath}' is missing from the processed dataset; re-run `ctrbench prepare dataset=... force=true`")
        if verify and file_digest(fpath) != digest:
            raise DataError(f"'{fpath}' does not match its checksum in {MANIFEST} (corrupted?); re-run `ctrbench prepare ... force=true`")

    def cols(fname: str) -> dict[str, np.ndarray]:
        t = pq.read_table(path / fname)
        return {c: t.column(c).to_numpy() for c in t.column_names}

    vocab = Vocab(**manifest["vocab"])
    beh = cols("behaviours.parquet")
    counts = np.bincount(beh["user"], minlength=vocab.n_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    streams = Streams(offsets=offsets, item=beh["item"], cate=beh["cate"], time=beh["time"], rating=beh.get("rating"))
    item_cate = cols("items.parquet")["cate"]
    splits = {}
    for split in SPLITS:
        c = cols(f"{split}.parquet")
        splits[split] = Samples(
            user=c["user"], item=c["item"], cate=c["cate"], label=c["label"].astype(np.float32),
            hist_end=c["hist_end"], score=c.get("score"),
        )
    return ProcessedDataset(name=manifest["name"], vocab=vocab, streams=streams, item_cate=item_cate, splits=splits, manifest=manifest)
