"""Continuing interrupted runs: the run folder's status marker, which runs can be resumed, and what
"the same config" means.

A run folder holds ``status.json`` from the moment training starts: ``running`` (with the process id
and host), then ``completed``, ``failed`` or ``interrupted``. A run killed outright (SIGKILL, a power
cut, a preempted job) stays ``running`` with a process that no longer exists. ``last.pt`` holds the
full training state (see ``ctrbench.train.loop``), so such a run, or an interrupted or failed one,
can be continued with ``trainer.resume=<run folder>``, in its own folder.

**The same config**: two runs have the same config when their resolved configs are equal once the
keys that cannot change a result are removed: ``trainer.resume``, ``trainer.progress(_every)``,
``trainer.checkpoint_every``, ``trainer.runs_dir``, ``trainer.fault_injection`` (testing hooks),
``paths`` (where the data caches are, not what they hold; the dataset config itself is compared),
how many threads compute (``device.threads``, ``trainer.eval_workers``), the allocator setting
(``device.tune_malloc``) and ``tracking`` (where results are also sent). A run started with 1 thread
continues with 2: float sums may then round differently, as on another machine, and nothing else
changes.
Hydra's own settings (``hydra.*``: run folders, launcher, logging) are not part of a run's config.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import ConfigError, DataError

STATUS_FILE = "status.json"
LAST = "last.pt"
BEST = "best.pt"
# keys that never change what a run computes (see the module docstring)
IGNORED_KEYS = (
    "trainer.resume", "trainer.progress", "trainer.progress_every", "trainer.checkpoint_every", "trainer.runs_dir", "trainer.fault_injection", "paths",
    "device.threads", "device.tune_malloc", "trainer.eval_workers", "tracking",
)
FINAL = ("completed", "failed", "interrupted")


# ---- the status marker ------------------------------------------------------------------------
def write_status(run_dir: str | Path, status: str, **extra) -> None:
    """Write ``status.json``: the status, this process and host, the time, and ``extra``."""
    record = {"status": status, "pid": os.getpid(), "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(record, indent=2, default=str))


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_status(run_dir: str | Path) -> dict | None:
    return read_json(Path(run_dir) / STATUS_FILE)


def final_status(run_dir: str | Path) -> str | None:
    """The status recorded in the folder's ``metrics.json`` (completed, failed, interrupted), if any."""
    m = read_json(Path(run_dir) / "metrics.json")
    return str(m.get("status", "completed")) if m else None


def is_live(status: dict | None) -> bool | None:
    """Whether the process that marked a run ``running`` still runs: True / False, or None when it
    cannot be told (the run was started on another machine)."""
    if not status or status.get("status") != "running":
        return False
    pid = status.get("pid")
    if not isinstance(pid, int):
        return False
    if status.get("host") != socket.gethostname():
        return None
    if pid == os.getpid():
        return False  # this process: it is the one about to continue the run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a recycled process id belongs to some other program
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:
            return True
        if not text.strip():  # a zombie
            return False
        return b"ctrbench" in text or b"pytest" in text or b"python" in text
    return True


# ---- the same config -------------------------------------------------------------------------
def comparable_config(cfg: DictConfig | dict) -> dict:
    """The resolved config as plain data (a YAML round trip, as ``config.yaml`` stores it), without
    the keys that cannot change a result."""
    if isinstance(cfg, DictConfig):
        data = yaml.safe_load(OmegaConf.to_yaml(cfg, resolve=True))
    else:
        data = yaml.safe_load(yaml.safe_dump(cfg))
    data = data or {}
    data.pop("hydra", None)
    for key in IGNORED_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def flatten_config(d, prefix: str = "") -> dict:
    """``{"trainer": {"batch_size": 256}}`` -> ``{"trainer.batch_size": 256}``; lists and empty
    dicts stay values (resume's config differences, the trackers' params, the report's config diffs)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, key))
        else:
            out[key] = v
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every key whose value differs (``<absent>`` where a side lacks it)."""
    a, b = flatten_config(old), flatten_config(new)
    missing = "<absent>"
    return [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}" for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def run_config(run_dir: Path) -> dict | None:
    """The comparable config a run folder was trained with (its ``config.yaml``), or None."""
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return comparable_config(data) if isinstance(data, dict) else None


