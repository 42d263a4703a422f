"""Whether a process still runs, told apart from a later one that reuses its pid (Linux ``/proc``):
what run-folder ownership (``run_folder``) and locks (``locks``) both ask."""

from __future__ import annotations

import os
from pathlib import Path


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether process ``pid`` (on this host) still runs; with ``start_time`` (from ``/proc``) a
    different process that reuses the pid does not count. A zombie (exited, not yet reaped) is
    not alive."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    if _state(pid) == "Z":
        return False
    if start_time is not None:
        now = _start_time(pid)
        if now is not None and now != start_time:
            return False
    return True
