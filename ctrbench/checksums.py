"""File digests, read in blocks (processed-dataset manifests, downloads, published md5s)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path, algorithm: str = "sha256", block: int = 1 << 22) -> str:
    """The hex digest of the file's bytes under ``algorithm`` (any name hashlib knows)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()
