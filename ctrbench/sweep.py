"""A multirun whose jobs fail one by one still runs the others, and says at the end which failed.

In a multirun (``ctrbench train -m ...``) a job that fails (a diverged loss, a bad value in one
combination, an unexpected error) is recorded in its folder (``status.json``: ``failed`` with the
reason; ``metrics.json`` too once training had started), reported as one line, and returns None to
the sweeper instead of stopping the sweep (Optuna's sweeper marks such a trial failed and goes on). The CLI adds
``SweepFailures`` as a Hydra callback to every multirun of ``train``: when the sweep ends, it collects
the jobs of this sweep that failed, and the command exits non-zero, naming them. This works the same
with every launcher (in-process, joblib's worker processes, SLURM), since it reads the job folders.
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.experimental.callback import Callback

from ctrbench.train import resume

CALLBACK_OVERRIDE = "+hydra.callbacks.ctrbench_sweep_failures._target_=ctrbench.sweep.SweepFailures"

# set by SweepFailures.on_multirun_end in the process that ran the sweep
LAST_SWEEP: dict | None = None


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
        global LAST_SWEEP
        self.started = time.time() - 1.0  # file times can be a little coarser than the clock
        LAST_SWEEP = None

    def on_multirun_end(self, config, **kwargs) -> None:
        global LAST_SWEEP
        sweep_dir = Path(str(config.hydra.sweep.dir))
        LAST_SWEEP = {"dir": sweep_dir, "failed": failed_jobs(sweep_dir, self.started)}


def take_last_sweep() -> dict | None:
    global LAST_SWEEP
    out, LAST_SWEEP = LAST_SWEEP, None
    return out
