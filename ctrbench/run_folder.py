"""One run per run folder: ``claim_run_folder`` marks a folder as taken before a run writes into it.

The mark is the file ``.ctrbench-run`` (JSON: pid, host, the process's start time, when, argv),
created with ``O_CREAT | O_EXCL``, so of two runs pointed at the same folder (the same
``hydra.run.dir`` given twice, two shells started in the same second with a coarse run-dir
pattern) exactly one gets it; the other stops with a ``ConfigError`` before writing anything of its
own. The mark stays after the run ends: a finished run's folder is not reused by a new run either.

``resume=True`` (``trainer.resume=<run folder>``) continues in a folder that is already claimed,
provided the run that claimed it is over: its process is gone (checked on the same host, by pid and
by the process's start time, so a recycled pid does not count as alive). A folder claimed by a
process that is still running, or by one on another host (which cannot be checked from here), is
refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import ConfigError
from ctrbench.processes import _start_time, process_alive  # noqa: F401 (re-exported)

MARKER = ".ctrbench-run"


def _owner_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": _start_time(os.getpid()),
        "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
    }


def read_claim(path: str | Path) -> dict | None:
    """The claim record of a run folder; None when it is not claimed, ``{}`` when the marker is
    there but unreadable (being written, or damaged)."""
    marker = Path(path) / MARKER
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: dict) -> str:
    if not owner:
        return "another run (its marker is unreadable)"
    return f"another run (pid {owner.get('pid')} on host {owner.get('host')}, since {owner.get('claimed')})"


def _is_ours(owner: dict) -> bool:
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname() and (
        owner.get("start_time") in (None, _start_time(os.getpid()))
    )


# How long a resume waits for another one taking the same folder over (CTRBENCH_LOCK_TIMEOUT
# overrides it): the lock is held only while the marker is checked and rewritten.
FOLDER_LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on ``<folder>/.ctrbench-run.lock`` (``filelock``: ``flock`` on POSIX, a
    Windows lock elsewhere); a process that waits longer than ``CTRBENCH_LOCK_TIMEOUT`` seconds
    (default 60) stops with a one-line error naming the holder (``ctrbench.locks.held_lock``)."""
    from ctrbench.locks import held_lock

    with held_lock(
        folder / (MARKER + ".lock"), f"the run folder '{folder}'", FOLDER_LOCK_TIMEOUT_S,
        why="it is taking this run folder over to resume the run", unwritable="choose another hydra.run.dir",
    ):
        yield


def claim_run_folder(path: str | Path, resume: bool = False) -> None:
    """Claim run folder ``path`` for this process (creating it), or raise a ``ConfigError``.

    A new run (``resume=False``) claims only a folder no run has claimed. A resumed run claims a
    folder whose claiming process is over (or the folder of a run that never claimed it). Claiming
    again a folder this very process claimed is a no-op."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the run folder '{folder}' ({e.strerror or e}); choose another hydra.run.dir") from None
    marker = folder / MARKER
    record = _owner_record()
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"cannot write to the run folder '{folder}' ({e.strerror or e}); choose another hydra.run.dir") from None
    else:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        return

    owner = read_claim(folder) or {}
    if _is_ours(owner):
        return
    if not resume:
        raise ConfigError(
            f"the run folder '{folder}' is already used by {_describe(owner)}: two runs never write into the same "
            f"folder; choose another hydra.run.dir (or hydra.sweep.dir for -m), or continue that run with "
            f"trainer.resume={folder} once it has stopped"
        )
    with _folder_lock(folder):  # two resumes of the same folder: one at a time
        owner = _settled_claim(folder)
        if owner and _is_ours(owner):
            return
        if owner and owner.get("host") != socket.gethostname():
            raise ConfigError(
                f"cannot resume in '{folder}': it is claimed by pid {owner.get('pid')} on host {owner.get('host')} "
                f"(since {owner.get('claimed')}), and whether that run is still going cannot be checked from host "
                f"{socket.gethostname()}; if it has stopped, delete '{marker}' and resume again"
            )
        if owner and process_alive(owner.get("pid"), owner.get("start_time")):
            raise ConfigError(
                f"cannot resume in '{folder}': the run that uses it is still going (pid {owner.get('pid')} on host "
                f"{owner.get('host')}, since {owner.get('claimed')}); stop it first, or choose another hydra.run.dir"
            )
        # the claiming run is over (or its marker is unreadable, or gone): take the folder over
        atomic_write_text(marker, json.dumps(record))


def _settled_claim(folder: Path, wait_s: float = 1.0) -> dict | None:
    """The claim record, waiting up to ``wait_s`` while the marker is unreadable (a claimer that
    has just created it is still writing it); ``{}`` if it stays unreadable (damaged)."""
    deadline = time.monotonic() + wait_s
    while True:
        owner = read_claim(folder)
        if owner or owner is None or time.monotonic() > deadline:
            return owner
        time.sleep(0.05)


