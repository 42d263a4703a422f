"""The bodies of the CLI's commands; each takes the composed Hydra config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ctrbench.config_checks import check_dataset, check_evaluate, check_missing, check_train
from ctrbench.errors import ConfigError, DataError, UserError
from ctrbench.report.dataset_stats import dataset_table

log = logging.getLogger("ctrbench")


def _console() -> Console:
    from rich import get_console

    return get_console()


def _run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _main_rank() -> bool:
    """False in the ranks other than 0 of a torchrun job (they print and write nothing)."""
    import os

    return os.environ.get("RANK", "0") in ("0", "")


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


# ---- train ----------------------------------------------------------------------------------
def run_train(cfg: DictConfig) -> float:
    """Train one run. Returns the best **validation** GAUC, the objective a Hydra sweeper (Optuna:
    ``+hparams_search=din_optuna``) maximises; the test split never enters a search.

    ``trainer.resume=<run folder>`` continues that run in its own folder (the CLI points Hydra's
    run folder at it); ``trainer.resume=auto`` continues this folder's run when it is unfinished with
    the same config (the CLI first looks for the newest such run, see ``ctrbench.cli``)."""
    from ctrbench.atomic import atomic_write_text
    from ctrbench.train.loop import Trainer

    check_train(cfg)
    run_dir = _run_dir()
    console = _console()
    main_rank = _main_rank()
    trainer = Trainer(cfg, run_dir, console=console, command=train_command())
    if trainer.plan == "completed":
        metrics = json.loads((run_dir / "metrics.json").read_text())
        log.info(f"{run_dir} has already completed with this config (trainer.resume=auto): not trained again")
        console.print(results_table(metrics))
        console.print(f"run folder: {run_dir}")
        return float((metrics.get("valid_best") or {}).get("gauc", float("nan")))
    if main_rank:
        from ctrbench.run_folder import claim_run_folder

        claim_run_folder(run_dir, resume=cfg.trainer.get("resume") not in (None, "", False))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    trainer.setup()
    verb = "resuming" if trainer.plan == "resume" else "training"
    from ctrbench.train.environment import threads_used

    log.info(
        f"{verb} {cfg.model.name} on {cfg.dataset.name}: {len(trainer.train_batches.user):,} training samples, "
        f"{trainer.total_steps:,} steps of {cfg.trainer.batch_size} on {trainer.device} with {threads_used()}; run folder {run_dir}"
    )
    metrics = trainer.fit()
    if main_rank:
        console.print(results_table(metrics))
        console.print(f"run folder: {run_dir}")
    from ctrbench.train import distributed

    distributed.teardown(trainer.dist)
    best = metrics.get("valid_best") or {}
    return float(best.get("gauc", float("nan")))


# overrides that are left out of the command printed to resume a run: trainer.resume itself (the
# resume command sets it) and the testing hooks (they would fail the resumed run again)
_NOT_RESUMED = ("trainer.resume", "trainer.fault_injection")


def train_command() -> str:
    """The command line of this training job: ``ctrbench train`` and its task overrides (in a
    multirun, the job's own values), without ``trainer.resume`` and the testing hooks."""
    import shlex

    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (the Python API)
        overrides = []
    kept = [o for o in overrides if not o.lstrip("+~").split("=", 1)[0].startswith(_NOT_RESUMED)]
    return " ".join(["ctrbench", "train", *(shlex.quote(o) for o in kept)])


def results_table(m: dict) -> Table:
    t = Table(title=f"{m['model']} · act={m['act']} · reg={m['reg']} · {m['dataset']} · seed {m['seed']}")
    for col in ("split", "AUC", "GAUC", "logloss", "note"):
        t.add_column(col)
    vb = m.get("valid_best")
    if vb:
        label = "valid (best)" if m["selection"] == "valid" else f"{m['selection']} (best)"
        t.add_row(label, _fmt(vb["auc"]), _fmt(vb["gauc"]), _fmt(vb["logloss"]), f"step {vb['step']}")
    test = m["test"]
    t.add_row(
        "[bold]test[/bold]", _fmt(test["auc"]), f"[bold]{_fmt(test['gauc'])}[/bold]", _fmt(test["logloss"]),
        f"{test['gauc_users']:,} users ({test['gauc_skipped_users']:,} single-class skipped)",
    )
    if m.get("oracle"):
        o = m["oracle"]["test"]
        t.add_row("test oracle", _fmt(o["auc"]), _fmt(o["gauc"]), _fmt(o["logloss"]), "Bayes-optimal ceiling")
    t.caption = (
        f"{m['train_samples_per_s']:,.0f} train samples/s · {m['eval_samples_per_s']:,.0f} eval samples/s · "
        f"peak memory {m['peak_memory_mb']:,.0f} MB · {m['steps']:,} steps · selection: {m['selection']}"
    )
    return t


# ---- prepare --------------------------------------------------------------------------------
def run_prepare(cfg: DictConfig) -> Path:
    from ctrbench.data.prepare import prepare
    from ctrbench.data.store import read_manifest

    check_dataset(cfg)
    path, built = prepare(cfg.dataset, cfg.paths.data_dir, force=bool(cfg.force))
    m = read_manifest(path)
    protocol = m.get("protocol", {}).get("protocol")
    published = cfg.dataset.get("paper")
    paper = OmegaConf.to_container(published, resolve=True).get(protocol) if published else None
    t = dataset_table(m, path, built, paper)
    console = _console()
    console.print(t)
    return path


# ---- evaluate -------------------------------------------------------------------------------
def run_evaluate(cfg: DictConfig) -> dict:

    from ctrbench.data.batches import eval_max_len
    from ctrbench.data.prepare import load_dataset
    from ctrbench.atomic import atomic_write_text
    from ctrbench.train import checkpoint
    from ctrbench.train.evaluate import eval_batcher, evaluate
    from ctrbench.train.build import build_model, build_regularizer
    from ctrbench.train.environment import resolve_device

    check_evaluate(cfg)
    if not cfg.run_dir:
        raise ConfigError("no run folder given: expected `ctrbench evaluate RUN_DIR [split=test]`")
    run = Path(cfg.run_dir)
    if not run.is_dir():
        raise DataError(f"run folder '{run}' does not exist")
    for needed in ("config.yaml", "best.pt"):
        if not (run / needed).exists():
            raise DataError(f"'{run}' has no {needed}: expected a run folder written by `ctrbench train`")
    if cfg.split not in ("train", "valid", "test"):
        raise ConfigError(f"split={cfg.split!r}: expected train, valid or test")
    run_cfg = OmegaConf.load(run / "config.yaml")
    device = resolve_device(cfg.device)
    ds = load_dataset(run_cfg.dataset, cfg.paths.data_dir)
    model = build_model(run_cfg.model, run_cfg.act, ds.vocab).to(device)
    state = checkpoint.load(run / "best.pt", map_location=device)
    model.load_state_dict(state["model"])
    reg = build_regularizer(run_cfg.reg)
    reg.setup(model, ds, int(run_cfg.dataset.max_len))
    max_len = int(run_cfg.dataset.max_len)
    cut = max_len if cfg.split == "train" else eval_max_len(ds, run_cfg.dataset.get("eval_max_len", max_len))
    batcher = eval_batcher(ds, cfg.split, cfg.get("batch_size"), model, device, cut)
    metrics, secs = evaluate(model, batcher, device, cfg.gauc_weighting, reg)
    metrics["eval_samples_per_s"] = round(batcher.n / max(secs, 1e-9), 1)
    metrics["checkpoint_step"] = state.get("step")
    atomic_write_text(run / f"eval_{cfg.split}.json", json.dumps(metrics, indent=2))
    t = Table(title=f"{run} · {cfg.split} split · checkpoint step {state.get('step')}")
    for col in ("AUC", "GAUC", "logloss", "samples", "GAUC users"):
        t.add_column(col)
    t.add_row(_fmt(metrics["auc"]), _fmt(metrics["gauc"]), _fmt(metrics["logloss"]), f"{metrics['n']:,}", f"{metrics['gauc_users']:,}")
    _console().print(t)
    return metrics


# ---- table ----------------------------------------------------------------------------------
def run_table(cfg: DictConfig):
    from ctrbench.report.collect import find_runs
    from ctrbench.report.table import FORMATS, build_table, write_table

    check_missing(cfg)
    paths = list(cfg.paths or [])
    if not paths:
        raise UserError("no run folder given: expected `ctrbench table PATH [PATH ...]` (a run or multirun folder)")
    fmt = cfg.format
    if fmt not in ("rich", None, *FORMATS):
        raise ConfigError(f"format={fmt!r}: expected rich, {', '.join(FORMATS)}")
    plot = bool(cfg.get("plot", False))
    if plot:
        from ctrbench.report.plots import require_matplotlib

        require_matplotlib()  # a one-line error before any work when matplotlib is absent
    table = build_table(find_runs(paths))
    console = _console()
    console.print(table.to_rich(notes=True))
    if fmt not in ("rich", None):
        suffix = {"markdown": "md", "latex": "tex"}.get(fmt, fmt)
        out = cfg.output or f"results.{suffix}"
        write_table(table, fmt, out)
        console.print(f"wrote {out}")
    if plot:
        from ctrbench.report.plots import write_plots

        folder = Path(cfg.output).parent if cfg.output else Path.cwd()
        written, warnings = write_plots(table, folder)
        for w in warnings:
            console.print(f"note: {w}", markup=False)
        console.print(f"wrote {', '.join(str(p) for p in written)}", markup=False)
    return table
