"""Hydra writes into a command's output folder before ctrbench's code runs: the run folder, its
``.hydra/`` copies of the config and the log file (``train.log``), and a multirun's sweep folder
(``multirun.yaml``). A folder it cannot write to (read-only, not ours, not a folder) made Hydra
fail with a traceback and exit status 1. The CLI adds ``OutputFolders`` as a Hydra callback to every
command: before Hydra writes anything, it tries what Hydra is about to write and stops with a
one-line error naming the folder, exit status 2.

What it tries: creating the folder (and ``.hydra/``), creating (and deleting) a file in it, and
opening for appending each file Hydra rewrites that is already there (a resumed run's
``train.log`` and ``.hydra/*.yaml``); nothing that exists is changed. In a multirun, the sweep folder
(each job's own folder is made by the launcher, inside it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

OVERRIDE = "+hydra.callbacks.ctrbench_output_folders._target_=ctrbench.output_folders.OutputFolders"

# what Hydra writes in <output folder>/<hydra.output_subdir>
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def _reason(e: OSError) -> str:
    code = errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    return f"{e.strerror or e}{f' [{code}]' if code else ''}"


def _try_folder(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ctrbench-write-check.{secrets.token_hex(8)}.tmp"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as e:
        return _reason(e)
    return None


def _try_file(path: Path) -> str | None:
    """None if ``path`` is absent or can be opened for appending (nothing is written), else why not."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return None
    except OSError as e:
        return _reason(e)
    os.close(fd)
    return None


def _log_files(config: DictConfig, output_dir: Path) -> list[Path]:
    """The files Hydra's job logging writes (handlers with a ``filename``) for ``output_dir``."""
    logging_cfg = config.hydra.get("job_logging")
    if not logging_cfg or not logging_cfg.get("handlers"):
        return []
    out = []
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = str(output_dir)  # the value Hydra's run_job sets next
    for name in logging_cfg.handlers:
        with contextlib.suppress(Exception):  # a handler this check cannot resolve: Hydra reports it
            filename = OmegaConf.select(config, f"hydra.job_logging.handlers.{name}.filename")
            if filename:
                out.append(Path(str(filename)))
    return out


def problem_in_run_folder(config: DictConfig) -> str | None:
    """Why Hydra cannot write the run folder of a single run (``hydra.run.dir``), or None."""
    folder = Path(os.path.abspath(str(config.hydra.run.dir)))
    subdir = config.hydra.get("output_subdir")
    logs = _log_files(config, folder)
    if subdir is None and not logs:
        # Hydra only makes the folder (prepare, evaluate, table: hydra.run.dir=.)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"cannot create the output folder '{folder}': {_reason(e)}; choose another hydra.run.dir"
        return None
    why = _try_folder(folder)
    if why:
        return f"cannot write to the run folder '{folder}': {why}; choose a writable hydra.run.dir"
    paths = list(logs)
    if subdir is not None:
        hydra_dir = folder / str(subdir)
        why = _try_folder(hydra_dir)
        if why:
            return f"cannot write Hydra's copy of the config in '{hydra_dir}': {why}; choose a writable hydra.run.dir"
        paths += [hydra_dir / f for f in HYDRA_FILES]
    for path in paths:
        why = _try_file(path)
        if why:
            return f"cannot write '{path}' in the run folder: {why}; choose a writable hydra.run.dir"
    return None


def problem_in_sweep_folder(config: DictConfig) -> str | None:
    """Why a multirun cannot write its sweep folder (``hydra.sweep.dir``), or None."""
    folder = Path(os.path.abspath(str(config.hydra.sweep.dir)))
    why = _try_folder(folder) or _try_file(folder / "multirun.yaml")
    if why:
        return f"cannot write to the sweep folder '{folder}': {why}; choose a writable hydra.sweep.dir"
    return None


# ---- a command rejected before its run folder exists ------------------------------------------
# Hydra makes a single run's folder (.hydra/, the log file) before ctrbench's code sees the config.
# A config that ctrbench then rejects used to leave that folder behind, empty. So the config is
# checked here, before the folder is made; and a run rejected later, before it trained (a missing
# data file), has its folder removed when this command made it (``remove_unstarted``).

# run folders this process's Hydra run is about to make (absent at on_run_start) -> the outermost
# of their parent folders that it makes too (removed with the run folder when left empty)
_NEW_RUN_FOLDERS: dict[str, str] = {}
# what a run folder holds before training starts: Hydra's copies and log, ctrbench's claim and config
_BEFORE_TRAINING = {".hydra", ".ctrbench-run", "config.yaml"}


