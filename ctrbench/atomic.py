"""Atomic file writes: write to a temporary file beside the target, then rename it into place, so a
reader (or a kill at any moment) sees either the old complete file or the new complete file.

The temporary file is flushed to disk (``fsync``) before the rename, and the folder after it, so a
power cut cannot leave a renamed but empty file either. When the write fails (an exception, Ctrl-C,
``SystemExit``) the temporary file is deleted and the target is untouched; an ``OSError`` (a full
disk, no permission, a vanished folder) becomes a ``WriteFailed`` whose one-line message names the
target and the reason. Only a ``SIGKILL`` (or a power cut) during the write can leave a temporary
``.<name>.<random>.tmp`` beside the target; it is never read and can be deleted.

The temporary file (and the temporary folder of ``make_temp_dir``) is created with the permissions
a plain ``open()`` (``mkdir()``) gives: 0o666 (0o777) less the process's umask, and the folder's
default ACL where it has one. ``tempfile.mkstemp`` / ``mkdtemp`` would make every result private
(0o600 / 0o700), whatever the umask: results are meant to be shared.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrbench.errors import WriteFailed

# fsync errors that only say the file system cannot sync (some FUSE and network mounts): not a
# failed write. Others (ENOSPC, EDQUOT, EIO: the data did not reach the disk) are.
_CANNOT_SYNC = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP}


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _CANNOT_SYNC:
            raise
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; best effort (not every OS / file system
    can open or sync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_failed(path: Path, e: OSError) -> WriteFailed:
    """The one-line error for an OSError while writing ``path`` (the target left as it was)."""
    code = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    reason = e.strerror or str(e) or type(e).__name__
    kept = f"the previous '{path.name}' is unchanged" if path.exists() else "nothing was written"
    hint = " (free some space, or write elsewhere)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return WriteFailed(f"cannot write '{path}': {reason}{f' [{code}]' if code else ''}; {kept}{hint}", e.errno, path)


def _temp_name(folder: Path, prefix: str, suffix: str) -> Path:
    return folder / f"{prefix}{secrets.token_hex(4)}{suffix}"


def _new_temp_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file ``<prefix><random><suffix>`` in ``folder`` (``O_EXCL``, like
    ``mkstemp``), with mode 0o666 for the kernel to reduce by the umask, as ``open()`` does."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = _temp_name(folder, prefix, suffix)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(folder))


def make_temp_dir(folder: str | Path, prefix: str) -> Path:
    """Create a new empty folder ``<prefix><random>`` in ``folder`` (like ``mkdtemp``), with mode
    0o777 for the kernel to reduce by the umask, as ``mkdir()`` does. OSErrors pass through."""
    folder = Path(folder)
    for _ in range(100):
        tmp = _temp_name(folder, prefix, "")
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(folder))


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds,
    delete it otherwise. An ``OSError`` becomes a ``WriteFailed`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp_file(path.parent, f".{path.name}.", ".tmp")
    except OSError as e:
        raise write_failed(path, e) from e
    try:
        yield Path(tmp)
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteFailed):
            raise write_failed(path, e) from e
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically (flushed to disk before the rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
