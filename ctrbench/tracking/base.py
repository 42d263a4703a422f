"""What a tracker is and how it is called (``ctrbench.tracking``): ``RunInfo``, the ``Tracker``
protocol, ``Guarded`` (the first error is reported once, then the tracker is not called again)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ctrbench.train.resume import flatten_config  # noqa: F401 (re-exported: the trackers' params)

STATUSES = ("completed", "failed", "interrupted", "killed")


@dataclass
class RunInfo:
    """What a tracker is told when training starts (plain data: it travels to a helper process)."""

    run_dir: str  #: the run folder
    config: dict  #: the resolved config
    resumed: bool  #: training continues a run of this folder (``trainer.resume``)
    step: int  #: the step training starts from (0, or the step of the resumed ``last.pt``)
    sweep_dir: str | None = None  #: the sweep folder of a multirun job (None for a single run)
    job: str | None = None  #: the job's number in the sweep


@runtime_checkable
class Tracker(Protocol):
    """An experiment tracker (``tracking._target_``). Its methods may raise: the caller logs the
    first error once and stops calling it."""

    def start(self, run: RunInfo) -> None:
        """Training starts (or resumes: ``run.resumed``, continue the same tracked run)."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Scalars at a training step (``train/loss``, ``valid/gauc``, ``test/auc``, ...)."""

    def finish(self, status: str, metrics: dict | None) -> None:
        """The run ended: ``status`` is one of ``STATUSES``; ``metrics`` is metrics.json's content
        when it completed (None otherwise)."""


class Guarded:
    """Calls a tracker in this process; its first error is reported (once) and it is not called
    again. The tracker is built on the first call, so a failing constructor is such an error."""

    def __init__(self, build, report) -> None:
        self._build, self._report = build, report
        self.tracker = None
        self.failed = False

    def call(self, method: str | None, *args) -> None:
        """``tracker.method(*args)`` (a method the tracker lacks is skipped); ``None``: only build it."""
        if self.failed:
            return
        try:
            if self.tracker is None:
                self.tracker = self._build()
            fn = getattr(self.tracker, method, None) if method else None
            if fn is not None:
                fn(*args)
        except Exception as e:  # noqa: BLE001 - tracking never fails a run
            self.failed = True
            logging.getLogger("ctrbench.tracking").debug("the tracker failed", exc_info=True)
            self._report(f"{method or 'building the tracker'}: {type(e).__name__}: {e}")

    def close(self, timeout: float) -> None:
        pass


def instantiate_tracker(target: str, kwargs: dict):
    from hydra.utils import instantiate

    return instantiate({"_target_": target, **kwargs}, _convert_="all")
