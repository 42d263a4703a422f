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

**Plain data only.** A checkpoint holds tensors, numbers, strings, None and lists, tuples and dicts
of them (the RNG states too: numpy's as a dict with its key as a list), and ``load`` reads it with
``torch.load(weights_only=True)``, which builds nothing else: a file that carries any other pickled
object (a class, a function such as ``os.system``) is refused, unexecuted, with an
``UnsafeCheckpoint`` naming the file and the object. The checksum cannot stand in for this: it shows
that the file is the one that was written, not who wrote it. The one exception is a plain numpy
array (numpy's ``_reconstruct``, ``ndarray``, ``dtype`` and its uint32 class are allowed), which
checkpoints written before this format hold as numpy's RNG key, so that those runs can still be
resumed and evaluated.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.checksums import file_digest
from ctrbench.errors import CorruptFile, DataError

ALGORITHM = "sha256"


class UnsafeCheckpoint(DataError):
    """A checkpoint that holds more than plain data (a pickled object or function): refused without
    building it. ``path`` is the file, ``found`` what was refused."""

    def __init__(self, message: str, path=None, found: str | None = None) -> None:
        super().__init__(message)
        self.path, self.found = path, found


def rng_state() -> dict:
    """The python, numpy and torch RNG states, as plain data (numpy's key as a list of ints)."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {**np_state["state"], "key": np_state["state"]["key"].tolist()}
    return {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned (or, from an older checkpoint, numpy's legacy tuple)."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        np_state = {**np_state, "state": {**np_state["state"], "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])


def _plain(x):
    """``x`` with numpy scalars and arrays turned into Python numbers and lists, so that a checkpoint is
    plain data that ``load`` reads; a container with none of them is returned as it is (a state dict
    keeps its ``_metadata``)."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        new = {k: _plain(v) for k, v in x.items()}
        if all(new[k] is v for k, v in x.items()):
            return x
        out = copy.copy(x)
        out.update(new)
        return out
    if type(x) in (list, tuple):
        new = [_plain(v) for v in x]
        return x if all(a is b for a, b in zip(new, x)) else type(x)(new)
    return x


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
        torch.save(_plain(payload), tmp)
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


def _numpy_array_globals() -> list:
    """The globals of a plain numpy array, allowed so that checkpoints written before the RNG state was
    plain data load (numpy's RNG key); under both of the reconstructor's names (numpy 1 and 2) where
    torch accepts a name beside the object (2.6 and later)."""
    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    allowed: list = [rebuild, np.ndarray, np.dtype, type(np.dtype(np.uint32))]  # the last: numpy.dtypes.UInt32DType
    if torch.torch_version.TorchVersion(torch.__version__) >= "2.6":
        allowed += [(rebuild, f"numpy.{name}.multiarray._reconstruct") for name in ("core", "_core")]
    return allowed


def _allowing_numpy_arrays():
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch 2.5 and later
    return safe_globals(_numpy_array_globals()) if safe_globals else contextlib.nullcontext()


def _refused(e: BaseException) -> str | None:
    """What ``torch.load(weights_only=True)`` refused to build, when ``e`` is such a refusal: the
    global it names (``posix.system``), or the unpickler's own reason; None otherwise."""
    text = str(e)
    if not isinstance(e, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    found = re.search(r"\bGLOBAL (\S+)", text) or re.search(r"Can only build .* but got <class '([^']+)'>", text)
    if found:
        return found.group(1)
    reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return reason.group(1).strip()[:200] if reason else "something other than plain data"


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Verify ``path`` against its checksum, then read it with ``torch.load(weights_only=True)``:
    plain data only (see the module docstring), anything else is an ``UnsafeCheckpoint``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist")
    verified = verify(path) is not None
    try:
        with _allowing_numpy_arrays():
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds; only refused objects and unreadable bytes become one-line errors
        found = _refused(e)
        if found is not None:
            raise UnsafeCheckpoint(
                f"checkpoint '{path}' holds a pickled object ({found}), not plain checkpoint data (tensors, numbers, strings, "
                f"lists, dicts): refused without loading it, since unpickling it could run code"
                f"{' (its checksum matches, but that only shows the file is unchanged since it was written)' if verified else ''}; "
                f"use a checkpoint written by ctrbench, or train again",
                path=path, found=found,
            ) from None
        if not _unreadable(e):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        why = "although it matches its checksum" if verified else "and it has no checksum file to tell whether it was damaged"
        raise CorruptFile(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}: {first[:200]}) {why}; delete it and train again",
            path=path,
        ) from None
