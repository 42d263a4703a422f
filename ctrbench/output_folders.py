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


class OutputFolders(Callback):
    """Stops a command whose output folder Hydra cannot write, with one line and exit status 2."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._stop_if(config, problem_in_run_folder)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
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
