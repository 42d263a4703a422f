"""``ctrbench <command> [overrides]``: one Hydra app per command, each with its primary config in conf/.

    ctrbench train model=din act=prelu           train, select on validation, score the test split
    ctrbench train -m model=lr,base,din seed=1,2,3
    ctrbench prepare dataset=synthetic           build (or reuse) the processed dataset
    ctrbench evaluate outputs/2026-11-23/10-00-00 split=test
    ctrbench export outputs/2026-11-23/10-00-00 format=all   TorchScript, ONNX and pt2 artifacts (+ JSON)
    ctrbench table outputs/multirun/...          AUC, GAUC and RelaImpr over runs
    ctrbench report outputs/multirun/...         the same as one self-contained HTML page, with curves

Every command takes Hydra's override syntax, ``-m/--multirun``, ``--cfg job`` and ``--help``.
User errors (an unknown option, a bad value, a missing file) are printed as one line, without a
traceback, and exit with status 2. Ctrl-C exits with status 130 (training first saves its state and
prints the command that resumes it). In a multirun of ``train`` a failing job does not stop the
others: each failure is one line, and the sweep exits with status 1 when any job failed.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ctrbench.conf_paths import conf_dir
from ctrbench.errors import UserError
from ctrbench.streams import fail as _fail
from ctrbench.streams import flush_quietly, say, tolerate_closed_stdout

COMMANDS: dict[str, str] = {
    "train": "train a model (prepares the dataset on demand), select it on validation, score the test split",
    "prepare": "build the processed dataset of a dataset config (cached by a hash of its config) and report it",
    "evaluate": "re-score a saved run folder's best checkpoint on a split: ctrbench evaluate RUN_DIR split=test",
    "table": "results over run or multirun folders: ctrbench table PATH [PATH ...] [format=markdown output=F]",
    "report": "the table, curves, RelaImpr, datasets and runs as one self-contained HTML page: ctrbench report PATH [output=F.html]",
    "export": "a run's best checkpoint as a standalone scoring artifact: ctrbench export RUN_DIR format=torchscript|onnx|pt2|all",
    "predict": "score new rows (or a split) with a run's best checkpoint: ctrbench predict RUN_DIR input=F output=F | split=test",
}

# Where each command's bare (non-override) arguments go.
POSITIONAL = {"table": "paths", "report": "paths", "evaluate": "run_dir", "export": "run_dir", "predict": "run_dir"}
# Hydra flags that take a value (so that value is not a positional argument).
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def config_groups(search_path: list[str] | None = None) -> dict[str, list[str]]:
    """Each config group in conf/ and its options; with ``search_path`` (Hydra's search-path entries,
    ``conf_paths.user_search_path``), the groups and options of those folders join them."""
    from ctrbench.conf_paths import group_options, search_roots

    groups: dict[str, set[str]] = {}
    for root in [conf_dir(), *search_roots(search_path or [])]:
        for group, options in group_options(root).items():
            groups.setdefault(group, set()).update(options)
    return {g: sorted(groups[g]) for g in sorted(groups)}


def print_help() -> None:
    from rich import get_console
    from rich.markup import escape
    from rich.table import Table

    console = get_console()  # the shared console: quiet, not an error, when stdout is closed (tolerate_closed_stdout)
    console.print("[bold]ctrbench[/bold] — reproduce and compare click-through-rate models (DIN / DIEN papers)\n")
    console.print(escape("usage: ctrbench <command> [key=value ...] [-m] [--cfg job] [--help]\n"))
    t = Table(title="commands", show_header=False, box=None, padding=(0, 2))
    for name, text in COMMANDS.items():
        t.add_row(f"[bold]{name}[/bold]", text)
    console.print(t)
    defaults = _train_defaults()
    g = Table(title="config groups (pick one with group=option)", box=None, padding=(0, 2))
    g.add_column("group")
    g.add_column("options")
    g.add_column("default")
    for group, options in config_groups().items():
        if not options:  # a folder of groups (conf/row/)
            continue
        if group.startswith("row/"):  # the rows of the +experiment tables: one line for all
            if group == min(k for k in config_groups() if k.startswith("row/")):
                g.add_row("+row", "<table>/<row>, e.g. din_table3/din_dice (conf/row/)", "set by +experiment=<table>")
            continue
        if "/" in group:  # a nested group (dataset/protocol): each dataset config picks its default
            g.add_row(group, ", ".join(options), "set by the dataset")
            continue
        shown = f"+{group}" if group not in defaults else group
        g.add_row(shown, ", ".join(options), escape(defaults.get(group, f"(none; add with +{group}=...)")))
    console.print()
    console.print(g)
    console.print(escape(
        "\nexamples:\n"
        "  ctrbench train                                  DIN on the built-in synthetic data\n"
        "  ctrbench train model=base trainer.max_epochs=5\n"
        "  ctrbench train -m model=lr,base,din seed=1,2,3\n"
        "  ctrbench table outputs/multirun/<date_time>\n"
        "  ctrbench report outputs/multirun/<date_time>    one HTML page to e-mail or publish\n"
        "  ctrbench train --help                           a command's own config and overrides"
    ), soft_wrap=True)


def _train_defaults() -> dict[str, str]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(conf_dir() / "train.yaml")
    out = {}
    for item in cfg.get("defaults", []):
        if isinstance(item, str) or item is None:
            continue
        for k, v in item.items():
            out[str(k)] = str(v)
    return out


def split_args(command: str, args: list[str]) -> list[str]:
    """Turn bare arguments into the command's positional override (``paths=[...]``, ``run_dir=...``)."""
    out, positional, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in FLAGS_WITH_VALUE and i + 1 < len(args):
            out += [a, args[i + 1]]
            i += 2
            continue
        if a in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_VALUES:
            out += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith("-") or "=" in a or a.startswith(("~", "+")):
            out.append(a)
        else:
            positional.append(a)
        i += 1
    if positional:
        key = POSITIONAL.get(command)
        if key is None:
            raise UserError(
                f"unexpected argument {positional[0]!r} for `ctrbench {command}`: expected key=value overrides "
                f"(for example model=din)"
            )
        if key == "paths":
            out.append("paths=[" + ",".join(_quote(p) for p in positional) + "]")
        else:
            if len(positional) > 1:
                raise UserError(f"`ctrbench {command}` takes one run folder, got {len(positional)}: {positional}")
            out.append(f"{key}={_quote(positional[0])}")
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_group_choices(args: list[str]) -> None:
    """One-line errors for unknown config-group options (``model=foo``), before Hydra composes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(str(e).splitlines()[0]) from None
    from ctrbench.conf_paths import is_shadowed, user_search_path

    # the user's own configs too: --config-dir DIR, hydra.searchpath=[file://DIR] (docs/extending.md)
    search_path = user_search_path(args)
    groups = config_groups(search_path)
    # +row=<table>/<row>: the rows of every table, one group folder per table
    groups["row"] = [f"{g.split('/', 1)[1]}/{r}" for g, rows in groups.items() if g.startswith("row/") for r in rows]
    for o in parsed:
        group = o.key_or_group
        if group not in groups or o.value_type is None:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for v in values:
            if v not in groups[group] and v != "null":
                yours = "" if search_path else "; a config of your own: add its folder with --config-dir DIR (docs/extending.md)"
                from ctrbench.hydra_errors import close_matches

                close = close_matches(v, groups[group], n=1)
                mean = f"did you mean {group}={close[0]}? " if close else ""
                raise UserError(f"unknown {group} {v!r}: {mean}expected one of {', '.join(groups[group])}{yours}")
            if search_path and is_shadowed(search_path, group, v):
                sys.stderr.write(f"ctrbench: warning: your config folder's {group}/{v}.yaml is not used: ctrbench's own {group}={v} "
                                 f"comes first on Hydra's search path (give yours another name; docs/extending.md)\n")


def config_dirs_first(args: list[str]) -> list[str]:
    """``args`` with each ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``) moved to the front:
    Hydra's argparse takes the overrides as one run of words, and the CLI adds overrides after the
    user's, so a flag between them (``model=mydin --config-dir conf``) would end that run."""
    from ctrbench.conf_paths import CONFIG_DIR_FLAGS

    flags, rest, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in CONFIG_DIR_FLAGS and i + 1 < len(args):
            flags += [a, args[i + 1]]
            i += 2
            continue
        (flags if a.startswith(tuple(f"{f}=" for f in CONFIG_DIR_FLAGS)) else rest).append(a)
        i += 1
    return [*flags, *rest]


