"""What a folder given to ``evaluate``, ``predict`` or ``export`` is, when it is not a run with an
evaluated checkpoint: a sweep folder (its jobs), a run stopped before its first validation (how to
continue it), or something else; each as a one-line error."""

from __future__ import annotations

from pathlib import Path

from ctrbench.errors import DataError


def sweep_jobs(folder: Path) -> list[Path] | None:
    """The job folders of a multirun (sweep) folder, in job order; None when ``folder`` is not one
    (a sweep folder holds Hydra's ``multirun.yaml``, or run folders one level down)."""
    try:
        jobs = [p for p in folder.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "config.yaml").is_file())]
    except OSError:
        return None
    if not jobs and not (folder / "multirun.yaml").is_file():
        return None
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def check_evaluable(run: Path) -> None:
    """A DataError saying what ``run`` is, when it is not a run folder with an evaluated checkpoint:
    a sweep folder (its jobs), a run stopped before its first validation (how to continue it), or
    something else."""
    from ctrbench.train.resume import read_status

    if (run / "config.yaml").is_file() and (run / "best.pt").is_file():
        return
    jobs = sweep_jobs(run) if not (run / "config.yaml").is_file() else None
    if jobs is not None:
        if not jobs:
            raise DataError(f"'{run}' is a sweep (multirun) folder with no jobs yet: evaluate one of its jobs' folders once they exist")
        names = ", ".join(p.name for p in jobs[:10]) + (f", … ({len(jobs)} jobs)" if len(jobs) > 10 else "")
        raise DataError(f"'{run}' is a sweep (multirun) folder; its jobs: {names}: evaluate one of them, e.g. "
                        f"`ctrbench evaluate {run / jobs[0].name}` (or `ctrbench table {run}` for all)")
    status = read_status(run) or {}
    if (run / "config.yaml").is_file() or status or (run / "last.pt").is_file():
        state = status.get("status")
        step = status.get("step")
        how = {"interrupted": "was interrupted", "failed": "failed", "running": "is still running (or was killed)"}.get(
            str(state), "stopped")
        at = f" at step {step}" if step is not None else ""
        resume = ""
        if (run / "last.pt").is_file() and state != "running":
            import shlex

            command = status.get("command") or "ctrbench train"
            resume = f"; continue it with `{command} {shlex.quote(f'trainer.resume={run}')}`"
        elif state == "running":
            resume = "; wait for its first validation"
        raise DataError(f"'{run}' has no evaluated checkpoint yet (best.pt is written at the run's first validation): the run {how}{at} "
                        f"before it{resume}")
    raise DataError(f"'{run}' has no config.yaml: expected a run folder written by `ctrbench train`")
