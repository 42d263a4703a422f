"""Inter-process file locks that say who holds them: ``held_lock``.

The lock itself is the ``filelock`` package's (``fcntl.flock`` on POSIX, ``LockFileEx`` on Windows;
released by the OS when the holder dies). Beside the lock file, the holder writes who it is in
``<lock file>.holder`` (JSON: pid, host, the process's start time, since when, the command), and
deletes it before it releases the lock. A process that finds the lock taken logs whom it waits for,
then waits at most ``CTRBENCH_LOCK_TIMEOUT`` seconds (or the lock's own default) and stops with a
one-line ``LockTimeout`` that names the holder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ctrbench.errors import ConfigError, UserError, WriteFailed

log = logging.getLogger("ctrbench")

TIMEOUT_ENV = "CTRBENCH_LOCK_TIMEOUT"


class LockTimeout(UserError):
    """Waited longer than the timeout for a lock another process holds; the message names it."""


def lock_timeout(default: float) -> float:
    """Seconds to wait for a lock: ``CTRBENCH_LOCK_TIMEOUT`` (a number >= 0, or ``inf``: wait for
    ever) when it is set, else ``default``."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if math.isnan(value) or value < 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is invalid: expected a number of seconds >= 0 (or inf: wait for ever)")
    return value


def holder_file(lock_path: str | Path) -> Path:
    lock_path = Path(lock_path)
    return lock_path.with_name(lock_path.name + ".holder")


def command_line() -> str:
    """This process's command line as a user typed it (``ctrbench prepare dataset=...``): the CLI
    renames ``argv[0]`` to ``ctrbench-<command>`` and adds its own Hydra callbacks, both undone."""
    argv = list(sys.argv) or ["python"]
    head = argv[0]
    if head.startswith("ctrbench-"):
        words = ["ctrbench", head[len("ctrbench-"):]]
    else:
        words = [Path(head).name or head]
    words += [a for a in argv[1:] if not a.startswith("+hydra.callbacks.ctrbench_")]
    return shlex.join(words)


def _holder_record() -> dict:
    from ctrbench.processes import _start_time

    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": _start_time(os.getpid()),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(),
    }


def read_holder(lock_path: str | Path) -> dict | None:
    """The holder record beside ``lock_path``; None when there is none (or it cannot be read)."""
    try:
        data = json.loads(holder_file(lock_path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict | None) -> str:
    """Who holds a lock, in words: ``pid 41872 on host node3 (`ctrbench prepare ...`), since ...``."""
    if not holder:
        return "another process (it has not said which: an older ctrbench, or one that is just starting)"
    from ctrbench.processes import process_alive

    who = f"pid {holder.get('pid')} on host {holder.get('host')} (`{holder.get('command')}`), since {holder.get('since')}"
    if holder.get("host") == socket.gethostname() and not process_alive(holder.get("pid"), holder.get("start_time")):
        return f"another process (the last one that said it held it, {who}, has exited)"
    return who


def _wait_text(seconds: float) -> str:
    if math.isinf(seconds):
        return "for as long as it takes"
    return f"up to {seconds:g} s"


@contextlib.contextmanager
def held_lock(lock_path: str | Path, what: str, default_timeout: float, why: str = "",
              unwritable: str = "its folder must be writable") -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` (for ``what``, e.g. "the processed dataset '...'")
    while the block runs. When another process holds it, log whom this one waits for and wait at
    most the timeout (``CTRBENCH_LOCK_TIMEOUT``, else ``default_timeout`` seconds), then raise a
    ``LockTimeout`` naming the holder; ``why`` says what the holder is likely doing. A lock file
    that cannot be created (a read-only folder) is a ``WriteFailed`` naming it, ending with
    ``unwritable`` (what to do)."""
    import filelock

    lock_path = Path(lock_path)
    timeout = lock_timeout(default_timeout)
    lock = filelock.FileLock(str(lock_path))
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666))  # what filelock opens: fails here in a read-only folder
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            holder = _settled_holder(lock_path)
            log.warning(
                f"waiting for {what}: its lock '{lock_path}' is held by {describe_holder(holder)}"
                f"{f' ({why})' if why else ''}; waiting {_wait_text(timeout)} ({TIMEOUT_ENV})"
            )
            try:
                lock.acquire(timeout=-1 if math.isinf(timeout) else timeout, poll_interval=0.1)
            except filelock.Timeout:
                holder = read_holder(lock_path) or holder
                raise LockTimeout(
                    f"gave up waiting for {what} after {timeout:g} s: its lock '{lock_path}' is held by "
                    f"{describe_holder(holder)}{f' ({why})' if why else ''}; wait until it is done, or set "
                    f"{TIMEOUT_ENV}=<seconds> to wait longer"
                ) from None
    except OSError as e:
        if isinstance(e, WriteFailed):
            raise
        code = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
        raise WriteFailed(
            f"cannot open the lock file '{lock_path}' for {what}: {e.strerror or e}{f' [{code}]' if code else ''}; "
            f"{unwritable}", e.errno, lock_path,
        ) from None
    try:
        _write_holder(lock_path)
        yield
    finally:
        with contextlib.suppress(OSError):
            holder_file(lock_path).unlink(missing_ok=True)
        lock.release()


def _write_holder(lock_path: Path) -> None:
    """Say who holds the lock (best effort: the lock works without it)."""
    from ctrbench.atomic import atomic_path

    try:
        with atomic_path(holder_file(lock_path), fsync=False) as tmp:
            tmp.write_text(json.dumps(_holder_record()))
    except OSError as e:
        log.debug(f"could not write {holder_file(lock_path)}: {e}")


def _settled_holder(lock_path: Path, wait_s: float = 0.5) -> dict | None:
    """The holder record, waiting up to ``wait_s`` for one (a holder that has just taken the lock
    writes it a moment later)."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = read_holder(lock_path)
        if holder or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)