def _add_override(args: list[str], override: str) -> list[str]:
    """``args`` with ``override`` put beside the other overrides (before the first of them), so
    that flags after them (``--cfg job``) still parse: Hydra's argparse takes the overrides as
    one run of positional words."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in FLAGS_WITH_VALUE or (a in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in INFO_VALUES):
            i += 2
            continue
        if not a.startswith("-"):
            return [*args[:i], override, *args[i:]]
        i += 1
    return [*args, override]


def _is_multirun(args: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in args)


def _run_hydra(command: str, task: Callable, args: list[str]) -> None:
    import hydra

    from ctrbench import output_folders

    # an output folder Hydra cannot write is one line (exit 2) before Hydra writes into it
    args = _add_override(args, output_folders.OVERRIDE)
    multirun = command == "train" and _is_multirun(args)
    if multirun:
        from ctrbench.sweep import CALLBACK_OVERRIDE

        args = [*args, CALLBACK_OVERRIDE]
    # a multirun of train: its jobs side by side on the cores (or GPUs), unless a launcher is chosen
    # (ctrbench.sweep_plan); the plan, progress and summary lines come from the sweep callback
    from contextlib import nullcontext

    from ctrbench.sweep_plan import planned_sweep

    with planned_sweep(args) if multirun else nullcontext(args) as args:
        sys.argv = [f"ctrbench-{command}", *args]
        app = hydra.main(config_path=str(conf_dir()), config_name=command, version_base="1.3")(_guarded(command, task))
        from ctrbench.hydra_errors import one_line_config_errors

        with one_line_config_errors(command):  # a typo'd key or option: one line with the closest valid ones, exit 2
            app()
    if multirun:
        from ctrbench.sweep import take_last_sweep

        sweep = take_last_sweep()
        if sweep and sweep["failed"]:
            n = len(sweep["failed"])
            job, reason = sweep["failed"][0]
            first = f"job {job.name}: {reason}" if n == 1 else f"the first, job {job.name}: {reason}"
            _fail(command, f"{n} job{'s' if n > 1 else ''} of the sweep failed ({first}); the other jobs ran: "
                           f"`ctrbench table {sweep['dir']}` lists every job", code=1)


def _guarded(command: str, task: Callable) -> Callable:
    """Run a command's task; print user errors as one line and exit 2. In a multirun of ``train``,
    a failing job is reported as one line and returns None, so the sweep goes on (``ctrbench.sweep``)."""
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException

    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except UserError as e:
            if _in_multirun_job(command):
                return _job_failed(command, str(e))
            _drop_unstarted_run_folder(command)
            _fail(command, str(e))
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            msg = str(e).splitlines()[0]
            msg = f"config error at '{key}': {msg}" if key else f"config error: {msg}"
            if _in_multirun_job(command):
                return _job_failed(command, msg)
            _drop_unstarted_run_folder(command)
            _fail(command, msg)
        except KeyboardInterrupt as e:
            _fail(command, str(e) or "interrupted", code=130, prefix="" if str(e) else "error: ")
        except Exception as e:
            denied = _access_error(e)  # a write not yet turned into a WriteFailed: still one line
            if denied is not None:
                if _in_multirun_job(command):
                    return _job_failed(command, denied)
                _fail(command, denied)
            if not _in_multirun_job(command):
                raise
            import logging

            logging.getLogger("ctrbench").exception("the job failed")  # an unexpected error: its traceback is logged
            return _job_failed(command, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    wrapper.__name__ = command
    wrapper.__module__ = __name__
    return wrapper


def _drop_unstarted_run_folder(command: str) -> None:
    """A single run rejected before it trained leaves no run folder behind (``output_folders``)."""
    if command != "train":
        return
    import contextlib

    from hydra.core.hydra_config import HydraConfig

    from ctrbench.output_folders import remove_unstarted

    with contextlib.suppress(Exception):  # the error itself matters more than its leftover folder
        remove_unstarted(HydraConfig.get().runtime.output_dir)


# OSErrors that say a file or folder cannot be written (or read) as asked: the user's to fix
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _access_error(e: BaseException) -> str | None:
    """The one-line message for an OSError on a named file that is the user's to fix (no
    permission, a read-only file system, a full disk), else None."""
    if not isinstance(e, OSError) or e.errno not in _ACCESS_ERRNOS or not e.filename:
        return None
    code = errno.errorcode.get(e.errno, "")
    writing = e.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT)
    return (f"cannot {'write' if writing else 'use'} '{e.filename}': {e.strerror or e} [{code}]; expected a "
            f"{'writable location' if writing else 'file or folder this user may read and write'}")


def _in_multirun_job(command: str) -> bool:
    if command != "train":
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _job_failed(command: str, message: str) -> None:
    """Record a failed multirun job in its folder and say so in one line. The job returns None: the
    basic and joblib launchers go on with the other jobs, and Optuna's sweeper marks the trial
    failed ("Return value must be float-castable") and goes on (it would stop the search on a raised
    error, and crash on NaN)."""
    from hydra.core.hydra_config import HydraConfig

    from ctrbench.sweep import record_job_failure

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    record_job_failure(run_dir, message)
    first = message.splitlines()[0] if message else "failed"
    say(f"ctrbench {command}: error: job {HydraConfig.get().job.num} ({run_dir}) failed: {first}\n")
    return None


def resume_args(args: list[str]) -> list[str]:
    """``trainer.resume`` for a single run: point Hydra's run folder at the run to continue (the
    folder given, or, for ``auto``, the newest unfinished run with the same config under
    ``trainer.runs_dir``), so the run continues in its own folder. A multirun takes only ``auto``:
    each job continues its own folder (give ``hydra.sweep.dir=<the sweep's folder>``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return args  # Hydra reports it
    value, keys = None, set()
    for o in parsed:
        keys.add(o.key_or_group)
        if o.key_or_group == "trainer.resume" and not o.is_sweep_override():
            v = o.value()
            value = None if v is None else str(v)
    if value in (None, "", "null"):
        return args
    if _is_multirun(args):
        if value != "auto":
            raise UserError(
                f"trainer.resume={value} names one run, but this is a multirun: use trainer.resume=auto with "
                f"hydra.sweep.dir=<the sweep's folder> (each job continues its own folder)"
            )
        return args
    if "hydra.run.dir" in keys:
        return args  # the run checks that the folder it was given is the one to resume
    if value == "auto":
        plain = [a for a in overrides if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
        from ctrbench.conf_paths import searchpath_override

        plain += [o for o in [searchpath_override(args)] if o]  # configs of the user's own (docs/extending.md)
        found = _find_unfinished(plain)
        if found is False:
            return args
        if found is None:
            why = _why_none_unfinished(plain)
            sys.stderr.write(f"ctrbench train: trainer.resume=auto: no unfinished run with this config ({why}): starting a new run\n")
            return args
        sys.stderr.write(f"ctrbench train: trainer.resume=auto: continuing {found.resolve()}\n")
        return [*args, f"hydra.run.dir={_quote(str(found.resolve()))}"]
    run = Path(value).expanduser()
    if not run.is_dir():
        raise UserError(f"trainer.resume={value}: no such run folder")
    return [*args, f"hydra.run.dir={_quote(str(run.resolve()))}"]


def distributed_rank_args(args: list[str]) -> list[str]:
    """Under torchrun (``WORLD_SIZE`` > 1) only rank 0 keeps a run folder and logs: the other ranks
    get a throwaway Hydra folder (unless one is given, e.g. by ``trainer.resume``), no ``.hydra``
    copy and no log file; they write nothing else either (``ctrbench.train.distributed``)."""
    try:
        rank, world = int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers (torchrun sets them)") from None
    if world <= 1:
        return args
    if _is_multirun(args):
        raise UserError("a multirun (-m) cannot run under torchrun: launch one torchrun per run")
    if rank == 0:
        return args
    import tempfile

    out = [*args, "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        out.append(f"hydra.run.dir={_quote(tempfile.mkdtemp(prefix=f'ctrbench-rank{rank}-'))}")
    return out


def _find_unfinished(overrides: list[str]):
    """The run ``trainer.resume=auto`` continues: a Path, None when there is none, False when the
    config does not compose (Hydra then reports why)."""
    from hydra import compose, initialize_config_dir

    from ctrbench.train.resume import find_unfinished

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        root = cfg.trainer.runs_dir
    except Exception:  # noqa: BLE001 - a config that does not compose fails again, with Hydra's message
        return False
    return find_unfinished(root, cfg)


def _why_none_unfinished(overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    from ctrbench.train.resume import why_none_unfinished

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        return why_none_unfinished(cfg.trainer.runs_dir, cfg)
    except Exception:  # noqa: BLE001 - only the explanation is lost
        return "no explanation: the config did not compose"


# commands whose --help is built from their own config (ctrbench.command_help) rather than Hydra's,
# which lists every config group on the search path, the training groups included
HELP_FROM_CONFIG = ("table", "evaluate", "predict")
# Hydra's mutually exclusive modes: a command line may use one
MODE_FLAGS = {"-m": "-m", "--multirun": "-m", "--cfg": "--cfg", "-c": "--cfg", "--info": "--info", "-i": "--info",
              "--shell-completion": "--shell-completion", "-sc": "--shell-completion"}


def version_line() -> str:
    """``ctrbench <version> (Python ..., torch ..., hydra-core ...)``, without importing torch."""
    from importlib import metadata

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(map(str, sys.version_info[:3]))
    return f"ctrbench {v('ctrbench')} (Python {python}, torch {v('torch')}, hydra-core {v('hydra-core')})"


def command_help_text(command: str) -> str:
    from ctrbench.command_help import command_help

    positional = {"paths": "PATH [PATH ...] ", "run_dir": "RUN_DIR "}.get(POSITIONAL.get(command, ""), "")
    return command_help(command, COMMANDS[command], f"ctrbench {command} {positional}[key=value ...] [--cfg job]", conf_dir())


def check_one_mode(args: list[str]) -> None:
    """Hydra runs one mode per command line: a run, a multirun (-m), --cfg, --info or
    --shell-completion. Two of them (``-m ... --cfg job``) is one line here, not argparse's usage."""
    used = []
    for a in args:
        flag = MODE_FLAGS.get(a.split("=", 1)[0] if a.startswith("--") else a)
        if flag and flag not in used:
            used.append(flag)
    if len(used) < 2:
        return
    if "-m" in used and "--cfg" in used:
        raise UserError("-m and --cfg do not go together (Hydra refuses -m with --cfg): --cfg job prints the config of one "
                        "run, so drop -m and give each swept key one value; or drop --cfg to run the sweep")
    raise UserError(f"{' and '.join(used)} do not go together: Hydra takes one of -m, --cfg, --info and --shell-completion")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        say(version_line() + "\n", sys.stdout)
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        tolerate_closed_stdout()  # `ctrbench | head`: the help is cut, not an error (exit 0)
        print_help()
        flush_quietly()
        return 0
    command, rest = argv[0], argv[1:]
    tolerate_closed_stdout()  # `ctrbench train | tee log` and Ctrl-C (tee gone too): the run still saves and stops cleanly
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = "140"  # rich tables and logs unwrapped when piped or logged
    if command not in COMMANDS:
        from ctrbench.hydra_errors import close_matches

        close = close_matches(command, COMMANDS, n=1)
        mean = f"did you mean {close[0]}? " if close else ""
        sys.stderr.write(f"ctrbench: error: unknown command {command!r}: {mean}(expected one of {', '.join(COMMANDS)})\n")
        return 2
    if command in HELP_FROM_CONFIG and any(a in ("-h", "--help") for a in rest):
        say(command_help_text(command), sys.stdout)
        return 0
    from ctrbench.conf_paths import working_folder_importable

    working_folder_importable()  # a model of your own in this folder: model._target_=mydin.MyDIN (docs/extending.md)
    try:
        check_one_mode(rest)
        rest = config_dirs_first(split_args(command, rest))
        check_group_choices(rest)
        if command == "train":
            rest = resume_args(rest)
            rest = distributed_rank_args(rest)
    except UserError as e:
        sys.stderr.write(f"ctrbench {command}: error: {e}\n")
        return 2
    from ctrbench import commands

    try:
        _run_hydra(command, getattr(commands, f"run_{command}"), rest)
    except KeyboardInterrupt:  # outside a task (while Hydra composes or launches)
        say(f"ctrbench {command}: error: interrupted\n")
        flush_quietly()
        return 130
    if command == "train":
        from ctrbench.train.distributed import env_world

        if env_world()[1] > 1:  # a torchrun rank (its values were checked before the run)
            _exit_completed_rank()
    return 0


def _exit_completed_rank() -> None:
    """End a torchrun rank whose run has completed (results written, process group destroyed)
    without interpreter finalization. PyTorch's DDP keeps gloo's worker threads alive after
    ``destroy_process_group`` (also in a plain DDP script), and finalization then destroys them
    while they still run: now and then a rank aborts there ("terminate called without an active
    exception", seen in CI on a loaded machine), and torchrun reports the completed job as
    failed. Logs and output streams are flushed first."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
