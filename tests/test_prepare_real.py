"""`ctrbench prepare` on real-format files: end to end through the CLI on a fixture the test writes,
the cache key following the raw files, and the offline / missing-file errors."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data import download
from ctrbench.data.download import RemoteFile
from ctrbench.errors import DataError

from test_cli import ctrbench


def write_ml100k(raw: Path, n_users: int = 40, n_items: int = 30, seed: int = 0) -> None:
    """A tiny MovieLens-100K pair in the real layout (tab-separated u.data, Latin-1 u.item)."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(1, n_users + 1):
        for k, i in enumerate(rng.choice(np.arange(1, n_items + 1), size=rng.integers(3, 12), replace=False)):
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + 100 * k + u}")
    (raw / "u.data").write_text("\n".join(lines) + "\n")
    items = []
    for i in range(1, n_items + 1):
        flags = ["0"] * 19
        flags[1 + i % 18] = "1"
        items.append("|".join([str(i), f"Movie é {i} (1995)", "01-Jan-1995", "", "http://x"] + flags))
    (raw / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))


def test_prepare_and_train_movielens_100k_through_the_cli(tmp_path):
    raw = tmp_path / "ml"
    write_ml100k(raw)
    args = ["dataset=movielens_100k", f"dataset.raw_dir={raw}", "dataset.download=false"]
    out = ctrbench("prepare", *args, cwd=tmp_path).stdout
    assert "protocol movielens" in out and "built now" in out
    again = ctrbench("prepare", *args, cwd=tmp_path).stdout
    assert "cached" in again
    datasets = lambda: [p for p in (tmp_path / "data" / "processed").iterdir() if not p.name.startswith(".")]  # noqa: E731 (not the lock files)
    [folder] = datasets()
    m = json.loads((folder / "manifest.json").read_text())
    assert m["protocol"]["protocol"] == "movielens" and m["rows"]["behaviours"] == sum(m["rows"][s] for s in ("train", "valid", "test"))
    assert m["config"]["inputs"] and "raw_dir" not in m["config"]["source"]
    # replacing a raw file changes the cache key: a new processed folder
    write_ml100k(raw, seed=1)
    ctrbench("prepare", *args, cwd=tmp_path)
    assert len(datasets()) == 2
    ctrbench("train", *args, "model=din", "trainer.max_steps=5", "trainer.batch_size=16", "trainer.progress=false", "device=cpu", cwd=tmp_path)


def test_offline_without_files_lists_what_is_needed(tmp_path):
    proc = ctrbench("prepare", "dataset=movielens_1m", f"dataset.raw_dir={tmp_path / 'none'}", "dataset.download=false", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for word in ("ratings.dat", "movies.dat", "https://files.grouplens.org/datasets/movielens/ml-1m.zip", str(tmp_path / "none")):
        assert word in proc.stderr, word
    taobao = ctrbench("prepare", "dataset=taobao", f"dataset.raw_dir={tmp_path / 'none'}", cwd=tmp_path, check=False)
    assert taobao.returncode == 2 and "UserBehavior.csv" in taobao.stderr and "tianchi" in taobao.stderr and "manual download" in taobao.stderr


def test_failed_download_is_reported_with_the_list(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download.urllib.request, "urlopen", no_network)
    remote = RemoteFile("x.zip", "https://example.org/x.zip", "https://example.org")
    with pytest.raises(DataError, match=r"download failed.*no route to host(.|\n)*x.csv(.|\n)*https://example.org/x.zip"):
        download.ensure("x", tmp_path, lambda: None, ["x.csv"], [remote], allow_download=True)
    assert not (tmp_path / "x.zip").exists()


def test_unknown_bad_line_policy_and_release_are_config_errors(tmp_path):
    raw = tmp_path / "ml"
    write_ml100k(raw)
    for bad, word in (("dataset.on_bad_line=ignore", "on_bad_line"), ("dataset.release=2m", "dataset.release")):
        proc = ctrbench("prepare", "dataset=movielens_100k", f"dataset.raw_dir={raw}", bad, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and word in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_fetch_resumes_checks_md5_and_unpacks(tmp_path, monkeypatch):
    """A download continues a `.part` with a Range request, is checked against the published md5
    and renamed into place; a zip is unpacked next to it."""
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-x/ratings.csv", "userId,movieId,rating,timestamp\n")
    payload = buf.getvalue()
    digest = hashlib.md5(payload).hexdigest()
    (tmp_path / "x.zip.part").write_bytes(payload[:10])
    seen = []

    class Response(io.BytesIO):
        def __init__(self, body, status):
            super().__init__(body)
            self.status, self.length = status, len(body)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(request, timeout=None):
        url = request.full_url
        seen.append((url, request.get_header("Range")))
        if url.endswith(".md5"):
            return Response(f"{digest}  x.zip\n".encode(), 200)
        rng = request.get_header("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        return Response(payload[start:], 206 if rng else 200)

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    remote = RemoteFile("x.zip", "https://example.org/x.zip", "https://example.org", md5_url="https://example.org/x.zip.md5")
    download.fetch(remote, tmp_path)
    assert (tmp_path / "x.zip").read_bytes() == payload and not (tmp_path / "x.zip.part").exists()
    assert (tmp_path / "ml-x" / "ratings.csv").exists()
    assert seen[0] == ("https://example.org/x.zip", "bytes=10-")
    # a wrong published digest deletes the download and says so
    (tmp_path / "x.zip").unlink()
    bad = RemoteFile("x.zip", "https://example.org/x.zip", "https://example.org", md5="0" * 32)
    (tmp_path / "x.zip.part").write_bytes(b"")
    with pytest.raises(DataError, match="md5"):
        download.fetch(bad, tmp_path)
    assert not (tmp_path / "x.zip.part").exists() and not (tmp_path / "x.zip").exists()
