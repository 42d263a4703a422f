"""The bodies of the CLI's commands; each takes the composed Hydra config."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ctrbench.config_checks import check_dataset, check_evaluate, check_missing, check_train
from ctrbench.errors import ConfigError, DataError, UserError
from ctrbench.report.dataset_stats import dataset_table
from ctrbench.streams import say
from ctrbench.run_checks import check_evaluable, sweep_jobs  # noqa: F401 (used by the commands below; re-exported)

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
        f"{trainer.total_steps:,} steps of {cfg.trainer.batch_size} on {trainer.device} with {threads_used()}; run folder {run_dir}; "
        f"data folder {Path(cfg.paths.data_dir).resolve()} (paths.data_dir, or CTRBENCH_DATA_DIR)"
    )
    started = time.monotonic()
    metrics = trainer.fit()
    if main_rank and _in_multirun():
        say(job_line(metrics, run_dir, time.monotonic() - started) + "\n")  # one line per job; the sweep's table comes at its end
    elif main_rank:
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


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def job_line(m: dict, run_dir: Path, seconds: float) -> str:
    """A finished sweep job in one line: ``job 3 · din_table3/din · seed 2 · test GAUC 0.7123 AUC
    0.7011 logloss 0.5432 · 1m05s · <run folder>``."""
    from ctrbench.sweep import format_duration

    what = f"{m['experiment']}/{m['row']}" if m.get("experiment") and m.get("row") else f"{m['model']}/{m['act']}/{m['reg']}"
    test = m.get("test") or {}
    return (f"job {run_dir.name} done · {what} · seed {m['seed']} · test GAUC {_fmt(test.get('gauc'))} AUC {_fmt(test.get('auc'))} "
            f"logloss {_fmt(test.get('logloss'))} · {format_duration(seconds)} · {run_dir}")


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
    console.print(f"data folder: {Path(cfg.paths.data_dir).resolve()} (paths.data_dir, or the CTRBENCH_DATA_DIR environment variable)")
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
    check_evaluable(run)
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


# ---- predict --------------------------------------------------------------------------------
def run_predict(cfg: DictConfig) -> dict:
    """``ctrbench predict RUN_DIR input=F output=F`` or ``split=test`` (ctrbench/serve/predict.py)."""
    from ctrbench.serve.predict import run_predict as predict

    return predict(cfg, _console())


# ---- export ---------------------------------------------------------------------------------
def run_export(cfg: DictConfig) -> list:
    """The run's checkpoint as standalone scoring artifacts, each checked against the eager model
    before it is written (``ctrbench.serve.export``)."""
    from ctrbench.serve.export import export_run

    if cfg.get("run_dir") and Path(cfg.run_dir).is_dir() and cfg.get("checkpoint", "best") == "best":
        check_evaluable(Path(cfg.run_dir))  # a sweep folder or a run without best.pt: what it is, in one line
    return export_run(cfg, console=_console())


# ---- table ----------------------------------------------------------------------------------
def run_table(cfg: DictConfig):
    """The table over the run folders given: printed, and with ``format=markdown|csv|latex`` written
    to ``output`` (default: ``results.<md|csv|tex>`` in the run or sweep folder read; ``-``: standard
    output, instead of the terminal table). ``plot=true`` writes its figures beside ``output`` (or
    in that folder). Each file written is named on the terminal."""
    import difflib
    import sys

    from ctrbench.report.collect import find_runs
    from ctrbench.report.table import FORMATS, LATEX_NOTE, SUFFIXES, build_table, default_folder, render_table, write_table

    check_missing(cfg)
    paths = list(cfg.paths or [])
    if not paths:
        raise UserError("no run folder given: expected `ctrbench table PATH [PATH ...]` (a run or multirun folder)")
    fmt = cfg.format
    if fmt not in ("rich", None, *FORMATS):
        close = difflib.get_close_matches(str(fmt), ["rich", *FORMATS], n=1)
        hint = f" (did you mean format={close[0]}?)" if close else ""
        raise ConfigError(f"format={fmt!r}: expected rich, {', '.join(FORMATS)}{hint}")
    output = None if cfg.output in (None, "") else str(cfg.output)
    to_stdout = output == "-"
    plot = bool(cfg.get("plot", False))
    if plot:
        from ctrbench.report.plots import require_matplotlib

        require_matplotlib()  # a one-line error before any work when matplotlib is absent
    table = build_table(find_runs(paths))
    console = _console()
    text = render_table(table, fmt) if fmt not in ("rich", None) else None
    if text is not None and to_stdout:
        # output=-: the file's text on standard output (to pipe or redirect), the messages on stderr
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        console.print(table.to_rich(notes=True))
    folder = default_folder(paths)
    if text is not None and not to_stdout:
        out = Path(output) if output else folder / f"results.{SUFFIXES[fmt]}"
        write_table(table, fmt, out)
        _tell(f"wrote {out}", to_stdout, console)
    if fmt == "latex":
        _tell(f"note: {LATEX_NOTE}", to_stdout, console)
    if plot:
        from ctrbench.report.plots import write_plots

        if output and not to_stdout:
            folder = Path(output).parent
        written, warnings = write_plots(table, folder)
        for w in warnings:
            _tell(f"note: {w}", to_stdout, console)
        _tell(f"wrote {', '.join(str(p) for p in written)}", to_stdout, console)
    return table


def _tell(message: str, to_stderr: bool, console) -> None:
    """A line about what ``ctrbench table`` wrote: on the terminal, or on stderr when stdout carries the table."""
    if to_stderr:
        say(message + "\n")
    else:
        console.print(message, markup=False, highlight=False, soft_wrap=True)


# ---- report ---------------------------------------------------------------------------------
def run_report(cfg: DictConfig) -> Path:
    """One self-contained HTML page over the run folders given (``ctrbench.report.html``): the tables
    of ``ctrbench table`` with curves, RelaImpr charts, the datasets' statistics and every run; written
    to ``output`` (default: ``report.html`` in the run or sweep folder read)."""
    from ctrbench.report.collect import find_runs
    from ctrbench.report.html import write_report
    from ctrbench.report.table import build_table, default_folder

    check_missing(cfg)
    paths = [str(p) for p in (cfg.paths or [])]
    if not paths:
        raise UserError("no run folder given: expected `ctrbench report PATH [PATH ...]` (a run or multirun folder)")
    out = Path(str(cfg.output)) if cfg.get("output") not in (None, "") else default_folder(paths) / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"output={out}: expected a file name ending in .html")
    records = find_runs(paths)
    table = build_table(records)
    data_dirs = [Path(str(cfg.data_dir))] if cfg.get("data_dir") else []
    write_report(out, table, records, sources=paths, command=report_command(paths), title=cfg.get("title"), data_dirs=data_dirs)
    _console().print(f"wrote {out} ({len(table.sections)} table{'s' if len(table.sections) != 1 else ''}, {len(records)} runs): "
                     "one self-contained HTML file, open it in a browser", markup=False, highlight=False, soft_wrap=True)
    return out


def report_command(paths: list[str]) -> str:
    """The command line that regenerates the report: ``ctrbench report`` with the folders and the
    overrides given, after a ``cd`` to this folder when a folder was given relative to it."""
    import os
    import shlex

    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(("paths=", "hydra"))]
    except ValueError:  # not under Hydra (the Python API)
        overrides = []
    line = " ".join(["ctrbench", "report", *(shlex.quote(p) for p in paths), *(shlex.quote(o) for o in overrides)])
    if any(not os.path.isabs(p) for p in paths):
        line = f"cd {shlex.quote(os.getcwd())} && {line}"
    return line
