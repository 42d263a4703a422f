"""The CPU cores a run may use, how many of them are idle right now, and the torch thread count that
``device.threads=0`` (auto) picks from them.

Why not simply all cores: torch's CPU kernels split each op over their threads and wait for the
slowest one, so a thread that shares its core with another busy process stalls every op. Measured
on 2 cores (DIN, synthetic data): 2 threads were 13% faster than 1 on a quiet machine, but 3.8x
slower than 1 (4,515 against 17,243 samples/s) with two other busy processes on it. Losing a core
costs at most the parallel gain; oversubscribing one costs several times more. So auto counts the
cores that are idle now (``/proc/stat``, sampled twice ``SAMPLE_S`` apart, over the cores this
process may run on) and takes ``floor(idle cores + SLACK)`` threads, at least 1 and at most the usable
cores (and torch's own default: physical cores, or ``OMP_NUM_THREADS``). A core counts as free when
it is at least 75% idle: the slack absorbs the sampling's resolution (a clock tick is 5% of a core
over 0.2 s) and the light background work of a quiet machine, while a core that another process
keeps busy half the time or more is left to it. The choice is made once, when the run starts.

Where ``/proc/stat`` cannot be read (not Linux), auto keeps torch's default.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

SAMPLE_S = 0.2  # between the two /proc/stat readings
SLACK = 0.25  # a core at least 75% idle counts as free
CACHE_S = 5.0  # a measurement is reused this long (runs set up in quick succession in one process)

_cache: tuple[float, float | None] | None = None  # (when, idle cores)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a
    container's ``--cpus``), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def read_proc_stat() -> str | None:
    try:
        return Path("/proc/stat").read_text()
    except OSError:
        return None


def cpu_times(text: str) -> dict[str, tuple[int, int]]:
    """``{"cpu": (idle, total), "cpu0": ..., ...}`` from /proc/stat's text, in clock ticks. Idle
    includes iowait; total is user + nice + system + idle + iowait + irq + softirq + steal (guest
    time is already counted in user)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            v = [int(x) for x in fields[:8]]
        except ValueError:
            continue
        if len(v) < 4:
            continue
        v += [0] * (8 - len(v))
        out[name] = (v[3] + v[4], sum(v))
    return out


def idle_between(before: str, after: str, cpus: set[int] | None = None) -> float | None:
    """Idle cores between two /proc/stat readings: the sum of each usable core's idle fraction
    (``cpus``: the core numbers; None: all of them), or None when the readings say nothing."""
    a, b = cpu_times(before), cpu_times(after)
    per_cpu = [k for k in b if k != "cpu" and k in a]
    if per_cpu:
        idle = 0.0
        counted = 0
        for k in per_cpu:
            if cpus is not None and int(k[3:]) not in cpus:
                continue
            di, dt = b[k][0] - a[k][0], b[k][1] - a[k][1]
            counted += 1
            idle += min(1.0, max(0.0, di / dt)) if dt > 0 else 1.0  # no ticks at all: an idle (tickless) core
        return idle if counted else None
    if "cpu" in a and "cpu" in b:  # only the aggregate line: its idle fraction times the usable cores
        di, dt = b["cpu"][0] - a["cpu"][0], b["cpu"][1] - a["cpu"][1]
        if dt <= 0:
            return None
        n = len(cpus) if cpus is not None else (os.cpu_count() or 1)
        return min(1.0, max(0.0, di / dt)) * n
    return None


def own_cpu_seconds() -> float:
    """CPU time used so far by this process, all its threads (user + system)."""
    t = os.times()
    return t.user + t.system


def idle_cores(reader: Callable[[], str | None] = read_proc_stat, sleep: Callable[[float], None] = time.sleep,
               interval: float = SAMPLE_S, own_cpu: Callable[[], float] = own_cpu_seconds,
               clock: Callable[[], float] = time.monotonic) -> float | None:
    """The cores of this process's affinity that are idle now, or busy with this process itself (a
    float: the threads an earlier job of a sweep run in this process left spinning are not another
    program's load), or None where /proc/stat cannot be read. Reuses a measurement made in the last
    ``CACHE_S`` seconds (default reader only)."""
    global _cache
    cached = reader is read_proc_stat
    now = time.monotonic()
    if cached and _cache is not None and now - _cache[0] < CACHE_S:
        return _cache[1]
    before, own_before, t0 = reader(), own_cpu(), clock()
    if before is None:
        return None
    sleep(interval)
    after, own_after, t1 = reader(), own_cpu(), clock()
    if after is None:
        return None
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    idle = idle_between(before, after, cpus)
    if idle is not None:
        idle += max(0.0, own_after - own_before) / max(t1 - t0, 1e-3)
        idle = min(idle, float(usable_cores()))
    if cached:
        _cache = (time.monotonic(), idle)
    return idle


def auto_threads(idle: float, cap: int) -> int:
    """The rule (module docstring): ``floor(idle + SLACK)``, within ``[1, cap]``."""
    return max(1, min(cap, math.floor(idle + SLACK)))


def choose_threads(requested: int, default: int, *, sweep: dict | None = None,
                   idle: Callable[[], float | None] = idle_cores) -> tuple[int, str]:
    """(torch threads, how they were chosen) for ``device.threads=requested``.

    ``requested`` > 0 is used as it is: ``set``, or ``sweep: ...`` when it is the thread count the
    sweep plan gave this job (``sweep``: the plan, see ``ctrbench.sweep_plan.job_plan``). 0 is auto:
    from the idle cores, at most ``default`` (torch's default thread count) and the usable cores."""
    if requested > 0:
        if sweep and sweep.get("threads") == requested:
            k = int(sweep.get("side_by_side") or 1)
            return requested, f"sweep: {k} job{'s' if k != 1 else ''} side by side on {sweep.get('cores', '?')} cores"
        return requested, f"set: device.threads={requested}"
    cores = usable_cores()
    cap = max(1, min(cores, default))
    if cap == 1:  # nothing to choose
        return 1, "auto: 1 usable core" if cores == 1 else "auto: torch's default of 1 thread (OMP_NUM_THREADS or the process's setting)"
    free = idle()
    if free is None:
        return cap, f"auto: all {cap} cores (/proc/stat unreadable)"
    return auto_threads(free, cap), f"auto: {free:.1f} of {cores} cores idle"
