"""Process-level tuning for training on CPU: the C allocator, and Python's garbage collector.

Training allocates and frees many short-lived tensors of 64 KiB to a few MiB per step. glibc's
malloc serves blocks above its mmap threshold (128 KiB at start, adapting upwards only after a
large block is freed) with fresh ``mmap`` pages, so such tensors pay page faults and zeroing on
every allocation, and frees trim the heap back to the OS. Raising the mmap and trim thresholds
keeps those blocks on the heap for reuse. Measured on 2 CPU cores (``scripts/bench_train.py``):
DIN eval ~1.7x and DIEN train ~1.3x faster. The memory this keeps is at most the largest working
set of a step. ``device.tune_malloc=false`` turns it off; it is a no-op off glibc.

``long_lived_frozen()``: by the first training step a process holds ~340,000 Python objects (configs,
the dataset's and the model's), and the first full collection of the garbage collector walks them
all: ~140 ms once early in training, measured here, which in a short run or a benchmark window of
a few thousand fast steps (LR at batch 32, ~0.1 ms a step) is a large share. Collected once and
frozen (``gc.freeze``) before the loop, they are left out of later collections; unfrozen after.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger("ctrbench")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_malloc(mmap_threshold_mb: int = 64, trim_threshold_mb: int = 256) -> bool:
    """Raise glibc's mmap and trim thresholds (once per process). Returns whether it applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20) == 1 and ok
    _done = ok
    if not ok:
        log.debug("mallopt was refused; allocator left as it is")
    return ok


@contextlib.contextmanager
def long_lived_frozen():
    """Collect, then freeze the objects alive now (module docstring) for the ``with`` body."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
