"""A multirun whose jobs fail one by one still runs the others, and says at the end which failed.

In a multirun (``ctrbench train -m ...``) a job that fails (a diverged loss, a bad value in one
combination, an unexpected error) is recorded in its folder (``status.json``: ``failed`` with the
reason; ``metrics.json`` too once training had started), reported as one line, and returns None to
the sweeper instead of stopping the sweep (Optuna's sweeper marks such a trial failed and goes on). The CLI adds
``SweepFailures`` as a Hydra callback to every multirun of ``train``: when the sweep ends, it collects
the jobs of this sweep that failed, and the command exits non-zero, naming them. This works the same
with every launcher (in-process, joblib's worker processes, SLURM), since it reads the job folders.

The same callback says where the sweep stands, on stderr: before the jobs start, one line with the
plan (how many jobs, how many side by side with how many threads, the sweep folder;
``ctrbench.sweep_plan``); while they run, a line each time the count of finished jobs changes
(``sweep: 4/35 done, 0 failed, 31 left (2 running), ETA 1h12m``; the ETA once a job has completed),
from a thread of the CLI's process that reads the jobs' ``status.json`` every ``POLL_S`` seconds;
at the end, one line with the sweep folder and the ``ctrbench table`` command to run.
"""

from __future__ import annotations

import heapq
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback

from ctrbench.streams import say
from ctrbench.train import resume

CALLBACK_OVERRIDE = "+hydra.callbacks.ctrbench_sweep_failures._target_=ctrbench.sweep.SweepFailures"

# set by SweepFailures.on_multirun_end in the process that ran the sweep
LAST_SWEEP: dict | None = None
# the plan of the sweep this process launches (a ``ctrbench.sweep_plan.Plan``; set by the CLI)
PLAN = None
POLL_S = 2.0  # seconds between two looks at the job folders
_MONITOR: SweepProgress | None = None  # the running progress thread (kept off the callback, which joblib pickles)


def record_job_failure(run_dir: str | Path, reason: str) -> None:
    """Mark a job folder failed (unless training already recorded the failure there)."""
    status = resume.read_status(run_dir)
    if status and status.get("status") == "failed":
        return
    try:
        resume.write_status(run_dir, "failed", reason=reason)
    except Exception:  # noqa: BLE001 - reporting the job's own error matters more
        pass


def failed_jobs(sweep_dir: str | Path, since: float) -> list[tuple[Path, str]]:
    """(job folder, reason) of every job under ``sweep_dir`` marked failed at or after ``since``."""
    out = []
    root = Path(sweep_dir)
    if not root.is_dir():
        return out
    for path in sorted(root.rglob(resume.STATUS_FILE)):
        try:
            if path.stat().st_mtime < since:
                continue
        except OSError:
            continue
        status = resume.read_status(path.parent)
        if status and status.get("status") == "failed":
            out.append((path.parent, str(status.get("reason") or "failed")))
    return out


