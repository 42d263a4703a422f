"""How a multirun of ``ctrbench train`` runs its jobs: how many, how many side by side, with how many
threads each, and the Hydra overrides that make it so.

On CPU, when the user has not chosen a launcher, a sweep of N jobs runs K = min(N, usable cores)
jobs side by side with Hydra's joblib launcher (``hydra/launcher=joblib hydra.launcher.n_jobs=K``),
each job with ``device.threads = cores // K`` (unless ``device.threads`` is set). One thread per job
beats two per job on the same cores: a job's ops gain little from a second thread (13% on 2 cores)
while two jobs in parallel nearly double the throughput. Each job computes exactly what it computes
run alone with the same ``device.threads`` (same seed, same thread count). On GPU (``device=cuda``,
or ``auto`` with a CUDA device) K = min(N, GPUs), and each worker process claims one GPU for the
jobs it runs (``job_gpu``), so two running jobs never share one.

``hydra/launcher=basic`` runs the jobs one at a time, as Hydra does by default; any launcher the user
chooses (``hydra/launcher=joblib``, ``slurm``) is kept, and ``hydra.launcher.n_jobs=N`` alone caps K.

The job count is what Hydra's BasicSweeper will launch: the cartesian product of the sweep values of
``hydra.sweeper.params`` (set by ``+experiment=...``) and the command line's sweeps, the command
line winning per key. Optuna's sweeper launches ``hydra.sweeper.n_jobs`` trials at a time (the
``din_optuna`` preset: 1, since its TPE sampler asks that many trials before it learns from them),
so K = min(its n_jobs, cores): running a batch side by side changes no trial. Other sweepers keep
their jobs one at a time.

The plan reaches the jobs in the environment variable ``CTRBENCH_SWEEP_PLAN`` (JSON), set for each
job through ``hydra.job.env_set``: a job reads it to record how its threads were chosen (``metrics.json``
``threads_choice``) and, on GPU, which GPU slots to claim.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

ENV = "CTRBENCH_SWEEP_PLAN"
# jobs side by side would draw their progress bars over each other: the sweep's progress lines
# stand in for them (trainer.progress changes no result)
NO_BARS = "trainer.progress=false"

# flags after which Hydra's next argument is a value, not an override
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
                     "-cd", "--experimental-rerun", "--info", "-i", "--shell-completion", "-sc"}
# flags that make Hydra print something instead of running the sweep
_NOT_A_RUN = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version",
              "--experimental-rerun"}


@dataclass
class Plan:
    jobs: int | None  # jobs in the sweep (None: the sweeper decides as it goes)
    side_by_side: int | None  # jobs at once (None: the launcher decides, e.g. SLURM)
    threads: int | None  # device.threads the plan gives each job (None: the job's own setting)
    cores: int  # usable CPU cores
    gpus: int = 0  # > 0: each job runs on one of this many GPUs, one job per GPU
    launcher: str = "basic"  # the hydra/launcher that runs the jobs
    planned_launcher: bool = False  # the plan chose the launcher (the user did not)
    search: bool = False  # an Optuna search (trials) rather than a grid
    overrides: list[str] = field(default_factory=list)  # added to the command line
    gpu_slots: str | None = None  # the folder of the GPU slot locks (set by the CLI for a GPU sweep)
    reason: str = ""  # why the jobs run one at a time, when they do

    def describe(self) -> str:
        """``sweep of 35 jobs, 2 side by side with 1 thread each (hydra/launcher=basic runs them one at a time)``."""
        if self.jobs is None:
            what = "sweep (its sweeper decides the jobs)"
        elif self.search:
            what = f"Optuna search of {self.jobs} trial{'s' if self.jobs != 1 else ''}"
        else:
            what = f"sweep of {self.jobs} job{'s' if self.jobs != 1 else ''}"
        if self.side_by_side is None:
            return f"{what}, run by hydra/launcher={self.launcher}"
        if self.side_by_side == 1:
            if self.jobs == 1:
                return what
            return f"{what}, one at a time" + (f" ({self.reason})" if self.reason else "")
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''} each" if self.threads else "their own device.threads"
        how = f"{self.side_by_side} side by side"
        how += f", one per GPU, {threads.replace('thread', 'CPU thread')}" if self.gpus else f" with {threads}"
        how += " (hydra/launcher=basic runs them one at a time)" if self.planned_launcher else f" (hydra/launcher={self.launcher})"
        return f"{what}, {how}"

    def env(self) -> str:
        return json.dumps({"side_by_side": self.side_by_side, "threads": self.threads, "cores": self.cores,
                           "gpus": self.gpus, "gpu_slots": self.gpu_slots})


def job_plan() -> dict:
    """The sweep plan this job runs under (``CTRBENCH_SWEEP_PLAN``), or {} outside a planned sweep."""
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _overrides(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in _FLAGS_WITH_VALUE:
            skip = True
            continue
        if a.startswith("-"):
            continue
        if "=" in a or a.startswith("~"):
            out.append(a)
    return out


def joblib_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
    except (ImportError, ValueError):
        return False


def _cuda_devices() -> int:
    import glob
    import sys

    if sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/kfd"):
        return 0  # no NVIDIA or ROCm device node: no GPU, without importing torch in the CLI's process
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _int(v, default: int | None = None) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def count_jobs(params: dict | None, task_overrides: list[str], parser) -> int | None:
    """The jobs Hydra's BasicSweeper launches for ``params`` (``hydra.sweeper.params``) and the
    command line's ``task_overrides``: the product of each key's number of values, the command line
    replacing a key of ``params`` (BasicSweeper.split_arguments). None for a sweep it cannot count."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(task_overrides)
    sizes: dict[str, int] = {}
    for o in parser.parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                return None
            sizes[key] = len(list(o.sweep_string_iterator()))
        else:
            sizes[key] = 1
    return math.prod(sizes.values()) if sizes else 1


