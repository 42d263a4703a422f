"""Experiment tracking: ``tracking=none|tensorboard|mlflow`` (docs/tracking.md).

A tracker is any class with the three methods of ``Tracker`` (``start``, ``log_metrics``,
``finish``), named by ``tracking._target_`` in a config of the ``tracking`` group; its constructor
takes the group's other keys (``uri``, ``experiment``, ...). The keys the run itself reads are
``log_every`` (steps between two training points), ``helper_process`` (run the tracker in a helper
process: ``helper.py``) and ``finish_timeout`` (seconds the run waits at its end for it).

The Trainer talks to a ``RunTracking`` through a handful of one-line hooks: ``open`` (set-up: the
helper process starts, so its imports overlap the data loading), ``start`` (training starts or
resumes), ``step`` (every step: a modulo, and every ``log_every`` steps the training loss since the
last point, from the sum the loop already keeps, the learning rate and samples/s), ``evaluated``
(each validation), ``finish`` (completed, failed or interrupted: the test metrics, metrics.json,
history.csv and the config). Tracking never fails a run: the first error of the tracker is logged
once, as a warning, and the tracker is not called again. Only a tracker whose package is not
installed stops the run, up front, with a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import asdict
from pathlib import Path

from ctrbench.errors import ConfigError
from ctrbench.tracking.base import STATUSES, Guarded, RunInfo, Tracker, flatten_config, instantiate_tracker

__all__ = ["STATUSES", "Guarded", "RunInfo", "Tracker", "flatten_config", "instantiate_tracker", "for_run", "RunTracking",
           "NO_TRACKING", "end_sweep"]

log = logging.getLogger("ctrbench")

# the keys of a tracking config that the run reads; the others go to the tracker's constructor
RUN_KEYS = ("name", "_target_", "log_every", "helper_process", "finish_timeout")


# ---- the config -------------------------------------------------------------------------------
def _module_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package missing; a module set to None in sys.modules
        return True


def _locate(target: str):
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as e:  # noqa: BLE001 - any failure to import it is the same config mistake
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ConfigError(f"tracking._target_={target}: cannot be imported ({reason})") from None


def _setting(cfg: dict, key: str, default, check, expected: str):
    value = cfg.get(key, default)
    if value is None:
        value = default
    if not check(value):
        raise ConfigError(f"tracking.{key}={value!r} is invalid: expected {expected}")
    return value


def for_run(cfg, run_dir: str | Path) -> "RunTracking | NoTracking":
    """The tracking of one run, from the ``tracking`` config (a DictConfig or dict, or None).
    Checks the settings and that the tracker's packages are installed (a one-line ``ConfigError``
    naming the extra otherwise); starts nothing yet."""
    if cfg is None:
        return NO_TRACKING
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    target = cfg.get("_target_")
    if not target:
        if cfg.get("name") not in (None, "none"):
            raise ConfigError(f"tracking={cfg.get('name')}: the config has no _target_ (the tracker's class)")
        return NO_TRACKING
    name = str(cfg.get("name") or target.rsplit(".", 1)[-1])
    every = _setting(cfg, "log_every", 100, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
    helper = _setting(cfg, "helper_process", False, lambda v: isinstance(v, bool), "true or false")
    timeout = _setting(cfg, "finish_timeout", 300, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                       "a number of seconds >= 0")
    kwargs = {k: v for k, v in cfg.items() if k not in RUN_KEYS}
    cls = _locate(str(target))
    requirements = getattr(cls, "requirements", None)
    for module, extra in (requirements(**kwargs) if callable(requirements) else {}).items():
        if _module_missing(module):
            raise ConfigError(f"tracking={name} needs the {module} package, which is not installed: pip install 'ctrbench[{extra}]'")
    return RunTracking(name, str(target), kwargs, Path(run_dir), every, helper, float(timeout))


def sweep_job() -> tuple[str | None, str | None]:
    """(sweep folder, job number) of this Hydra multirun job; (None, None) for a single run."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return str(Path(str(hc.sweep.dir)).resolve()), str(hc.job.get("num"))
    except Exception:  # noqa: BLE001 - not under Hydra (the Python API): a single run
        pass
    return None, None


# ---- what the Trainer calls ---------------------------------------------------------------------
class NoTracking:
    """``tracking=none``: every hook does nothing."""

    every = 0

    def open(self, main: bool = True) -> None:
        pass

    def start(self, cfg, progress, resumed: bool) -> None:
        pass

    def step(self, progress, clock, scheduler) -> None:
        pass

    def evaluated(self, progress, clock, scheduler) -> None:
        pass

    def finish(self, status: str, metrics: dict | None = None) -> None:
        pass


NO_TRACKING = NoTracking()