class SweepFailures(Callback):
    """A Hydra callback: remembers when the sweep started and, when it ends, which of its jobs failed."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config, **kwargs) -> None:
        global LAST_SWEEP, _MONITOR
        self.started = time.time() - 1.0  # file times can be a little coarser than the clock
        LAST_SWEEP = None
        sweep_dir = Path(str(config.hydra.sweep.dir))
        plan = PLAN
        say(f"ctrbench train: {plan.describe() if plan is not None else 'sweep'} -> {sweep_dir}\n")
        stop_progress()
        _MONITOR = SweepProgress(sweep_dir, self.started, getattr(plan, "jobs", None), getattr(plan, "side_by_side", None))
        _MONITOR.start()

    def on_multirun_end(self, config, **kwargs) -> None:
        global LAST_SWEEP
        sweep_dir = Path(str(config.hydra.sweep.dir))
        failed = failed_jobs(sweep_dir, self.started)
        LAST_SWEEP = {"dir": sweep_dir, "failed": failed}
        from ctrbench.tracking import end_sweep

        end_sweep(sweep_dir, bool(failed))  # tracking=mlflow: the sweep's parent run ends (never raises)
        monitor = stop_progress()
        if monitor is None:
            return
        monitor.poll()  # the last change, if the thread had not seen it
        total = monitor.total if monitor.total is not None else len(monitor.jobs)
        print_summary(sweep_dir)
        say(f"sweep: {total} job{'s' if total != 1 else ''} done ({len(failed)} failed) in "
            f"{format_duration(time.time() - self.started - 1.0)}: {sweep_dir}; results: ctrbench table {shlex.quote(str(sweep_dir))}\n")


def print_summary(sweep_dir: Path) -> None:
    """The sweep's results table (as ``ctrbench table`` shows it, without its notes) once all jobs
    have ended: the jobs themselves print one line each."""
    try:
        from rich import get_console

        from ctrbench.report.collect import find_runs
        from ctrbench.report.table import build_table

        get_console().print(build_table(find_runs([sweep_dir])).to_rich(notes=False))
    except Exception as e:  # noqa: BLE001 - a summary is a courtesy: `ctrbench table` says what is wrong
        say(f"sweep: no summary table ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})\n")


def take_last_sweep() -> dict | None:
    global LAST_SWEEP
    out, LAST_SWEEP = LAST_SWEEP, None
    return out


# ---- progress --------------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h12m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


@dataclass
class JobState:
    state: str  # running | done | failed
    start: float  # when the job started (its .hydra/ files, else when it was first seen)
    end: float | None = None  # when it finished (its final status.json)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def scan_jobs(sweep_dir: Path, since: float, first_seen: dict[Path, float] | None = None, now: float | None = None) -> dict[Path, JobState]:
    """The jobs of the sweep started at ``since`` under ``sweep_dir``: a job folder is one with Hydra's
    ``.hydra/hydra.yaml`` or a ``status.json`` written since then. Its state is its ``status.json``'s
    (completed: done; failed or interrupted: failed; else running). A ``completed`` status older than
    the sweep in a folder Hydra has just set up again is a job that found its run already complete
    (``trainer.resume=auto``): done."""
    now = time.time() if now is None else now
    first_seen = {} if first_seen is None else first_seen
    folders: dict[Path, float | None] = {}
    root = Path(sweep_dir)
    if not root.is_dir():
        return {}
    for hydra_yaml in root.rglob("hydra.yaml"):
        if hydra_yaml.parent.name == ".hydra" and hydra_yaml.parent.parent != root:
            t = _mtime(hydra_yaml)
            if t is not None and t >= since:
                folders[hydra_yaml.parent.parent] = t
    for status_path in root.rglob(resume.STATUS_FILE):
        t = _mtime(status_path)
        if t is not None and t >= since:
            folders.setdefault(status_path.parent, None)
    jobs = {}
    for folder, started in folders.items():
        start = started if started is not None else first_seen.setdefault(folder, now)
        status_time = _mtime(folder / resume.STATUS_FILE)
        status = (resume.read_status(folder) or {}).get("status")
        fresh = status_time is not None and status_time >= since
        if status == "completed" and (fresh or started is not None):
            jobs[folder] = JobState("done", start, status_time if fresh else None)  # (no time of its own for the ETA)
        elif status in ("failed", "interrupted") and fresh:
            jobs[folder] = JobState("failed", start, status_time)
        else:
            jobs[folder] = JobState("running", start)
    return jobs


def estimate_left(jobs: dict[Path, JobState], total: int, side_by_side: int | None, now: float) -> float | None:
    """Seconds until the sweep ends: each job takes the mean time of the completed ones; the running
    jobs have that less their age left, the waiting ones start as slots free up (``side_by_side``
    at a time, else as many as run now). None before a job has completed."""
    done = [j.end - j.start for j in jobs.values() if j.state == "done" and j.end is not None and j.end >= j.start]
    if not done:
        return None
    mean = sum(done) / len(done)
    running = [j for j in jobs.values() if j.state == "running"]
    finished = sum(1 for j in jobs.values() if j.state != "running")
    waiting = max(0, total - finished - len(running))
    k = max(1, side_by_side or len(running) or 1)
    slots = sorted(max(0.05 * mean, mean - (now - j.start)) for j in running)  # one past the mean: nearly done
    slots = (slots + [0.0] * k)[: max(k, len(slots))]
    heapq.heapify(slots)
    for _ in range(waiting):
        heapq.heappush(slots, heapq.heappop(slots) + mean)
    return max(slots) if slots else 0.0


def progress_line(jobs: dict[Path, JobState], total: int | None, side_by_side: int | None, now: float) -> str:
    done = sum(1 for j in jobs.values() if j.state == "done")
    failed = sum(1 for j in jobs.values() if j.state == "failed")
    running = sum(1 for j in jobs.values() if j.state == "running")
    if total is None:
        return f"sweep: {done} done, {failed} failed, {running} running"
    left = max(0, total - done - failed)
    line = f"sweep: {done}/{total} done, {failed} failed, {left} left"
    if left:
        if running:
            line += f" ({running} running)"
        eta = estimate_left(jobs, total, side_by_side, now)
        if eta is not None:
            line += f", ETA {format_duration(eta)}"
    return line


class SweepProgress(threading.Thread):
    """A daemon thread that reads the sweep's job folders every ``POLL_S`` seconds and prints a
    progress line when the number of finished (done or failed) jobs changes."""

    def __init__(self, sweep_dir: Path, since: float, total: int | None, side_by_side: int | None) -> None:
        super().__init__(name="ctrbench-sweep-progress", daemon=True)
        self.sweep_dir, self.since, self.total, self.side_by_side = Path(sweep_dir), since, total, side_by_side
        self.jobs: dict[Path, JobState] = {}
        self._first_seen: dict[Path, float] = {}
        self._shown: tuple[int, int] = (0, 0)
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            try:
                now = time.time()
                self.jobs = scan_jobs(self.sweep_dir, self.since, self._first_seen, now)
                counts = (sum(1 for j in self.jobs.values() if j.state == "done"), sum(1 for j in self.jobs.values() if j.state == "failed"))
                if counts != self._shown:
                    self._shown = counts
                    say(progress_line(self.jobs, self.total, self.side_by_side, now) + "\n")
            except Exception:  # noqa: BLE001 - progress is a courtesy: it never stops the sweep
                pass

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


def stop_progress() -> SweepProgress | None:
    """Stop the progress thread, if one runs; returns it."""
    global _MONITOR
    monitor, _MONITOR = _MONITOR, None
    if monitor is not None:
        monitor.stop()
    return monitor
