"""The native kernels (``csrc/gru_scan.c``: DIEN's GRU recurrences; ``csrc/dice.c``: Dice in training;
``csrc/adam_rows.c``: Adam on a table with a row-wise gradient; ``csrc/lr_step.c``: one-weight-per-id tables
under SGD, logistic regression's step; ``csrc/aux_loss.c``: DIEN's auxiliary loss; ``csrc/pair_lookup.c``: DIEN's
behaviour embeddings with row-wise gradients; ``csrc/attention.c``: DIEN's bilinear attention): compiled once per machine into one
library, loaded with ctypes.

``library()`` returns the loaded library, or ``None`` with ``unavailable_reason()`` saying why (no C
compiler, a failed compile, a library that does not load). The sources are compiled with the system's
C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) as ``-O3 -march=native`` into a cache folder
(``$CTRBENCH_KERNEL_DIR``, else ``$XDG_CACHE_HOME/ctrbench/kernels``, else
``~/.cache/ctrbench/kernels``; a temporary folder when that is not writable), under a name that
hashes the sources, the flags, the compiler's version and the CPU's feature flags, so a library built
for one CPU is never loaded on another. The file is compiled under a temporary name and renamed into
place, so processes compiling at the same time (a sweep's jobs) never load a half-written file.
A compile takes about a second; later processes load the cached file.

Why ctypes and a plain C file rather than ``torch.utils.cpp_extension``: the kernels take raw
pointers and need no ATen, and without the torch headers the compile takes one second, not one
minute.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

_CSRC = Path(__file__).with_name("csrc")
SOURCES = [_CSRC / "gru_scan.c", _CSRC / "dice.c", _CSRC / "adam_rows.c", _CSRC / "lr_step.c", _CSRC / "aux_loss.c",
           _CSRC / "pair_lookup.c", _CSRC / "attention.c", _CSRC / "gru_scan_impl.h", _CSRC / "dice_impl.h",
           _CSRC / "adam_rows_impl.h", _CSRC / "aux_loss_impl.h", _CSRC / "pair_lookup_impl.h", _CSRC / "attention_impl.h",
           _CSRC / "per_type.h"]  # the .c files are compiled
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"]
ABI = 13  # ctr_gru_abi() of the sources this module expects (the whole library's layout)

_reason: str | None = None


def unavailable_reason() -> str | None:
    """Why ``library()`` returned None (after it was called), else None."""
    return _reason


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    env = os.environ.get("CTRBENCH_KERNEL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ctrbench" / "kernels"


def _writable_dir(preferred: Path) -> Path:
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"ctrbench-kernels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _check_private(path: Path) -> None:
    """Loading a library runs its code: refuse a cache folder or file that another user owns or that
    anyone may write (a shared temporary folder where someone planted a file under the expected
    name). Group-writable is accepted: a umask of 002 (user-private groups) makes every file so."""
    if not hasattr(os, "getuid"):
        return
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o002:
        raise RuntimeError(f"'{path}' is owned by another user or writable by others: not loading code from it "
                           f"(set CTRBENCH_KERNEL_DIR to a folder of your own)")


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in SOURCES), " ".join(FLAGS).encode(), version.encode(), _cpu_flags().encode(), platform.machine().encode()]:
        key.update(part)
        key.update(b"\0")
    folder = _writable_dir(cache_dir())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(folder)
    target = folder / f"gru_scan-{key.hexdigest()[:20]}.so"
    if target.exists():
        _check_private(target)
        return target
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        c_files = [p for p in SOURCES if p.suffix == ".c"]
        done = subprocess.run([cc, *FLAGS, "-o", str(tmp), *map(str, c_files), "-lm"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"{Path(cc).name} failed on {', '.join(p.name for p in c_files)}: {last}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def kernel(name: str, dtype: torch.dtype) -> ctypes._CFuncPtr:
    """The loaded library's ``ctr_<name>`` for ``dtype``: ``ctr_<name>_f64`` for torch.float64, else
    ``ctr_<name>_f32`` (every kernel is built for both; ``library()`` must not be None)."""
    return getattr(library(), f"ctr_{name}_{'f64' if dtype == torch.float64 else 'f32'}")


def check(status: int, what: str) -> None:
    """A kernel's return status: 0, or 1 when it could not allocate its working memory."""
    if status != 0:
        raise MemoryError(f"the native {what} could not allocate its working memory")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, built on first use; None when they cannot be (``unavailable_reason``)."""
    global _reason
    if os.environ.get("CTRBENCH_NATIVE", "1") == "0":
        _reason = "CTRBENCH_NATIVE=0"
        return None
    cc = _compiler()
    if cc is None:
        _reason = "no C compiler found ($CC, cc, gcc or clang)"
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
        if lib.ctr_gru_abi() != ABI:
            raise RuntimeError(f"the library's ABI is {lib.ctr_gru_abi()}, expected {ABI}")
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _reason = f"{type(e).__name__}: {e}"
        return None
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    for suffix in ("f32", "f64"):
        getattr(lib, f"ctr_gru_fwd_{suffix}").argtypes = [i64, i64, i64, i64] + [vp] * 14 + [i64]
        getattr(lib, f"ctr_gru_bwd_{suffix}").argtypes = [i64, i64, i64, i64] + [vp] * 20 + [i64]
        getattr(lib, f"ctr_gru_fwd_{suffix}").restype = ctypes.c_int  # 0, or 1: out of memory
        getattr(lib, f"ctr_gru_bwd_{suffix}").restype = ctypes.c_int
        getattr(lib, f"ctr_dice_fwd_{suffix}").argtypes = [i64, i64, vp, vp, ctypes.c_double, ctypes.c_double] + [vp] * 5
        getattr(lib, f"ctr_dice_bwd_{suffix}").argtypes = [i64, i64] + [vp] * 6 + [ctypes.c_double] + [vp] * 3
        getattr(lib, f"ctr_dice_fwd_{suffix}").restype = ctypes.c_int
        getattr(lib, f"ctr_pair_lookup_fwd_{suffix}").argtypes = [i64, i64, i64, vp, vp, vp, vp, vp, vp, vp]
        getattr(lib, f"ctr_pair_lookup_fwd_{suffix}").restype = ctypes.c_int  # 0, or 2: an id outside its table
        getattr(lib, f"ctr_pair_lookup_bwd_{suffix}").argtypes = [i64] + [vp] * 10
        getattr(lib, f"ctr_pair_lookup_bwd_{suffix}").restype = None
        getattr(lib, f"ctr_attn_fwd_{suffix}").argtypes = [i64, i64, i64, vp, vp, vp, vp]
        getattr(lib, f"ctr_attn_fwd_{suffix}").restype = None
        getattr(lib, f"ctr_attn_bwd_{suffix}").argtypes = [i64, i64, i64] + [vp] * 7
        getattr(lib, f"ctr_attn_bwd_{suffix}").restype = None
        getattr(lib, f"ctr_dice_bwd_{suffix}").restype = ctypes.c_int
        getattr(lib, f"ctr_adam_rows_{suffix}").argtypes = [i64, i64, vp, vp, vp, i64, vp, vp, vp, i64] + [ctypes.c_double] * 6
        getattr(lib, f"ctr_adam_rows_{suffix}").restype = ctypes.c_int  # 0, or 2: an index outside the table
        getattr(lib, f"ctr_aux_fwd_{suffix}").argtypes = [i64, i64, i64] + [vp] * 6
        getattr(lib, f"ctr_aux_bwd_{suffix}").argtypes = [i64, i64, i64] + [vp] * 5 + [ctypes.c_double] + [vp] * 3
        getattr(lib, f"ctr_aux_fwd_{suffix}").restype = None
        getattr(lib, f"ctr_aux_bwd_{suffix}").restype = None
    lib.ctr_fo_forward_f32.argtypes = [i64, i64, i64] + [vp] * 6 + [i64] + [vp] * 4
    lib.ctr_fo_backward_f32.argtypes = [i64, i64, i64] + [vp] * 6 + [i64] + [vp] * 8
    lib.ctr_lr_grad_f32.argtypes = [i64, i64, i64] + [vp] * 7 + [i64] + [vp] * 9
    for name in ("ctr_fo_forward_f32", "ctr_fo_backward_f32", "ctr_lr_grad_f32"):
        getattr(lib, name).restype = ctypes.c_int  # 0, or 2: an id outside its table
    lib.ctr_fo_apply_f32.argtypes = [i64, ctypes.c_float] + [vp] * 6 + [ctypes.c_float]
    lib.ctr_fo_apply_f32.restype = None
    _reason = None
    return lib
