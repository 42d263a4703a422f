"""Checkpoints: weights, optimizer, schedule and RNG state, written atomically, with a checksum.

``save`` writes ``<name>`` atomically (a temporary file, flushed, renamed into place) and records
its sha256 in the sidecar ``<name>.sha256`` (the format of ``sha256sum``, so ``sha256sum -c
best.pt.sha256`` checks it too). ``load`` verifies the file against the sidecar before unpickling
and raises ``CorruptFile`` naming the file, the expected and the found digest.

The sidecar and the checkpoint are two files, so their order matters: before the new checkpoint is
renamed into place, the sidecar is rewritten to accept both the old and the new digest; after the
rename, it is rewritten with the new one alone. A kill at any moment therefore leaves a checkpoint
that its sidecar accepts (old or new, never a mix). A checkpoint without a sidecar (written by an
older ctrbench) loads unverified.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.checksums import file_digest
from ctrbench.errors import CorruptFile, DataError

ALGORITHM = "sha256"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def sidecar(path: str | Path) -> Path:
    """The checksum file of a checkpoint: ``<name>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + "." + ALGORITHM)


def _sidecar_text(name: str, digests: list[str]) -> str:
    return "".join(f"{d}  {name}\n" for d in digests)


def accepted_digests(path: str | Path) -> list[str] | None:
    """The digests the sidecar of ``path`` accepts (one, or two while a save is under way); None
    when there is no sidecar. A sidecar that is not a checksum file is a ``CorruptFile``."""
    side = sidecar(path)
    try:
        text = side.read_bytes().decode("ascii")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        text = "\0"
    digests = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0]):
            raise CorruptFile(
                f"'{side}' is not a {ALGORITHM} checksum file (line {line[:80]!r}), so '{path}' cannot be verified; "
                f"delete '{side}' to load the checkpoint unverified",
                path=side,
            )
        digests.append(parts[0])
    if not digests:
        raise CorruptFile(f"'{side}' is empty, so '{path}' cannot be verified; delete '{side}' to load the checkpoint unverified", path=side)
    return digests


def save(path: str | Path, payload: dict) -> None:
    """``torch.save`` atomically: to a temporary file beside ``path``, then renamed into place; the
    sha256 goes into ``<path>.sha256`` (see the module docstring for the order of the two)."""
    path = Path(path)
    side = sidecar(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        new = file_digest(tmp, ALGORITHM)
        old: list[str] = []
        if path.exists():
            try:
                old = accepted_digests(path) or [file_digest(path, ALGORITHM)]
            except CorruptFile:
                old = []
        atomic_write_text(side, _sidecar_text(path.name, [new] + [d for d in old if d != new]))
    atomic_write_text(side, _sidecar_text(path.name, [new]))


def verify(path: str | Path) -> str | None:
    """Check ``path`` against its sidecar: its digest, or None when there is no sidecar. Raises
    ``CorruptFile`` (expected vs found) when they differ."""
    path = Path(path)
    accepted = accepted_digests(path)
    if accepted is None:
        return None
    found = file_digest(path, ALGORITHM)
    if found not in accepted:
        raise CorruptFile(
            f"checkpoint '{path}' is corrupted: its {ALGORITHM} is {found}, expected {accepted[0]} "
            f"(recorded in '{sidecar(path).name}' when it was saved); the file changed after it was written "
            f"(a disk error, a copy cut short?): restore it, or delete it and train again",
            path=path, expected=accepted[0], found=found,
        )
    return found


def _unreadable(e: BaseException) -> bool:
    """Whether a ``torch.load`` error means the bytes are not a checkpoint (rather than, say, a
    CUDA checkpoint loaded on a machine without CUDA)."""
    if isinstance(e, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e) for s in ("zip archive", "PytorchStreamReader", "invalid header"))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Verify ``path`` against its checksum, then ``torch.load`` it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist")
    verified = verify(path) is not None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many kinds; only unreadable bytes are turned into CorruptFile
        if not _unreadable(e):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        why = "although it matches its checksum" if verified else "and it has no checksum file to tell whether it was damaged"
        raise CorruptFile(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}: {first[:200]}) {why}; delete it and train again",
            path=path,
        ) from None
