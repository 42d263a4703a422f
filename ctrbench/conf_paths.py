"""Where ctrbench's Hydra configs live."""

from __future__ import annotations

from pathlib import Path

from ctrbench.errors import UserError


def conf_dir() -> Path:
    """The Hydra config folder: ``conf/`` of a source checkout (editable install), else the copy
    shipped inside the wheel as ``ctrbench/conf``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").exists():
            return candidate
    raise UserError(f"ctrbench's config folder was not found (looked in {here.parent / 'conf'} and {here / 'conf'}); reinstall ctrbench")


# ---- configs of the user's own: Hydra's search path -------------------------------------------
# `--config-dir DIR` (`-cd DIR`) and `hydra.searchpath=[file://DIR, pkg://a.package]` add config
# folders after conf/: their groups and options join ctrbench's own (docs/extending.md). Hydra
# reads them itself; the CLI reads them too, to check group options before Hydra runs and to
# compose a sweep's plan.
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
SEARCHPATH_KEY = "hydra.searchpath"


def user_search_path(args: list[str]) -> list[str]:
    """The config folders a command line adds, as Hydra's search-path entries (``file://ABS`` for
    ``--config-dir``, then the ``hydra.searchpath=[...]`` entries as given)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    dirs, overrides, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in CONFIG_DIR_FLAGS and i + 1 < len(args):
            dirs.append(args[i + 1])
            i += 2
            continue
        if a.startswith(tuple(f"{f}=" for f in CONFIG_DIR_FLAGS)):
            dirs.append(a.split("=", 1)[1])
        elif not a.startswith("-") and a.lstrip("+~").startswith(SEARCHPATH_KEY + "="):
            overrides.append(a)
        i += 1
    entries = []
    for d in dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise UserError(f"--config-dir {d!r}: no such folder (expected a folder of config groups, e.g. conf/ with model/mydin.yaml)")
        entries.append(f"file://{p.resolve()}")
    for o in overrides:
        try:
            (parsed,) = OverridesParser.create().parse_overrides([o])
        except HydraException as e:
            raise UserError(str(e).splitlines()[0]) from None
        value = None if parsed.is_sweep_override() else parsed.value()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{SEARCHPATH_KEY}={o.split('=', 1)[1]} is invalid: expected a list of config "
                            f"folders, e.g. {SEARCHPATH_KEY}=[file://./conf]")
        entries += value
    return entries


def search_roots(entries: list[str]) -> list:
    """The folders of search-path entries (``file://DIR`` or a bare path, relative to the working
    folder as Hydra reads it; ``pkg://a.package``), each checked to exist: a Path or an
    importlib.resources Traversable."""
    from importlib import resources

    roots = []
    for entry in entries:
        scheme, sep, rest = entry.partition("://")
        if not sep:
            scheme, rest = "file", entry
        if scheme == "file":
            p = Path(rest).expanduser()
            if not p.is_dir():
                raise UserError(f"{SEARCHPATH_KEY} entry {entry!r}: no such folder (a file:// path is relative to the folder "
                                f"ctrbench runs in; expected e.g. file://./conf)")
            roots.append(p)
        elif scheme == "pkg":
            try:
                roots.append(resources.files(rest.replace("/", ".")))
            except (ImportError, TypeError, ValueError) as e:
                raise UserError(f"{SEARCHPATH_KEY} entry {entry!r}: cannot import {rest!r} ({e}); expected an importable "
                                f"package holding config groups") from None
    return roots


def group_options(root) -> dict[str, set[str]]:
    """Each config group under ``root`` (a Path or Traversable; nested groups as ``dataset/protocol``,
    ``hydra/`` left out) and its options (the ``.yaml`` files' names)."""
    out: dict[str, set[str]] = {}

    def walk(folder, prefix: str) -> None:
        for child in folder.iterdir():
            if not child.is_dir() or child.name.startswith(("_", ".")) or (not prefix and child.name == "hydra"):
                continue
            group = f"{prefix}{child.name}"
            out.setdefault(group, set()).update(f.name[: -len(".yaml")] for f in child.iterdir()
                                                if f.is_file() and f.name.endswith(".yaml"))
            walk(child, group + "/")

    walk(root, "")
    return out


def searchpath_override(args: list[str]) -> str | None:
    """One ``hydra.searchpath=[...]`` override that holds every folder the command line adds (its
    ``--config-dir`` and ``hydra.searchpath``), for composing a config outside Hydra's own app
    (the sweep plan, ``trainer.resume=auto``); None when it adds none."""
    entries = user_search_path(args)
    if not entries:
        return None
    quoted = ",".join("'" + e.replace("\\", "\\\\").replace("'", "\\'") + "'" for e in entries)
    return f"{SEARCHPATH_KEY}=[{quoted}]"


def working_folder_importable() -> None:
    """Let ``_target_`` name a module in the folder ctrbench runs in (``mydin.MyDIN`` for ./mydin.py),
    as ``python -m ctrbench`` does: the folder goes at the end of ``sys.path``, after the installed
    packages, which it never shadows, and into ``PYTHONPATH`` for the processes a sweep starts."""
    import os
    import sys

    cwd = os.getcwd()
    if not any(p in ("", ".", cwd) for p in sys.path):
        sys.path.append(cwd)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if cwd not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, cwd])


def is_shadowed(search_path: list[str], group: str, option: str) -> bool:
    """Whether the user's config folders hold ``group/option.yaml`` (``+row=table/row``: row/table/row.yaml)
    under a name conf/ already has: Hydra reads conf/ first, so that file of the user's is never used."""
    if group == "row" and "/" in option:
        table, option = option.split("/", 1)
        group = f"row/{table}"
    if option not in group_options(conf_dir()).get(group, set()):
        return False
    return any(option in group_options(root).get(group, set()) for root in search_roots(search_path))
