"""One training loop for every model.

loss = BCE(target) (+ the model's auxiliary loss) + the regularizer's penalty.

Model selection uses the validation split carved from training data (``trainer.selection=valid``,
the default); ``test_as_valid`` reproduces the official code's and BARS's practice of selecting on
the test set and is recorded as such; ``last`` keeps the final weights. Evaluation runs every
``trainer.eval_every`` steps (or once per epoch), early stopping watches validation GAUC with
``trainer.patience``, the best checkpoint is kept, and the test split is scored once, at the end,
with the best checkpoint.
"""

from __future__ import annotations

import csv
import functools
import inspect
import json
import logging
import math
import platform
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

import ctrbench
from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.data.batches import Batcher
from ctrbench.data.prepare import load_dataset
from ctrbench.data.schema import ProcessedDataset, Vocab
from ctrbench.errors import ConfigError, TrainingDiverged
from ctrbench.models.base import CTRModel
from ctrbench.runtime import tune_malloc
from ctrbench.nn.activations import PReLU
from ctrbench.train import checkpoint
from ctrbench.train.evaluate import evaluate
from ctrbench.train.regularizers import Regularizer

log = logging.getLogger("ctrbench")

SELECTIONS = ("valid", "test_as_valid", "last")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device_cfg: DictConfig) -> torch.device:
    kind = device_cfg.type
    threads = int(device_cfg.get("threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    if device_cfg.get("tune_malloc", True):
        tune_malloc()
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda was asked for, but torch sees no CUDA device (use device=cpu or device=auto)")
        return torch.device("cuda")
    if kind == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device.type {kind!r}: expected cpu, cuda or auto")


def build_model(model_cfg: DictConfig, act_cfg: DictConfig, vocab: Vocab) -> CTRModel:
    """Instantiate ``model._target_`` with the vocabulary and the activation factory.

    With ``act.in_attention=false`` a model's attention MLP keeps PReLU (the paper's baseline
    activation) while every other hidden layer uses ``act``.
    """
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    target = kwargs.pop("_target_")
    kwargs.pop("name", None)
    act_factory = instantiate(act_cfg_without_name(act_cfg))
    cls = get_class(target)
    if "attention_act" in inspect.signature(cls.__init__).parameters and not act_cfg.get("in_attention", True):
        kwargs["attention_act"] = functools.partial(PReLU, init=0.1)
    try:
        model = cls(vocab=vocab, act=act_factory, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model '{model_cfg.get('name')}' does not accept this config: {e}") from None
    except ValueError as e:
        raise ConfigError(f"model '{model_cfg.get('name')}': {e}") from None
    return model


def act_cfg_without_name(act_cfg: DictConfig) -> DictConfig:
    """The config minus the keys that describe it rather than its ``_target_``'s arguments."""
    cfg = OmegaConf.to_container(act_cfg, resolve=True)
    for key in ("name", "in_attention"):
        cfg.pop(key, None)
    return OmegaConf.create(cfg)


def build_regularizer(reg_cfg: DictConfig) -> Regularizer:
    cfg = OmegaConf.to_container(reg_cfg, resolve=True)
    cfg.pop("name", None)
    return instantiate(cfg)


def lr_lambda(schedule: DictConfig, steps_per_epoch: int):
    """The learning-rate factor at a step: ``none``, or ``exponential`` / ``step`` decay by ``gamma``
    every ``every_steps`` steps (or every ``every_epochs`` epochs, when that is set)."""
    kind = schedule.get("type", "none")
    gamma = float(schedule.get("gamma", 1.0))
    every = int(schedule.get("every_steps", 1) or 1)
    if schedule.get("every_epochs"):
        every = int(schedule.every_epochs) * max(steps_per_epoch, 1)
    if kind == "none":
        return lambda step: 1.0
    if kind == "exponential":
        return lambda step: gamma ** (step / every)
    if kind == "step":
        return lambda step: gamma ** (step // every)
    raise ConfigError(f"unknown trainer.schedule.type {kind!r}: expected none, exponential or step")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def versions() -> dict:
    import hydra
    import pandas
    import pyarrow

    return {
        "ctrbench": ctrbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "hydra": hydra.__version__,
    }


@dataclass
class Progress:
    """What the loop tracks between evaluations."""

    step: int = 0
    epoch: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    eval_samples: int = 0
    eval_seconds: float = 0.0
    best: dict | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, console=None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = console
        t = cfg.trainer
        self.selection = t.selection
        if self.selection not in SELECTIONS:
            raise ConfigError(f"trainer.selection={self.selection!r}: expected one of {', '.join(SELECTIONS)}")
        self.weighting = cfg.metric.gauc_weighting

    # ---- set-up ---------------------------------------------------------------------------
    def setup(self, dataset: ProcessedDataset | None = None) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        seed_everything(int(cfg.seed))
        self.device = resolve_device(cfg.device)
        self.dataset = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.paths.data_dir)
        self.model = build_model(cfg.model, cfg.act, self.dataset.vocab).to(self.device)
        self.reg = build_regularizer(cfg.reg)
        self.reg.setup(self.model, self.dataset, int(cfg.dataset.max_len))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = instantiate(act_cfg_without_name(cfg.optim))(params)
        max_len = int(cfg.dataset.max_len)
        self.train_batches = Batcher(
            self.dataset, "train", int(t.batch_size), max_len, shuffle=True, bucket=int(t.bucket), seed=int(cfg.seed),
            negative_history=bool(getattr(self.model, "needs_negative_history", False)),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(t.schedule, len(self.train_batches)))
        select_split = {"valid": "valid", "test_as_valid": "test", "last": None}[self.selection]
        if select_split is not None and len(self.dataset.splits[select_split]) == 0:
            raise ConfigError(
                f"the '{select_split}' split is empty, so no model can be selected on it "
                "(set dataset.protocol.valid_positions >= 1, or trainer.selection=last)"
            )
        self.select_batches = (
            Batcher(self.dataset, select_split, int(t.eval_batch_size), max_len) if select_split else None
        )
        self.test_batches = Batcher(self.dataset, "test", int(t.eval_batch_size), max_len)
        n_batches = len(self.train_batches)
        if n_batches == 0:
            raise ConfigError("the training split is empty: nothing to train on")
        max_steps = t.max_steps
        self.total_steps = int(t.max_epochs) * n_batches
        if max_steps is not None and max_steps > 0:
            self.total_steps = min(self.total_steps, int(max_steps))
        self.eval_every = int(t.eval_every) if t.eval_every else n_batches
        self.ckpt_path = self.run_dir / "best.pt"

    # ---- one step -------------------------------------------------------------------------
    def train_step(self, batch) -> float:
        batch = self.reg.transform(batch, training=True).to(self.device)
        out = self.model(batch)
        loss = F.binary_cross_entropy_with_logits(out.logits, batch.label)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        penalty = self.reg.penalty(self.model, batch)
        if penalty is not None:
            loss = loss + penalty
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {self.progress.step + 1}: training diverged "
                f"(try a smaller learning rate than optim.lr={self.cfg.optim.lr}, or trainer.grad_clip)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.trainer.grad_clip
        if clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    # ---- evaluation and selection -----------------------------------------------------------
    def validate(self, train_loss: float) -> None:
        p = self.progress
        row = {"step": p.step, "epoch": p.epoch, "train_loss": round(train_loss, 6), "lr": self.scheduler.get_last_lr()[0]}
        if self.select_batches is None:
            p.history.append(row)
            return
        metrics, secs = evaluate(self.model, self.select_batches, self.device, self.weighting, self.reg)
        p.eval_samples += self.select_batches.n
        p.eval_seconds += secs
        row.update({f"valid_{k}": metrics[k] for k in ("auc", "gauc", "logloss")})
        p.history.append(row)
        score = metrics["gauc"] if not math.isnan(metrics["gauc"]) else metrics["auc"]
        if p.best is None or score > p.best["score"]:
            p.best = {"score": score, "gauc": metrics["gauc"], "auc": metrics["auc"], "logloss": metrics["logloss"], "step": p.step, "epoch": p.epoch}
            p.bad_evals = 0
            self.save_checkpoint()
        else:
            p.bad_evals += 1
        self.write_history()

    def save_checkpoint(self) -> None:
        p = self.progress
        checkpoint.save(
            self.ckpt_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": checkpoint.rng_state(),
                "step": p.step,
                "epoch": p.epoch,
                "best": p.best,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            },
        )

    def write_history(self) -> None:
        rows = self.progress.history
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(self.run_dir / "history.csv") as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

    # ---- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        t = self.cfg.trainer
        self.progress = p = Progress()
        patience = int(t.patience)
        bar = _ProgressBar(self.console, self.total_steps, enabled=bool(t.progress))
        self.model.train()
        stop = False
        running, n_running = 0.0, 0
        with bar:
            while not stop and p.step < self.total_steps:
                self.train_batches.set_epoch(p.epoch)
                t_epoch = time.perf_counter()
                for _, batch in self.train_batches:
                    loss = self.train_step(batch)
                    p.step += 1
                    p.samples += len(batch)
                    running += loss
                    n_running += 1
                    if p.step % 20 == 0 or p.step == self.total_steps:
                        elapsed = p.train_seconds + time.perf_counter() - t_epoch
                        bar.update(p.step, running / n_running, p.samples / max(elapsed, 1e-9))
                    last = p.step >= self.total_steps
                    if p.step % self.eval_every == 0 or last:
                        p.train_seconds += time.perf_counter() - t_epoch
                        self.validate(running / max(n_running, 1))
                        running, n_running = 0.0, 0
                        log.info(_history_line(p.history[-1]))
                        t_epoch = time.perf_counter()
                        if patience > 0 and p.bad_evals >= patience:
                            log.info(f"early stopping at step {p.step}: validation GAUC did not improve for {patience} evaluations")
                            stop = True
                    if stop or last:
                        break
                p.train_seconds += time.perf_counter() - t_epoch
                p.epoch += 1
        return self.finish()

    def finish(self) -> dict:
        p, cfg = self.progress, self.cfg
        if self.selection == "last" or not self.ckpt_path.exists():
            self.save_checkpoint()
        else:
            state = checkpoint.load(self.ckpt_path, map_location=self.device)
            self.model.load_state_dict(state["model"])
        test, secs = evaluate(self.model, self.test_batches, self.device, self.weighting, self.reg)
        p.eval_samples += self.test_batches.n
        p.eval_seconds += secs
        oracle = self.dataset.manifest.get("oracle")
        best = dict(p.best) if p.best else None
        if best:
            best.pop("score", None)
        metrics = {
            "status": "completed",
            "dataset": cfg.dataset.name,
            "model": cfg.model.name,
            "act": cfg.act.name,
            "reg": cfg.reg.name,
            "seed": int(cfg.seed),
            # which published table and row this run reproduces (set by +experiment / +row), and how
            # the data were split: what `ctrbench table` matches against the published numbers
            "experiment": cfg.get("experiment_name"),
            "row": cfg.get("row_name"),
            "protocol": self.dataset.manifest.get("protocol", {}).get("protocol"),
            "test": test,
            "valid_best": best,
            "oracle": {"test": oracle["test"], "valid": oracle.get("valid")} if oracle else None,
            "selection": self.selection,
            "train_samples_per_s": round(p.samples / max(p.train_seconds, 1e-9), 1),
            "eval_samples_per_s": round(p.eval_samples / max(p.eval_seconds, 1e-9), 1),
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "train_seconds": round(p.train_seconds, 3),
            "steps": p.step,
            "epochs": p.epoch,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "variant": {
                **self.model.variant(),
                "activation": {k: v for k, v in OmegaConf.to_container(cfg.act, resolve=True).items() if k not in ("_target_", "_partial_")},
                "regularizer": self.reg.describe(),
                "gauc_weighting": self.weighting,
            },
            "dataset_dir": self.dataset.manifest.get("name", "") + "-" + self.dataset.manifest.get("config_hash", ""),
            "versions": versions(),
        }
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2))
        return metrics


def _history_line(row: dict) -> str:
    parts = [f"step {row['step']}", f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k.startswith("valid_") and isinstance(v, float)]
    return " | ".join(parts)


class _ProgressBar:
    """A rich progress bar: step, loss, samples/s and ETA (silent when disabled)."""

    def __init__(self, console, total: int, enabled: bool) -> None:
        self.enabled = enabled and console is not None
        self.total = total
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[sps]:,.0f} samples/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, loss=float("nan"), sps=0.0)

    def __enter__(self):
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, step: int, loss: float, sps: float) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=step, loss=loss, sps=sps)
