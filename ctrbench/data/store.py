"""Processed datasets on disk: Parquet files plus ``manifest.json``, cached by a hash of the config.

Layout of ``<data_dir>/processed/<name>-<hash>/``:

    behaviours.parquet   user, item, cate, time [, rating]   (sorted by user, then time: the CSR streams)
    items.parquet        item, cate               (category of every item id, 0 = padding)
    train.parquet        user, item, cate, label, hist_end [, score] [, hist_start]
    valid.parquet        (same)
    test.parquet         (same)
    manifest.json        config, vocab sizes, row counts, sha256 of every file, versions, stats

A dataset is written into a temporary sibling folder and renamed into place only when complete,
so an interrupted ``prepare`` never leaves a folder that ``load`` would trust: ``load`` requires
``manifest.json`` (written last) and checks every file's checksum against it. The manifest carries
a checksum of its own content too (``manifest_sha256``), so a damaged manifest is caught as well.
A mismatch is a ``CorruptFile`` naming the file, the expected and the found digest;
``prepare.load_dataset`` then rebuilds the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import ctrbench
from ctrbench.atomic import atomic_write_text, fsync_dir, fsync_file, make_temp_dir, write_failed
from ctrbench.checksums import file_digest
from ctrbench.data.schema import SPLITS, ProcessedDataset, Samples, Streams, Vocab
from ctrbench.errors import CorruptFile, DataError, WriteFailed

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = "manifest_sha256"
REBUILD = "re-run `ctrbench prepare dataset=... force=true` (`ctrbench train` rebuilds it by itself)"


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(target.parent, f".{target.name}.tmp-")  # 0o777 less the umask, as mkdir gives
    except OSError as e:
        raise write_failed(target, e) from e
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
            fsync_file(tmp / fname)
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
        manifest = json.loads(json.dumps(manifest, default=_json_default))  # plain JSON types
        manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        fsync_dir(tmp)
        if target.exists() and not (target / MANIFEST).exists():
            # An incomplete folder (no manifest) is never trusted: replace it.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
            fsync_dir(target.parent)
        except OSError:
            # Another process finished the same dataset first: keep theirs (identical content).
            if (target / MANIFEST).exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, WriteFailed):
            raise write_failed(target, e) from e
        raise
    return target


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o)}")


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's content (canonical JSON, sorted keys), without its own checksum."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def read_manifest(path: Path) -> dict:
    """The manifest of a processed dataset; ``DataError`` when there is none (an incomplete
    folder), ``CorruptFile`` when it is damaged."""
    mpath = Path(path) / MANIFEST
    if not mpath.exists():
        raise DataError(f"'{path}' is not a complete processed dataset: {MANIFEST} is missing (re-run `ctrbench prepare`)")
    try:
        manifest = json.loads(mpath.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        reason = f"'{mpath}' is not valid JSON ({str(e).splitlines()[0][:120]})"
        raise CorruptFile(f"{reason}; {REBUILD}", path=mpath, reason=reason) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checksums"), dict):
        reason = f"'{mpath}' is not a processed-dataset manifest (no 'checksums')"
        raise CorruptFile(f"{reason}; {REBUILD}", path=mpath, reason=reason)
    expected = manifest.get(MANIFEST_CHECKSUM)
    if expected is not None:  # manifests written before the field existed have none
        found = manifest_checksum(manifest)
        if found != expected:
            reason = f"'{mpath}' does not match its own checksum (sha256 {found}, expected {expected}): it changed after it was written"
            raise CorruptFile(f"{reason}; {REBUILD}", path=mpath, expected=expected, found=found, reason=reason)
    return manifest


def verify(path: str | Path, manifest: dict | None = None) -> None:
    """Check every file of a processed dataset against the sha256 in its manifest; ``CorruptFile``
    names the first file that is missing or differs (expected vs found digest)."""
    path = Path(path)
    manifest = read_manifest(path) if manifest is None else manifest
    for fname, digest in manifest["checksums"].items():
        fpath = path / fname
        if not fpath.is_file():
            reason = f"'{fpath}' is missing from the processed dataset"
            raise CorruptFile(f"{reason}; {REBUILD}", path=fpath, expected=digest, reason=reason)
        found = file_digest(fpath)
        if found != digest:
            reason = f"'{fpath}' does not match its checksum in {MANIFEST} (sha256 {found}, expected {digest}): it changed after it was written"
            raise CorruptFile(f"{reason}; {REBUILD}", path=fpath, expected=digest, found=found, reason=reason)


_verify = verify  # ``load``'s parameter shadows the function


def is_intact(path: str | Path) -> bool:
    """Whether ``verify`` passes."""
    try:
        verify(path)
    except CorruptFile:
        return False
    return True


def load(path: str | Path, verify: bool = True) -> ProcessedDataset:
    """Load a processed dataset written by ``write``; checks checksums when ``verify``."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"'{path}' has format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; re-run `ctrbench prepare`"
        )
    if verify:
        _verify(path, manifest)
    else:
        for fname in manifest["checksums"]:
            if not (path / fname).is_file():
                reason = f"'{path / fname}' is missing from the processed dataset"
                raise CorruptFile(f"{reason}; {REBUILD}", path=path / fname, reason=reason)

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
            hist_end=c["hist_end"], score=c.get("score"), hist_start=c.get("hist_start"),
        )
    return ProcessedDataset(name=manifest["name"], vocab=vocab, streams=streams, item_cate=item_cate, splits=splits, manifest=manifest)