def _task_config(config: DictConfig) -> DictConfig:
    """The config the task gets: ``config`` without its ``hydra`` node."""
    import copy

    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def sweep_without_multirun(config: DictConfig) -> str | None:
    """Why a single run (no -m) of a config that defines a sweep (``hydra.sweeper.params``, set by
    ``+experiment=<table>`` or ``+hparams_search=...``) would not do what was asked, or None. The
    sweep's keys that the command line fixes (``+row=...``, ``seed=3``) are one run of it; a sweep
    key left open would silently train only its first value's config."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    if not params:
        return None
    overrides = [str(o) for o in (OmegaConf.select(config, "hydra.overrides.task", default=None) or [])]
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    open_keys = [str(k) for k in params if str(k).lstrip("+~") not in given and str(k).lstrip("+~") != "seed"]
    if not open_keys:
        return None
    source = next((o for o in overrides if o.lstrip("+").split("=", 1)[0] in ("experiment", "hparams_search")), None)
    what = source or "this config"
    counts = {str(k): _values(params[k]) for k in params}
    described = [f"{k} ({len(v)} values)" if v else k for k, v in counts.items()]
    jobs = 1
    for v in counts.values():
        jobs = jobs * len(v) if v and jobs else 0
    total = f", {jobs} jobs" if jobs else ""
    import shlex

    rest = " ".join(shlex.quote(o) for o in overrides)
    key = open_keys[0]
    first = counts[key][0] if counts[key] else None
    example = f"; for one of its runs give {key} too (e.g. {key}={first})" if first else ""
    return (f"{what} is a sweep over {', '.join(described)}{total}: run it with -m (`ctrbench train -m {rest}`); without -m "
            f"it would train one config that is not one of its runs ({key} left at its default){example}")


def _values(value) -> list[str]:
    """The values of a plain comma-separated sweep (``a,b,c``); [] for ranges and searches
    (``range(...)``, ``interval(...)``, ``choice(...)``, ``tag(...)``)."""
    text = str(value)
    if "(" in text:
        return []
    return [v.strip() for v in text.split(",") if v.strip()]


def problem_before_run(config: DictConfig) -> str | None:
    """Why ``ctrbench train`` would reject this config (its own checks, and a sweep without -m),
    or None; checked before Hydra makes the run folder. A check that cannot run here (a value
    that resolves only inside the run) is left to the run itself."""
    if str(OmegaConf.select(config, "hydra.job.name", default="")) != "train":
        return None
    problem = sweep_without_multirun(config)
    if problem:
        return problem
    from ctrbench.config_checks import check_train
    from ctrbench.errors import UserError

    try:
        check_train(_task_config(config))
    except UserError as e:
        return str(e)
    except Exception:  # noqa: BLE001 - the run's own check reports it, with the run's context
        return None
    return None


def remove_unstarted(run_dir: str | Path) -> bool:
    """Remove the run folder of a single run rejected before it trained, when this command made it
    (never a folder that was there before: a resumed run, a chosen hydra.run.dir). Returns whether
    it was removed."""
    import shutil

    folder = Path(os.path.abspath(str(run_dir)))
    if str(folder) not in _NEW_RUN_FOLDERS:
        return False
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    if any(p.name not in _BEFORE_TRAINING and not (p.is_file() and p.suffix == ".log") for p in entries):
        return False
    if not _claimed_by_this_process_or_none(folder):
        return False  # another run claimed it (the same hydra.run.dir given twice): it is that run's
    shutil.rmtree(folder, ignore_errors=True)
    outermost = Path(_NEW_RUN_FOLDERS.pop(str(folder)))
    parent = folder.parent
    while parent != outermost.parent and parent.is_relative_to(outermost):  # made by this command (the date folder)
        try:
            parent.rmdir()  # only when empty: another run's folder keeps it
        except OSError:
            break
        parent = parent.parent
    return not folder.exists()


def _claimed_by_this_process_or_none(folder: Path) -> bool:
    """Whether the folder's run mark (``run_folder.MARKER``) is absent or this process's."""
    import json

    from ctrbench.run_folder import MARKER

    try:
        owner = json.loads((folder / MARKER).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and owner.get("pid") == os.getpid()


# sweep folders this process's multirun made (absent at on_multirun_start)
_NEW_SWEEP_FOLDERS: set[str] = set()


def remove_unstarted_sweeps() -> None:
    """Remove the sweep folders this process made whose jobs never started (a job's config that
    does not compose stops the sweep before its first job folder): they hold only multirun.yaml."""
    for name in sorted(_NEW_SWEEP_FOLDERS):
        folder = Path(name)
        try:
            if {p.name for p in folder.iterdir()} <= {"multirun.yaml"}:
                (folder / "multirun.yaml").unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            continue
        _NEW_SWEEP_FOLDERS.discard(name)


class OutputFolders(Callback):
    """Stops a command whose output folder Hydra cannot write, or whose config ctrbench rejects,
    with one line and exit status 2, before Hydra makes the folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._stop_if(config, problem_before_run)
        with contextlib.suppress(Exception):
            folder = Path(os.path.abspath(str(config.hydra.run.dir)))
            if not folder.exists():
                outermost = folder
                while not outermost.parent.exists():
                    outermost = outermost.parent
                _NEW_RUN_FOLDERS[str(folder)] = str(outermost)
        self._stop_if(config, problem_in_run_folder)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with contextlib.suppress(Exception):
            folder = Path(os.path.abspath(str(config.hydra.sweep.dir)))
            if not folder.exists():
                _NEW_SWEEP_FOLDERS.add(str(folder))
        self._stop_if(config, problem_in_sweep_folder)

    @staticmethod
    def _stop_if(config: DictConfig, check) -> None:
        try:
            problem = check(config)
        except Exception:  # noqa: BLE001 - a config this check cannot read: Hydra goes on and reports it
            return
        if problem:
            from ctrbench.streams import fail as _fail

            _fail(str(config.hydra.job.get("name") or "ctrbench"), problem)  # SystemExit(2): Hydra lets it through
