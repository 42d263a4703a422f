"""``ctrbench <command> [overrides]``: one Hydra app per command, each with its primary config in conf/.

    ctrbench train model=din act=prelu           train, select on validation, score the test split
    ctrbench train -m model=lr,base,din seed=1,2,3
    ctrbench prepare dataset=synthetic           build (or reuse) the processed dataset
    ctrbench evaluate outputs/2026-11-23/10-00-00 split=test
    ctrbench table outputs/multirun/...          AUC, GAUC and RelaImpr over runs

Every command takes Hydra's override syntax, ``-m/--multirun``, ``--cfg job`` and ``--help``.
User errors (an unknown option, a bad value, a missing file) are printed as one line, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ctrbench.errors import UserError

COMMANDS: dict[str, str] = {
    "train": "train a model (prepares the dataset on demand), select it on validation, score the test split",
    "prepare": "build the processed dataset of a dataset config (cached by a hash of its config) and report it",
    "evaluate": "re-score a saved run folder's best checkpoint on a split: ctrbench evaluate RUN_DIR split=test",
    "table": "results over run or multirun folders: ctrbench table PATH [PATH ...] [format=markdown output=F]",
}

# Where each command's bare (non-override) arguments go.
POSITIONAL = {"table": "paths", "evaluate": "run_dir"}
# Hydra flags that take a value (so that value is not a positional argument).
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def conf_dir() -> Path:
    """The Hydra config folder: ``conf/`` of a source checkout (editable install), else the copy
    shipped inside the wheel as ``ctrbench/conf``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").exists():
            return candidate
    raise UserError(f"ctrbench's config folder was not found (looked in {here.parent / 'conf'} and {here / 'conf'}); reinstall ctrbench")


def config_groups() -> dict[str, list[str]]:
    """Each config group in conf/ and its options."""
    root = conf_dir()
    groups = {}
    for d in sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith(("_", "."))):
        if d.relative_to(root).parts[0] == "hydra":
            continue
        groups[d.relative_to(root).as_posix()] = sorted(f.stem for f in d.glob("*.yaml"))
    return groups


def print_help() -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
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
    groups = config_groups()
    # +row=<table>/<row>: the rows of every table, one group folder per table
    groups["row"] = [f"{g.split('/', 1)[1]}/{r}" for g, rows in groups.items() if g.startswith("row/") for r in rows]
    for o in parsed:
        group = o.key_or_group
        if group not in groups or o.value_type is None:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for v in values:
            if v not in groups[group] and v != "null":
                raise UserError(f"unknown {group} {v!r}: expected one of {', '.join(groups[group])}")


def _run_hydra(command: str, task: Callable, args: list[str]) -> None:
    import hydra

    sys.argv = [f"ctrbench-{command}", *args]
    app = hydra.main(config_path=str(conf_dir()), config_name=command, version_base="1.3")(_guarded(command, task))
    app()


def _guarded(command: str, task: Callable) -> Callable:
    """Run a command's task; print user errors as one line and exit 2."""
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException

    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except UserError as e:
            _fail(command, str(e))
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            msg = str(e).splitlines()[0]
            _fail(command, f"config error at '{key}': {msg}" if key else f"config error: {msg}")
        except KeyboardInterrupt:
            _fail(command, "interrupted", code=130)

    wrapper.__name__ = command
    wrapper.__module__ = __name__
    return wrapper


def _fail(command: str, message: str, code: int = 2) -> None:
    sys.stderr.write(f"ctrbench {command}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help()
        return 0
    command, rest = argv[0], argv[1:]
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = "140"  # rich tables and logs unwrapped when piped or logged
    if command not in COMMANDS:
        sys.stderr.write(f"ctrbench: error: unknown command {command!r}: expected one of {', '.join(COMMANDS)}\n")
        return 2
    try:
        rest = split_args(command, rest)
        check_group_choices(rest)
    except UserError as e:
        sys.stderr.write(f"ctrbench {command}: error: {e}\n")
        return 2
    from ctrbench import commands

    _run_hydra(command, getattr(commands, f"run_{command}"), rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