# ---- which runs can be continued --------------------------------------------------------------
def plan(cfg: DictConfig, run_dir: Path) -> str:
    """What ``trainer.resume`` asks of this run folder: ``fresh`` (start from scratch), ``resume``
    (continue from its ``last.pt``) or ``completed`` (``auto`` found this folder's run finished with
    the same config: nothing to do). Raises a one-line error when the ask cannot be met."""
    want = cfg.trainer.get("resume")
    if want in (None, "", False):
        return "fresh"
    run_dir = Path(run_dir)
    if str(want) != "auto":
        asked = Path(str(want)).expanduser()
        if not asked.is_dir():
            raise DataError(f"trainer.resume={want}: no such run folder")
        if asked.resolve() != run_dir.resolve():
            raise ConfigError(
                f"trainer.resume={want} but this run's folder is '{run_dir}': a run continues in its own folder "
                f"(`ctrbench train ... trainer.resume=RUN` sets hydra.run.dir=RUN; do not set hydra.run.dir to another folder)"
            )
    new = comparable_config(cfg)
    if not (run_dir / LAST).exists():
        if str(want) == "auto":
            old = run_config(run_dir)
            if old is not None and final_status(run_dir) == "completed" and old == new:
                return "completed"
            return "fresh"
        raise DataError(
            f"trainer.resume={want}: '{run_dir}' has no {LAST} (it stopped before its first checkpoint, or was written by an "
            f"older ctrbench): nothing to resume from; start it again without trainer.resume"
        )
    old = run_config(run_dir)  # (without a config.yaml, the config saved in last.pt is checked when it is loaded)
    diffs = config_differences(old, new) if old is not None else []
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(
            f"trainer.resume={want}: '{run_dir}' was trained with another config ({shown}); resume with the run's own "
            f"overrides (its .hydra/overrides.yaml), or start a new run"
        )
    if final_status(run_dir) == "completed":
        if str(want) == "auto":
            return "completed"
        raise ConfigError(f"trainer.resume={want}: '{run_dir}' has already completed (metrics.json): nothing to resume")
    status = read_status(run_dir)
    if is_live(status):
        raise ConfigError(f"trainer.resume={want}: '{run_dir}' is still being trained by process {status.get('pid')}; stop it first")
    return "resume"


def _unfinished_runs(root: Path) -> list[tuple[float, str, Path]]:
    """``(time of last.pt, path, run)`` of every run under ``root`` that has a ``last.pt``, did not
    complete and is not being trained by a live process (runs marked running on another host are
    left alone)."""
    found = []
    for last in root.rglob(LAST):
        run = last.parent
        if final_status(run) == "completed" or is_live(read_status(run)) is not False:
            continue
        try:
            found.append((last.stat().st_mtime, str(run), run))
        except OSError:
            continue
    return found


def find_unfinished(root: str | Path, cfg: DictConfig) -> Path | None:
    """The newest unfinished run under ``root`` (by the time of its last checkpoint) with the same
    config as ``cfg``."""
    root = Path(root)
    if not root.is_dir():
        return None
    new = comparable_config(cfg)
    found = [f for f in _unfinished_runs(root) if run_config(f[2]) == new]
    return max(found)[2] if found else None


def why_none_unfinished(root: str | Path, cfg: DictConfig) -> str:
    """Why ``find_unfinished`` found nothing, for its one-line message: no unfinished run at all, or
    which keys of the newest unfinished run differ from ``cfg``."""
    root = Path(root)
    runs = _unfinished_runs(root) if root.is_dir() else []
    if not runs:
        return f"no unfinished run under {root}"
    _, _, run = max(runs)
    old = run_config(run)
    if old is None:
        return f"the newest unfinished run, {run}, has no readable config.yaml"
    diffs = config_differences(old, comparable_config(cfg))
    shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    n = len(runs)
    return f"{n} unfinished run{'s' if n != 1 else ''} under {root} with other configs; the newest, {run}, differs in {shown}"
