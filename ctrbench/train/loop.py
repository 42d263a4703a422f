"""One training loop for every model.

loss = BCE(target) (+ the model's auxiliary loss) + the regularizer's penalty.

Model selection uses the validation split carved from training data (``trainer.selection=valid``,
the default); ``test_as_valid`` reproduces the official code's and BARS's practice of selecting on
the test set and is recorded as such; ``last`` keeps the final weights. Evaluation runs every
``trainer.eval_every`` steps (or once per epoch), early stopping watches validation GAUC with
``trainer.patience``, the best checkpoint is kept, and the test split is scored once, at the end,
with the best checkpoint.

Reliability (docs/reliability.md):

- ``last.pt`` holds the full training state (weights and buffers, optimizer, scheduler, the python /
  numpy / torch RNG states and the loop's ``Progress``: step, epoch, batches done in the epoch, the
  running loss, early-stopping state, history, counters). It is written after every evaluation,
  every ``trainer.checkpoint_every`` steps, on Ctrl-C and when training ends, so a run killed at any
  moment continues with ``trainer.resume=<run folder>`` and ends exactly as an uninterrupted run.
- Ctrl-C (SIGINT) finishes the current step, writes ``last.pt`` and ``metrics.json`` with status
  ``interrupted``, and raises ``TrainingInterrupted`` (the CLI prints the resume command, exit 130).
- A non-finite loss, gradient norm (checked when ``trainer.grad_clip`` computes it) or weights stop
  training with ``TrainingDiverged``; no checkpoint is written with non-finite weights, and
  ``metrics.json`` says ``failed`` with the reason and the step.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shlex
import signal
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.data.batches import Batcher, eval_max_len
from ctrbench.data.prepare import load_dataset
from ctrbench.data.schema import ProcessedDataset
from ctrbench.train.compiled import check_compile_available, compile_module, resolve_compile_packed
from ctrbench.memory_budget import check_memory_budget
from ctrbench.runtime import long_lived_frozen
from ctrbench.errors import ConfigError, TrainingDiverged, UserError
from ctrbench.models.base import CTRModel
from ctrbench.nn.activations import Dice
from ctrbench.train import checkpoint, resume
from ctrbench.train import distributed, flat_sgd, native_step, row_adam, sparse_grads
from ctrbench.train.evaluate import evaluate, resolve_eval_batch_size, resolve_eval_positions
from ctrbench.train.optim import LazyAdam
from ctrbench.train.build import (act_cfg_without_name, build_model, build_regularizer, lr_lambda, resolve_native_dice, resolve_native_recurrence,
                                  resolve_pack_histories, training_setup)
from ctrbench.train.environment import peak_memory_mb, resolve_device, resolve_precision, seed_everything, threads_choice, versions
from ctrbench.train.progress import Clock, InterruptFlag, Progress, ProgressBar, TrainingInterrupted, history_line
from ctrbench import tracking

log = logging.getLogger("ctrbench")

SELECTIONS = ("valid", "test_as_valid", "last")

FAULTS = ("nan_at_step", "nan_grad_at_step", "kill_at_step", "interrupt_at_step")


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, console=None, command: str | None = None) -> None:
        """``command``: the command line that trains this run (without ``trainer.resume``); the
        resume command printed on Ctrl-C is built from it."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = console
        t = cfg.trainer
        self.selection = t.selection
        if self.selection not in SELECTIONS:
            raise ConfigError(f"trainer.selection={self.selection!r}: expected one of {', '.join(SELECTIONS)}")
        self.weighting = cfg.metric.gauc_weighting
        every = t.get("checkpoint_every")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ConfigError(f"trainer.checkpoint_every={every!r} is invalid: expected an integer >= 0 or null")
        self.checkpoint_every = int(every or 0)
        faults = OmegaConf.to_container(t.fault_injection, resolve=True) if t.get("fault_injection") else {}
        for key, v in faults.items():
            if key not in FAULTS:
                raise ConfigError(f"unknown trainer.fault_injection.{key}: expected one of {', '.join(FAULTS)}")
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"trainer.fault_injection.{key}={v!r} is invalid: expected a step >= 1 or null")
        self.faults = {k: v for k, v in faults.items() if v is not None}
        self.command = command or "ctrbench train"
        self.plan = resume.plan(cfg, self.run_dir)
        self.last_path = self.run_dir / resume.LAST
        self._resume_state: dict | None = None
        self._interrupt = InterruptFlag()
        self.dist = distributed.DistContext()  # one process until setup() joins a DDP job
        self.tracking = tracking.for_run(cfg.get("tracking"), self.run_dir)  # tracking=...: checked now, started in setup

    # ---- set-up ---------------------------------------------------------------------------
    def setup(self, dataset: ProcessedDataset | None = None) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        seed_everything(int(cfg.seed))
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(str(t.get("distributed", "none")), self.device, str(t.get("ddp_backend", "auto")))
        self.tracking.open(main=self.dist.is_main)  # rank 0 only; a helper process imports its library while the data loads
        if self.dist.enabled:
            self.device = distributed.rank_device(self.device, self.dist.local_rank)
        self.amp_dtype = resolve_precision(cfg.device, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        check_memory_budget(cfg, dataset)  # device.max_memory_gb: refuse up front what would not fit
        self.dataset = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.paths.data_dir)
        self.model = build_model(cfg.model, cfg.act, self.dataset.vocab).to(self.device)
        self.reg = build_regularizer(cfg.reg)
        self.reg.setup(self.model, self.dataset, int(cfg.dataset.max_len))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = instantiate(act_cfg_without_name(cfg.optim))(params)
        if getattr(self.optimizer, "sparse_embeddings", False):
            if self.dist.enabled:
                raise ConfigError("optim=lazy_adam (sparse embedding gradients) does not work with trainer.distributed=ddp: use optim=adam")
            if self.grad_clip_value():
                raise ConfigError("optim=lazy_adam (sparse embedding gradients) does not work with trainer.grad_clip: use optim=adam, or no clipping")
            LazyAdam.mark_lazy(self.model)
        # the module the training step calls: the model itself, or its DDP wrapper (gradient all-reduce)
        self.step_model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # looking for parameters without gradients costs a graph traversal per step (and a warning
            # when there are none), so only for a model that has them
            self.step_model = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=self.model.has_unused_parameters
            )
        # the module evaluation calls; device.compile=true puts both under torch.compile (compiled.py)
        self.eval_model = self.model
        self.compiled = bool(cfg.device.get("compile", False))
        if self.compiled and not self.model.compilable:
            log.warning("device.compile=true: model=%s is not compiled (its forward breaks torch.compile's graph "
                        "at every recurrence step); it runs eager, and metrics.json records compiled=false", cfg.model.name)
            self.compiled = False
        if self.compiled:
            check_compile_available(self.device)
            self.step_model = compile_module(self.step_model)
            self.eval_model = compile_module(self.model)
        # row-wise embedding gradients where they give the same updates (plain SGD; Adam on request,
        # stepped by row_adam.RowAdam): sparse_grads.py
        self.sparse_embeddings = sparse_grads.resolve(t.get("sparse_embeddings", "auto"), self.optimizer, self.dist.enabled,
                                                      self.compiled, self.device)
        if self.sparse_embeddings and type(self.optimizer) is torch.optim.Adam:  # every row moves as with dense gradients (row_adam.py)
            sparse_grads.use_row_gradients(self.model, row_adam.MIN_ROW_TABLE)
            self.optimizer = row_adam.RowAdam(self.optimizer)
        elif self.sparse_embeddings:
            sparse_grads.use_row_gradients(self.model)
        # plain SGD's zeroing, clipping and update as one op per buffer (flat_sgd.py)
        if flat_sgd.resolve(t.get("flat_sgd", "auto"), self.optimizer, self.dist.enabled, self.compiled, self.scaler is not None):
            self.optimizer = flat_sgd.FlatSGD(self.model, self.optimizer)
        # the one-weight tables under plain SGD as native calls (native_step.py), once the optimizer is
        # FlatSGD: LR's whole step, Wide&Deep's and DeepFM's first-order parts
        self.native_tables = native_step.resolve(t.get("native_step", "auto"), self.model, self.optimizer, self.reg, self.device,
                                                 self.amp_dtype)
        self.native_lr = native_step.attach(self.model, self.optimizer) if self.native_tables else None
        # mostly padded training batches on their real positions (nn/layers.py: packed_positions)
        self.pack_histories = resolve_pack_histories(t.get("pack_histories", "auto"), int(t.bucket or 0))
        # DIEN's recurrences as native loops in training (nn/csrc/gru_scan.c)
        self.native_recurrence = resolve_native_recurrence(t.get("native_recurrence", "auto"), self.model, self.device)
        # Dice in training as one native call forward and one backward (nn/csrc/dice.c)
        self.dice_modules = [m for m in self.model.modules() if isinstance(m, Dice)]
        self.native_dice = resolve_native_dice(t.get("native_dice", "auto"), bool(self.dice_modules), self.device, self.compiled)
        for module in self.dice_modules:
            module.native = self.native_dice
        # evaluation's worker threads (evaluate.predict); a compiled module is called from one thread
        self.eval_workers = 1 if self.compiled else int(t.get("eval_workers", 1))  # 0: one per torch thread
        max_len = int(cfg.dataset.max_len)
        self.eval_batch_size = resolve_eval_batch_size(t.get("eval_batch_size"), self.model, self.device)
        self.eval_positions = resolve_eval_positions(t.get("eval_batch_size"), self.model, self.device)
        self.train_batches = Batcher(
            self.dataset, "train", int(t.batch_size), max_len, shuffle=True, bucket=int(t.bucket), seed=int(cfg.seed),
            negative_history=bool(getattr(self.model, "needs_negative_history", False)),
            shard=self.dist.shard if self.dist.enabled else None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(t.schedule, len(self.train_batches)))
        select_split = {"valid": "valid", "test_as_valid": "test", "last": None}[self.selection]
        if select_split is not None and len(self.dataset.splits[select_split]) == 0:
            raise ConfigError(
                f"the '{select_split}' split is empty, so no model can be selected on it "
                "(set dataset.protocol.valid_positions >= 1, or trainer.selection=last)"
            )
        self.eval_max_len = eval_max_len(self.dataset, cfg.dataset.get("eval_max_len", max_len))

        def eval_batches(split: str) -> Batcher:
            return Batcher(self.dataset, split, self.eval_batch_size, self.eval_max_len, max_positions=self.eval_positions)

        self.select_batches = eval_batches(select_split) if select_split else None
        self.test_batches = eval_batches("test")
        n_batches = len(self.train_batches)
        if n_batches == 0:
            raise ConfigError("the training split is empty: nothing to train on")
        max_steps = t.max_steps
        self.total_steps = int(t.max_epochs) * n_batches
        if max_steps is not None and max_steps > 0:
            self.total_steps = min(self.total_steps, int(max_steps))
        self.eval_every = int(t.eval_every) if t.eval_every else n_batches
        # the layers after a packed batch's lookups under torch.compile, in long runs (compiled.py)
        self.compile_packed = resolve_compile_packed(t.get("compile_packed", "auto"), self.model, self.pack_histories, self.compiled,
                                                     self.device, self.total_steps)
        for module in self.model.modules():  # the per-run switches of the model and of its parts (Wide&Deep's deep part)
            if isinstance(module, CTRModel):
                module.pack_histories = self.pack_histories
                module.native_recurrence = self.native_recurrence
                module.compile_packed = self.compile_packed
        self.ckpt_path = self.run_dir / resume.BEST
        self.grad_clip = self.grad_clip_value()
        self.progress = Progress()
        if self.plan == "resume":
            self.restore(checkpoint.load(self.last_path, map_location=self.device))

    @property
    def flat(self) -> flat_sgd.FlatSGD | None:
        """The optimizer when it steps over flat buffers (``trainer.flat_sgd``), else None."""
        return self.optimizer if isinstance(self.optimizer, flat_sgd.FlatSGD) else None

    def grad_clip_value(self) -> float | None:
        clip = self.cfg.trainer.grad_clip
        return float(clip) if clip else None

    def restore(self, state: dict) -> None:
        """Load a ``last.pt`` training state: weights and buffers, optimizer, scheduler and progress
        now; the RNG states when training starts (``fit``), so that nothing in between draws from
        them."""
        missing = [k for k in ("model", "optimizer", "scheduler", "rng", "progress") if k not in state]
        if missing:
            raise ConfigError(f"'{self.last_path}' is not a full training state (no {', '.join(missing)}): it cannot be resumed")
        diffs = resume.config_differences(resume.comparable_config(state.get("config") or {}), resume.comparable_config(self.cfg))
        if diffs:
            raise ConfigError(f"'{self.last_path}' was saved with another config ({'; '.join(diffs[:4])}): it cannot be resumed with this one")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress.from_dict(state["progress"])
        self._resume_state = state

    # ---- one step -------------------------------------------------------------------------
    def train_step(self, batch) -> float:
        """One optimizer step; returns the loss. The loss (and the gradient norm, when
        ``trainer.grad_clip`` computes it) is read once, before the optimizer step, so a non-finite
        value stops training with the weights as they were."""
        if self.native_lr is not None:
            return self.native_train_step(batch)
        batch = self.reg.transform(batch, training=True).to_device(self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.step_model(batch)
        loss = F.binary_cross_entropy_with_logits(out.logits.float(), batch.label)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss.float()
        penalty = self.reg.penalty(self.model, batch)
        if penalty is not None:
            loss = loss + penalty
        step = self.progress.step + 1
        if self.faults and self.faults.get("nan_at_step") == step:  # testing hook
            loss = loss * float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scaled loss, gradients unscaled before clipping and the checks
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.faults and self.faults.get("nan_grad_at_step") == step:  # testing hook
            g = next(p for p in self.model.parameters() if p.grad is not None).grad
            (g._values() if g.is_sparse else g).fill_(float("nan"))
        if self.grad_clip:
            if self.flat is not None:  # the flat parameters and the tables outside them
                norm = self.flat.clip_grad_norm_(self.grad_clip)
            else:
                clip = sparse_grads.clip_grad_norm_ if self.sparse_embeddings else torch.nn.utils.clip_grad_norm_
                norm = clip(self.model.parameters(), self.grad_clip)
            value, norm_value = torch.stack([loss.detach().float(), norm.detach().float()]).tolist()
        else:
            value, norm_value = float(loss.detach()), None
        if self.dist.enabled:  # the global batch's loss; every rank then takes the same decision
            value = self.dist.mean([value])[0]
            if norm_value is not None:
                norm_value = self.dist.mean([norm_value])[0]
        if not math.isfinite(value):
            raise self.diverged(step, f"the loss became {value}")
        if self.scaler is not None:  # fp16: an overflowing step is skipped by the scaler, which lowers its scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            return value
        if norm_value is not None and not math.isfinite(norm_value):
            raise self.diverged(step, f"the gradient norm became {norm_value}", f" (loss {value:.4g})")
        self.optimizer.step()
        self.scheduler.step()
        return value

    def native_train_step(self, batch) -> float:
        """``train_step`` for LR under plain SGD (``trainer.native_step``, native_step.py): the same
        checks and the same update, computed by two native calls."""
        batch = self.reg.transform(batch, training=True)
        step = self.progress.step + 1
        value, sumsq = self.native_lr.gradients(batch)
        if self.faults and self.faults.get("nan_at_step") == step:  # testing hooks
            value = float("nan")
        poisoned = bool(self.faults) and self.faults.get("nan_grad_at_step") == step  # a NaN gradient: its norm and its update
        if poisoned:
            sumsq = float("nan")
        if not math.isfinite(value):
            self.native_lr.discard()
            raise self.diverged(step, f"the loss became {value}")
        coef = 1.0
        if self.grad_clip:  # FlatSGD.clip_grad_norm_'s factor
            norm = math.sqrt(sumsq)
            if not math.isfinite(norm):
                self.native_lr.discard()
                raise self.diverged(step, f"the gradient norm became {norm}", f" (loss {value:.4g})")
            coef = min(1.0, self.grad_clip / (norm + 1e-6))
        self.native_lr.apply(float("nan") if poisoned else -float(self.optimizer.param_groups[0]["lr"]) * coef)
        self.optimizer._opt_called = True  # what torch's wrapped optimizer.step() sets: the scheduler's order check
        self.scheduler.step()
        return value

    def diverged(self, step: int, what: str, detail: str = "") -> TrainingDiverged:
        """The one-line error of a numerical fault at ``step``: what happened, the likely cause, and
        the checkpoint that is kept."""
        lr = self.cfg.optim.lr
        if "gradient" in what:
            cause = (f"likely cause: too large a learning rate, optim.lr={lr}, made weights or activations overflow; lower it "
                     f"(trainer.grad_clip={self.grad_clip} cannot rescue a non-finite gradient)")
        elif self.grad_clip:
            cause = f"try a smaller learning rate than optim.lr={lr}, or a smaller trainer.grad_clip={self.grad_clip}"
        else:
            cause = f"try a smaller learning rate than optim.lr={lr}, or trainer.grad_clip (e.g. 5)"
        if "loss" in what and not self._weights_finite():
            detail += " (the weights were already non-finite: an earlier step's gradient was; trainer.grad_clip checks every step's)"
        e = TrainingDiverged(f"{what} at step {step}{detail}: training diverged ({cause}); {self._kept()}")
        e.step = step
        return e

    def _kept(self) -> str:
        if self.last_path.exists() and getattr(self, "_last_saved_step", None) is not None:
            return f"the last good checkpoint, step {self._last_saved_step}, is kept in {self.last_path}"
        if self.ckpt_path.exists():
            return f"the best checkpoint so far is kept in {self.ckpt_path}"
        return "no checkpoint had been written yet"

    def _weights_finite(self) -> bool:
        """Whether every parameter and buffer is finite (one pass over the weights: only at
        checkpoints and evaluations, never per step)."""
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        if not tensors:
            return True
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _check_weights(self, when: str) -> None:
        step = self.progress.step
        if getattr(self, "_weights_checked_at", None) == step:
            return  # (an evaluation checks, then writes best.pt and last.pt, at the same step)
        if self._weights_finite():
            self._weights_checked_at = step
        else:
            e = TrainingDiverged(
                f"the weights became non-finite by step {step} ({when}): training diverged (try a smaller learning rate "
                f"than optim.lr={self.cfg.optim.lr}, or trainer.grad_clip, which also checks every step's gradient); {self._kept()}"
            )
            e.step = step
            raise e

    # ---- evaluation and selection -----------------------------------------------------------
    def validate(self, train_loss: float) -> None:
        p = self.progress
        row = {"step": p.step, "epoch": p.epoch, "train_loss": round(train_loss, 6), "lr": self.scheduler.get_last_lr()[0]}
        if self.select_batches is None:
            p.history.append(row)
            self.write_history()
            return
        self._check_weights("before the evaluation")
        metrics, secs = evaluate(self.eval_model, self.select_batches, self.device, self.weighting, self.reg, self.dist, self.eval_workers)
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
        """``best.pt``: the selected model (and its optimizer, scheduler and RNG state)."""
        p = self.progress
        self._check_weights("before writing best.pt")
        if not self.dist.is_main:
            return
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

    def save_last(self) -> None:
        """``last.pt``: the full training state, from which ``trainer.resume`` continues exactly."""
        p = self.progress
        self._check_weights("before writing last.pt")
        if not self.dist.is_main:
            self._last_saved_step = p.step
            return
        rng = checkpoint.rng_state()
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint.save(
            self.last_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rng,
                "progress": asdict(p),
                "step": p.step,
                "epoch": p.epoch,
                "best": p.best,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            },
        )
        self._last_saved_step = p.step

    def write_history(self) -> None:
        if not self.dist.is_main:
            return
        rows = self.progress.history
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(self.run_dir / "history.csv") as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

    # ---- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train (or continue a resumed run), then score the test split with the selected model."""
        p = self.progress
        self._start()
        try:
            with self._interrupt, long_lived_frozen():  # the set-up's objects out of the collector's walks (runtime.py)
                self._train()
                if self._interrupt.requested:
                    raise self._interrupted()
            return self.finish()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside a step: last.pt is what was saved before
            raise self._interrupted() from None
        except TrainingDiverged as e:
            self._record_failure(str(e), getattr(e, "step", p.step))
            raise
        except Exception as e:
            reason = str(e).splitlines()[0] if isinstance(e, UserError) and str(e) else f"{type(e).__name__}: {e}"
            self._record_failure(reason, p.step)
            raise

    def _start(self) -> None:
        """Mark the run folder running; a fresh run clears what an earlier run in the same folder
        left, a resumed one restores its RNG states and history."""
        p = self.progress
        if self.plan == "resume":
            state, self._resume_state = self._resume_state, None
            rng = state["rng"]
            checkpoint.set_rng_state(rng)
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state_all(rng["cuda"])
            self._last_saved_step = p.step
            p.resumed_at.append(p.step)
            if self.dist.is_main:
                (self.run_dir / "metrics.json").unlink(missing_ok=True)  # the folder reads as unfinished again
            self.write_history()
            log.info(f"resuming {self.run_dir} from step {p.step} (epoch {p.epoch}, batch {p.batch})")
        elif self.dist.is_main:
            for name in ("metrics.json", "history.csv", resume.LAST, resume.BEST):
                (self.run_dir / name).unlink(missing_ok=True)
        self._write_status("running", step=p.step, command=self.command)
        self.tracking.start(self.cfg, p, resumed=self.plan == "resume")

    def _train(self) -> None:
        t = self.cfg.trainer
        p = self.progress
        patience = int(t.patience)
        faults = self.faults
        bar = ProgressBar(self.console, self.total_steps, enabled=bool(t.progress), every_s=float(t.get("progress_every") or 0),
                          bounded=patience > 0)
        self.model.train()
        clock = Clock(p)
        with bar:
            while not p.done and p.step < self.total_steps:
                self.train_batches.set_epoch(p.epoch)
                for _, batch in self.train_batches.iterate(p.batch):
                    loss = self.train_step(batch)
                    p.step += 1
                    p.batch += 1
                    p.samples += len(batch) * self.dist.world  # the global batch (slices differ by at most 1)
                    p.running_loss += loss
                    p.running_steps += 1
                    self.tracking.step(p, clock, self.scheduler)  # every tracking.log_every steps
                    if faults:
                        self._fault_hooks(p.step)
                    if p.step % 20 == 0 or p.step == self.total_steps:
                        bar.update(p.step, p.running_loss / p.running_steps, p.samples / max(clock.elapsed(), 1e-9))
                    last = p.step >= self.total_steps
                    evaluated = False
                    if p.step % self.eval_every == 0 or last:
                        clock.pause()
                        self.validate(p.running_loss / max(p.running_steps, 1))
                        self.tracking.evaluated(p, clock, self.scheduler)
                        p.running_loss, p.running_steps = 0.0, 0
                        log.info(history_line(p.history[-1]))
                        evaluated = True
                        if patience > 0 and p.bad_evals >= patience:
                            log.info(f"early stopping at step {p.step}: validation GAUC did not improve for {patience} evaluations")
                            p.done = True
                            bar.stopped_early(p.step)
                        clock.resume()
                    if last:
                        p.done = True
                    if p.done:
                        break
                    if evaluated or self._interrupt.requested or (self.checkpoint_every and p.step % self.checkpoint_every == 0):
                        clock.pause()
                        self.save_last()
                        clock.resume()
                    if self._interrupt.requested:
                        return
                clock.pause()
                p.epoch += 1
                p.batch = 0
                clock.resume()
        clock.pause()
        if getattr(self, "_last_saved_step", None) != p.step:  # (else: resumed from the final state)
            self.save_last()  # the end of training: a kill during the test scoring resumes straight to it

    def _fault_hooks(self, step: int) -> None:
        """Testing hooks (``trainer.fault_injection``): kill or interrupt this process after ``step``."""
        if self.faults.get("kill_at_step") == step:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.faults.get("interrupt_at_step") == step:
            os.kill(os.getpid(), signal.SIGINT)

    def resume_command(self) -> str:
        return f"{self.command} {shlex.quote(f'trainer.resume={self.run_dir}')}"

    def _interrupted(self) -> TrainingInterrupted:
        """Record the interruption (metrics.json, status.json) and build the exception to raise."""
        p = self.progress
        step = getattr(self, "_last_saved_step", None)
        cmd = self.resume_command()
        if step is not None and self.last_path.exists():
            where = f"the training state at step {step} is saved in {self.last_path}"
            hint = f"resume with: {cmd}"
        else:
            step = None
            where = "no checkpoint had been written yet"
            hint = f"start again with: {self.command}"
        try:
            self._write_metrics(self._base_metrics() | {
                "status": "interrupted", "step": p.step, "checkpoint_step": step, "resume_command": cmd if step is not None else None,
            })
            self._write_status("interrupted", step=p.step, checkpoint_step=step, command=self.command)
            self.tracking.finish("interrupted")
        except Exception as e:  # noqa: BLE001 - still stop, and still say where the checkpoint is
            log.warning(f"could not record the interruption in {self.run_dir}: {e}")
        return TrainingInterrupted(f"interrupted at step {p.step}: {where}\n{hint}")

    def _record_failure(self, reason: str, step: int) -> None:
        """metrics.json and status.json say ``failed``, with the reason and the step; the
        checkpoints on disk are left as they were (the last good ones)."""
        try:
            self._write_metrics(self._base_metrics() | {
                "status": "failed", "reason": reason, "step": step,
                "checkpoint_step": getattr(self, "_last_saved_step", None),
            })
            self._write_status("failed", step=step, reason=reason, command=self.command)
            self.tracking.finish("failed")
        except Exception as e:  # noqa: BLE001 - the original error is the one to report (a full disk fails here too)
            log.warning(f"could not record the failure in {self.run_dir}: {e}")

    def _write_status(self, status: str, **fields) -> None:
        if self.dist.is_main:
            resume.write_status(self.run_dir, status, **fields)

    def _write_metrics(self, metrics: dict) -> None:
        if not self.dist.is_main:
            return
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))

    def _base_metrics(self) -> dict:
        """What metrics.json says of any run, finished or not."""
        cfg = self.cfg
        manifest = getattr(getattr(self, "dataset", None), "manifest", {}) or {}
        p = self.progress
        best = dict(p.best) if p.best else None
        if best:
            best.pop("score", None)
        return {
            "status": None,
            "dataset": cfg.dataset.name,
            "model": cfg.model.name,
            "act": cfg.act.name,
            "reg": cfg.reg.name,
            "seed": int(cfg.seed),
            # which published table and row this run reproduces (set by +experiment / +row), and how
            # the data were split: what `ctrbench table` matches against the published numbers
            "experiment": cfg.get("experiment_name"),
            "row": cfg.get("row_name"),
            "baseline_row": cfg.get("baseline_row"),  # an experiment of your own: its RelaImpr baseline (docs/extending.md)
            "protocol": manifest.get("protocol", {}).get("protocol"),
            "test": None,
            "valid_best": best,
            "selection": self.selection,
            "steps": p.step,
            "epochs": p.epoch,
            "resumed_at_steps": list(p.resumed_at),
        }

    def finish(self) -> dict:
        p, cfg = self.progress, self.cfg
        if self.selection == "last" or not self.ckpt_path.exists():
            self.save_checkpoint()
        else:
            state = checkpoint.load(self.ckpt_path, map_location=self.device)
            self.model.load_state_dict(state["model"])
        self.dist.broadcast_module(self.model)  # rank 0's selected weights everywhere (a no-op on one process)
        test, secs = evaluate(self.eval_model, self.test_batches, self.device, self.weighting, self.reg, self.dist, self.eval_workers)
        p.eval_samples += self.test_batches.n
        p.eval_seconds += secs
        oracle = self.dataset.manifest.get("oracle")
        base = self._base_metrics()
        metrics = {
            "status": "completed",
            **{k: base[k] for k in ("dataset", "model", "act", "reg", "seed", "experiment", "row", "baseline_row", "protocol")},
            "test": test,
            "valid_best": base["valid_best"],
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
            "threads_choice": threads_choice(),  # how: auto (idle cores), set, or the sweep's share of the cores
            "eval_batch_size": self.eval_batch_size,  # the rows actually used (trainer.eval_batch_size, or its auto choice)
            "embedding_gradients": "rows" if self.sparse_embeddings else "dense",  # trainer.sparse_embeddings (same updates; rounding only)
            # trainer.flat_sgd, and Adam's row-wise step (trainer.sparse_embeddings=true): same updates, rounding only
            "optimizer_step": "flat" if self.flat is not None else ("row_adam" if isinstance(self.optimizer, row_adam.RowAdam) else "torch"),
            # trainer.native_step: LR's whole step, or the first-order tables', natively (same updates; rounding only)
            "training_step": ("native_lr" if self.native_lr is not None else "native_first_order") if self.native_tables else "autograd",
            "pack_histories": self.pack_histories,  # trainer.pack_histories (same values; rounding only)
            "compile_packed": self.compile_packed,  # trainer.compile_packed: the packed layers under torch.compile (rounding only)
            # trainer.native_recurrence: how a model with recurrences (DIEN) ran them in training (same values; rounding only)
            "recurrence": ("native" if self.native_recurrence else "torch") if self.model.has_recurrence else None,
            # trainer.native_dice: how the Dice activations ran in training (same values; rounding only), null without Dice
            "dice": ("native" if self.native_dice else "torch") if self.dice_modules else None,
            "eval_positions": self.eval_positions,  # the cap on rows x longest history of those batches (auto on CPU), or null
            "variant": {
                **self.model.variant(),
                "activation": {k: v for k, v in OmegaConf.to_container(cfg.act, resolve=True).items() if k not in ("_target_", "_partial_")},
                "regularizer": self.reg.describe(),
                "gauc_weighting": self.weighting,
                "precision": str(cfg.device.get("precision", "fp32") or "fp32"),
                "compiled": self.compiled,
                "training": training_setup(cfg),
            },
            "dataset_dir": self.dataset.manifest.get("name", "") + "-" + self.dataset.manifest.get("config_hash", ""),
            "versions": versions(),
            "resumed_at_steps": base["resumed_at_steps"],
        }
        metrics["distributed"] = {"mode": "ddp", "world_size": self.dist.world, "backend": self.dist.backend} if self.dist.enabled else None
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2))
            self._write_status("completed", step=p.step, command=self.command)
        self.tracking.finish("completed", metrics)
        return metrics