def _never_raises(hook):
    """A hook of ``RunTracking``: an error in it is reported once, never raised into training."""

    def wrapped(self, *args, **kwargs):
        try:
            return hook(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - tracking never fails a run
            self.done = True
            self.report(f"{hook.__name__}: {type(e).__name__}: {e}")

    wrapped.__name__ = hook.__name__
    wrapped.__doc__ = hook.__doc__
    return wrapped


class RunTracking:
    """One run's tracking: the training points, the evaluations and the end, sent to the tracker
    (in this process or in a helper process). ``step`` is called every step and costs a modulo."""

    def __init__(self, name: str, target: str, kwargs: dict, run_dir: Path, every: int, helper: bool, timeout: float) -> None:
        self.name, self.target, self.kwargs = name, target, kwargs
        self.run_dir, self.every, self.helper, self.timeout = run_dir, every, helper, timeout
        self.backend = None
        self.reported = False
        self.done = False
        self._mark = (0.0, 0, 0, 0.0)  # running loss sum, its steps, samples, train seconds at the last point

    def report(self, message: str) -> None:
        """Log a tracking error once (later ones are dropped: the tracker is not called again)."""
        if self.reported:
            return
        self.reported = True
        first = " ".join(str(message).split())[:500]
        log.warning(f"tracking={self.name} failed and is off for the rest of this run (training goes on): {first}")

    # the hooks
    @_never_raises
    def open(self, main: bool = True) -> None:
        """Set-up: in a DDP job only rank 0 tracks; the helper process starts here."""
        if self.backend is not None or self.done:
            return
        if not main:
            self.done = True
            return
        if self.helper:
            from ctrbench.tracking.helper import HelperProcess

            self.backend = HelperProcess(self.target, self.kwargs, self.run_dir, self.report)
        else:
            self.backend = Guarded(lambda: instantiate_tracker(self.target, self.kwargs), self.report)

    @_never_raises
    def start(self, cfg, progress, resumed: bool) -> None:
        self.open()
        if self.done:
            return
        from omegaconf import OmegaConf

        sweep_dir, job = sweep_job()
        config = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
        run = RunInfo(str(self.run_dir.resolve()), config, bool(resumed), int(progress.step), sweep_dir, job)
        self.backend.call("start", run if not self.helper else asdict(run))
        self._mark = (progress.running_loss, progress.running_steps, progress.samples, progress.train_seconds)

    def step(self, p, clock, scheduler) -> None:
        if p.step % self.every == 0:
            self._train_point(p, clock, scheduler)

    @_never_raises
    def evaluated(self, p, clock, scheduler) -> None:
        """After a validation (before the loop resets its running loss): that point and the
        validation metrics of the history row."""
        row = p.history[-1] if p.history else {}
        values = self._train_values(p, clock, scheduler) if self._mark[1] != p.running_steps else {}
        values["train/epoch"] = p.epoch
        for k, v in row.items():
            if k.startswith("valid_") and isinstance(v, (int, float)):
                values[f"valid/{k[len('valid_'):]}"] = v
        self._send(p.step, values)
        self._mark = (0.0, 0, p.samples, clock.elapsed())

    @_never_raises
    def finish(self, status: str, metrics: dict | None = None) -> None:
        """The run ended (``status``: completed, failed, interrupted); waits at most
        ``finish_timeout`` seconds for the tracker to finish."""
        if self.done or self.backend is None:
            self.done = True
            return
        self.done = True
        if metrics:
            self._send(int(metrics.get("steps") or 0), final_scalars(metrics))
        self.backend.call("finish", status, metrics)
        self.backend.close(self.timeout)

    # the values
    def _train_values(self, p, clock, scheduler) -> dict:
        loss0, n0, samples0, secs0 = self._mark
        values: dict[str, float] = {}
        if p.running_steps > n0:
            values["train/loss"] = (p.running_loss - loss0) / (p.running_steps - n0)
        values["train/lr"] = float(scheduler.get_last_lr()[0])
        secs = clock.elapsed()
        if secs > secs0 and p.samples > samples0:
            values["train/samples_per_s"] = (p.samples - samples0) / (secs - secs0)
        self._mark = (p.running_loss, p.running_steps, p.samples, secs)
        return values

    @_never_raises
    def _train_point(self, p, clock, scheduler) -> None:
        if self.done or self.backend is None:
            return
        self._send(p.step, self._train_values(p, clock, scheduler))

    def _send(self, step: int, values: dict) -> None:
        if self.done and not values:
            return
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if values and self.backend is not None:
            self.backend.call("log_metrics", int(step), values)


def final_scalars(metrics: dict) -> dict[str, float]:
    """The scalars of a completed run's metrics.json: ``test/*``, ``valid_best/*``, throughput and
    memory (what TensorBoard's HParams view and MLflow compare across a sweep)."""
    out: dict[str, float] = {}
    for group in ("test", "valid_best"):
        for k, v in (metrics.get(group) or {}).items():
            if k in ("auc", "gauc", "logloss") and isinstance(v, (int, float)) and math.isfinite(float(v)):
                out[f"{group}/{k}"] = float(v)
    for k in ("train_samples_per_s", "eval_samples_per_s", "peak_memory_mb", "train_seconds"):
        v = metrics.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"run/{k}"] = float(v)
    return out


# ---- the end of a sweep -------------------------------------------------------------------------
def end_sweep(sweep_dir: str | Path, failed: bool) -> None:
    """Called once a multirun's jobs are done (``ctrbench.sweep.SweepFailures``): close the sweep's
    parent run in MLflow, when its jobs made one. Never raises."""
    try:
        from ctrbench.tracking.mlflow import end_sweep as end_mlflow_sweep

        end_mlflow_sweep(Path(sweep_dir), failed)
    except Exception as e:  # noqa: BLE001 - tracking never fails a sweep
        log.warning(f"tracking: could not close the sweep's parent run in MLflow: {type(e).__name__}: {e}")