def make_plan(args: list[str], *, cores: int | None = None, cuda_devices: Callable[[], int] | None = None) -> Plan | None:
    """The plan for ``ctrbench train -m <args>``; None when there is nothing to plan (``--cfg``,
    ``--help``, ...) or the config does not compose (Hydra then reports why)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from ctrbench.conf_paths import conf_dir
    from ctrbench.cores import usable_cores

    if any(a in _NOT_A_RUN for a in args):
        return None
    overrides = _overrides(args)
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports it
        return None
    keys = {o.key_or_group: o for o in parsed}
    user_launcher = "hydra/launcher" in keys
    user_n_jobs = _int(keys["hydra.launcher.n_jobs"].value()) if "hydra.launcher.n_jobs" in keys and not keys["hydra.launcher.n_jobs"].is_sweep_override() else None
    # without a launcher of the user's, hydra.launcher.* are for the joblib launcher the plan adds
    compose_with = overrides if user_launcher else [o for o, p in zip(overrides, parsed) if not p.key_or_group.startswith("hydra.launcher.")]
    # the user's config folders (--config-dir, which is not an override, and hydra.searchpath) as one override
    from ctrbench.conf_paths import SEARCHPATH_KEY, searchpath_override

    try:
        searchpath = searchpath_override(args)
    except Exception:  # noqa: BLE001 - a bad folder fails again, with the CLI's message
        return None
    if searchpath:
        compose_with = [o for o in compose_with if o.lstrip("+~").split("=", 1)[0] != SEARCHPATH_KEY] + [searchpath]
    gh = GlobalHydra.instance()
    if gh.is_initialized():
        return None  # inside another Hydra app (the Python API): leave it alone
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = gh.hydra.compose_config("train", compose_with, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
            hydra_cfg = cfg.hydra
            sweeper = str(hydra_cfg.sweeper.get("_target_", ""))
            task = list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))
            search = "optuna" in sweeper.lower()
            batch = None
            if sweeper.endswith("BasicSweeper"):
                params = OmegaConf.to_container(hydra_cfg.sweeper.params, resolve=False) if hydra_cfg.sweeper.get("params") else {}
                jobs = count_jobs(params, task, OverridesParser.create(config_loader=gh.config_loader()))
                batch = jobs
                swept_keys = {str(k).lstrip("+~") for k in params} | {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
            elif search:
                jobs = _int(hydra_cfg.sweeper.get("n_trials"))
                batch = max(1, _int(hydra_cfg.sweeper.get("n_jobs"), 1) or 1)
                swept_keys = {str(k) for k in (hydra_cfg.sweeper.get("params") or {})} | {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
            else:
                jobs, swept_keys = None, set()
            choice = str(hydra_cfg.runtime.choices.get("hydra/launcher") or "basic")
            launcher_n_jobs = _int(hydra_cfg.launcher.get("n_jobs")) if "joblib" in str(hydra_cfg.launcher.get("_target_", "")) else None
            device_type = str(cfg.device.get("type", "auto"))
            threads_value = _int(cfg.device.get("threads"), 0) or 0
    except Exception:  # noqa: BLE001 - a config that does not compose fails again, with Hydra's message
        return None
    cores = cores or usable_cores()
    threads_set = threads_value > 0 or "device.threads" in swept_keys
    gpus = 0
    if device_type == "cuda" or device_type == "auto":
        try:
            gpus = int((cuda_devices or _cuda_devices)())
        except Exception:  # noqa: BLE001 - no usable CUDA: plan for CPU
            gpus = 0
    plan = Plan(jobs=jobs, side_by_side=1, threads=None, cores=cores, launcher=choice, search=search)
    if user_launcher or choice != "basic":  # the user's (or a config's) launcher
        if choice == "basic":
            plan.reason = "hydra/launcher=basic"
            return plan
        if launcher_n_jobs is None:  # SLURM, ...: jobs run elsewhere, the launcher decides
            plan.side_by_side = None
            return plan
        n = user_n_jobs if user_n_jobs is not None else launcher_n_jobs
        n = n if n > 0 else max(1, cores + 1 + n)  # joblib: -1 is all cores, -2 all but one, ...
        k = max(1, min(n, batch or n))
        plan.side_by_side = k
        plan.reason = f"hydra/launcher={choice} with n_jobs={n}" if n == 1 else (f"the sweeper's n_jobs={batch}" if batch == 1 else "")
        if k > 1 and not threads_set:
            plan.threads = max(1, cores // k)
            plan.overrides.append(f"device.threads={plan.threads}")
        if k > 1 and "trainer.progress" not in keys:
            plan.overrides.append(NO_BARS)
        if k > 1 and gpus:
            plan.gpus = min(k, gpus)
        return plan
    if batch is None:  # a sweeper that decides its jobs as it goes: one at a time
        return plan
    limit = gpus if gpus else cores
    k = max(1, min(batch, limit, user_n_jobs if user_n_jobs and user_n_jobs > 0 else limit))
    if k > 1 and not joblib_available():
        plan.reason = "hydra-joblib-launcher is not installed: pip install hydra-joblib-launcher"
        return plan
    if k <= 1 and user_n_jobs is None:
        if batch > 1:
            plan.reason = ("1 GPU" if gpus == 1 else f"{cores} usable core" if cores == 1 else "")
        elif search and (jobs or 0) > 1:
            plan.reason = f"the sweeper's n_jobs={batch}"
        return plan
    plan.side_by_side, plan.launcher, plan.planned_launcher = k, "joblib", True
    plan.overrides += ["hydra/launcher=joblib"] + ([] if user_n_jobs is not None else [f"hydra.launcher.n_jobs={k}"])
    if k == 1:  # hydra.launcher.n_jobs=1 given alone
        plan.reason = f"hydra.launcher.n_jobs={user_n_jobs}"
        return plan
    if not threads_set:
        plan.threads = max(1, cores // k)
        plan.overrides.append(f"device.threads={plan.threads}")
    if "trainer.progress" not in keys:
        plan.overrides.append(NO_BARS)
    plan.gpus = k if gpus else 0
    return plan


# ---- GPU slots: one running job per GPU -------------------------------------------------------
_claimed: tuple[str, int, object] | None = None  # (slots folder, GPU, the open lock file) of this process


def job_gpu(plan: dict | None = None, job_num: int | None = None) -> int | None:
    """The GPU this job runs on in a GPU sweep, or None outside one. Each worker process claims a
    free GPU slot (an exclusive ``flock`` on ``<gpu_slots>/<i>.lock``) for as long as it lives and
    runs all its jobs there, so at most one running job uses each GPU; where locks are unavailable,
    the job number modulo the GPUs."""
    global _claimed
    plan = job_plan() if plan is None else plan
    gpus = _int(plan.get("gpus"), 0) or 0
    if gpus <= 0:
        return None
    slots = plan.get("gpu_slots")
    if slots and _claimed is not None and _claimed[0] == slots:
        return _claimed[1]
    if slots:
        try:
            import fcntl

            for i in range(gpus):
                f = open(os.path.join(slots, f"{i}.lock"), "a+")  # noqa: SIM115 - held for the process's life
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                _claimed = (slots, i, f)
                return i
        except (ImportError, OSError):
            pass
    if job_num is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            job_num = int(HydraConfig.get().job.num)
        except Exception:  # noqa: BLE001 - not a Hydra job
            job_num = 0
    return job_num % gpus


# ---- the CLI's side ---------------------------------------------------------------------------
@contextlib.contextmanager
def planned_sweep(args: list[str]) -> Iterator[list[str]]:
    """For ``ctrbench train -m <args>``: yields the arguments with the plan's overrides added, and
    for the sweep's duration publishes the plan: ``ctrbench.sweep.PLAN`` for the progress lines, and
    ``CTRBENCH_SWEEP_PLAN`` in each job's environment (Hydra's ``hydra.job.env_set``, set while the
    job runs, also in a reused joblib worker). A plan that cannot be made leaves the sweep as Hydra
    would run it."""
    from ctrbench import sweep

    try:
        plan = make_plan(args)
    except Exception:  # noqa: BLE001 - planning is an optimisation: never a reason for a sweep not to run
        plan = None
    slots = None
    if plan is not None:
        if plan.gpus:
            slots = tempfile.mkdtemp(prefix="ctrbench-gpu-slots-")
            plan.gpu_slots = slots
        value = plan.env()
        if "'" in value or "\\" in value:  # not in Hydra's quoted string as it is: the jobs go without
            plan.gpu_slots = None
            value = plan.env()
        args = [*args, *plan.overrides, f"++hydra.job.env_set.{ENV}='{value}'"]
    sweep.PLAN = plan
    try:
        yield args
    finally:
        sweep.PLAN = None
        sweep.stop_progress()
        if slots:
            shutil.rmtree(slots, ignore_errors=True)
