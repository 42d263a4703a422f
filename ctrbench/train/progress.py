"""The training loop's bookkeeping: its ``Progress`` (saved in ``last.pt``), the training clock,
the Ctrl-C flag and what it shows while it runs (the progress bar, the evaluation lines)."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field, fields

from ctrbench.streams import say


@dataclass
class Progress:
    """What the loop tracks; all of it is saved in ``last.pt`` so that a resumed run continues the
    same sequence of steps, evaluations and early-stopping decisions."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already trained on
    samples: int = 0
    train_seconds: float = 0.0
    eval_samples: int = 0
    eval_seconds: float = 0.0
    best: dict | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)
    running_loss: float = 0.0  # sum of the step losses since the last evaluation
    running_steps: int = 0
    done: bool = False  # training has ended (max steps or early stopping); what is left is the test split
    resumed_at: list[int] = field(default_factory=list)  # the steps this run was resumed from

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after its state was saved; the message says where and how to resume."""


class Clock:
    """Training time in ``Progress.train_seconds``, paused around evaluations and checkpoints."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.t0: float | None = time.perf_counter()

    def elapsed(self) -> float:
        return self.p.train_seconds + (time.perf_counter() - self.t0 if self.t0 is not None else 0.0)

    def pause(self) -> None:
        if self.t0 is not None:
            self.p.train_seconds += time.perf_counter() - self.t0
            self.t0 = None

    def resume(self) -> None:
        self.t0 = time.perf_counter()


class InterruptFlag:
    """While training, the first Ctrl-C (SIGINT) only sets ``requested``: the loop finishes its
    step, saves and stops. A second one raises KeyboardInterrupt at once. Off the main thread (where
    no signal handler can be installed) Ctrl-C keeps Python's behaviour."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "InterruptFlag":
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # a closed stderr (`2>&1 | tee`, and Ctrl-C ended tee too) must not stop the saving
        say("\nctrbench: Ctrl-C: saving the training state after this step (Ctrl-C again to stop at once)\n")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def history_line(row: dict) -> str:
    parts = [f"step {row['step']}", f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k.startswith("valid_") and isinstance(v, float)]
    return " | ".join(parts)


class ProgressBar:
    """What a user sees while training runs.

    On a terminal, a rich progress bar: step, loss, samples/s, elapsed time and the time left. With
    early stopping on (``trainer.patience`` > 0) the run may end before its last step, so the time
    left is shown as a bound ("ETA ≤"); when early stopping ends the run the bar is completed at
    that step and says so. Off a terminal (a log file, a pipe, CI), a plain line every
    ``every_s`` seconds instead (``trainer.progress_every``), so a long run is never silent between
    evaluations. Silent when disabled (``trainer.progress=false``)."""

    def __init__(self, console, total: int, enabled: bool, every_s: float = 30.0, bounded: bool = False) -> None:
        self.enabled = enabled and console is not None
        self.total = total
        self.bounded = bounded
        self.every_s = float(every_s)
        self.console = console
        self.live = self.enabled and bool(getattr(console, "is_terminal", False))
        self.t0 = time.monotonic()
        self.last_line = self.t0
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[sps]:,.0f} samples/s"),
                TimeElapsedColumn(),
                TextColumn("ETA ≤" if bounded else "ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, loss=float("nan"), sps=0.0)

    def __enter__(self):
        if self.live:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            try:
                self.bar.stop()  # draws the bar a last time: its stdout may be closed (`| tee` and Ctrl-C)
            except OSError:  # an older rich raises BrokenPipeError (the CLI makes a newer one go quiet)
                self.live = False

    def update(self, step: int, loss: float, sps: float) -> None:
        if self.live:
            self.bar.update(self.task, completed=step, loss=loss, sps=sps)
        elif self.enabled:
            now = time.monotonic()
            if now - self.last_line >= self.every_s:
                self.last_line = now
                say(plain_progress_line(step, self.total, loss, sps, now - self.t0, self.bounded) + "\n")

    def stopped_early(self, step: int) -> None:
        """Early stopping ended training at ``step``: the bar ends there (not frozen at its old total)."""
        if self.live:
            self.bar.update(self.task, total=step, completed=step, description="train (stopped early)")


def plain_progress_line(step: int, total: int, loss: float, sps: float, elapsed: float, bounded: bool) -> str:
    """``train step 1,200/17,200 · loss 0.4821 · 23,950 samples/s · 0:01:02 elapsed · ≤ 0:11:40 left``."""
    def clock(seconds: float) -> str:
        seconds = int(max(seconds, 0))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    left = (total - step) * elapsed / step if step else float("nan")
    left_text = "?" if left != left else f"{'≤ ' if bounded else ''}{clock(left)}"
    return (f"train step {step:,}/{total:,} · loss {loss:.4f} · {sps:,.0f} samples/s · "
            f"{clock(elapsed)} elapsed · {left_text} left{' (early stopping may end it sooner)' if bounded else ''}")
