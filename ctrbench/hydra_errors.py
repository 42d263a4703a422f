"""Hydra's config-composition errors as one line, with the closest valid keys.

A typo'd key (``trainer.max_epoch=3``, ``modle=din``, ``ctrbench table S fromat=csv``) made Hydra
print six lines that advise ``+trainer.max_epoch=3``, which would add a key nothing reads. The
errors come from Hydra's own composition, so they cover every config Hydra sees, those on a
user's search path (``--config-dir``, ``hydra.searchpath``) included; the suggestions come from
the composed config itself (the node the key was looked up in, carried by OmegaConf's error) or
from the options Hydra lists, never from a fixed list.

``one_line_config_errors(command)`` wraps Hydra's ``run_and_report`` (which prints an error and
exits 1) so that these errors become ``ctrbench <command>: error: <one line>`` and exit status 2.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator

_COULD_NOT_OVERRIDE = re.compile(r"Could not override '([^']+)'\.")
_APPEND_HINT = re.compile(r"use \+(\S+)")
_DELETE = re.compile(r"Could not delete from config\. '([^']+)' does not exist\.")
# commands whose configs take optional config groups with +group=option (+debug=fast, +experiment=...)
GROUP_COMMANDS = ("train",)
SHOWN = 14  # at most this many valid keys or options listed when none is close


def close_matches(word: str, candidates, n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (difflib), case-insensitively."""
    candidates = [str(c) for c in candidates]
    by_lower = {c.lower(): c for c in candidates}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)]


def _listing(values: list[str]) -> str:
    shown = ", ".join(values[:SHOWN])
    return shown + (f", … ({len(values)} in all)" if len(values) > SHOWN else "")


def _did_you_mean(found: list[str]) -> str:
    return f"did you mean {' or '.join(found)}?" if found else ""


def _unknown_key(command: str, exc) -> str | None:
    """``Could not override 'K'`` (struct mode: the key is not in the config): the closest keys of
    the node it was looked up in."""
    m = _COULD_NOT_OVERRIDE.search(str(exc))
    cause = exc.__cause__
    if not m:
        return None
    typed = m.group(1)
    if "No match in the defaults list" in str(exc):
        return _not_in_defaults(command, typed, str(exc))
    from omegaconf import DictConfig

    node = getattr(cause, "parent_node", None)
    key = getattr(cause, "key", None)
    full_key = str(getattr(cause, "full_key", None) or typed)
    if not isinstance(node, DictConfig) or key is None:
        return f"unknown key '{typed}' (`ctrbench {command} --cfg job` shows the config)"
    prefix = full_key[: -len(str(key))] if full_key.endswith(str(key)) else ""
    keys = [str(k) for k in node]
    if not prefix and not str(key).startswith("hydra"):
        keys = [k for k in keys if k != "hydra"]
    found = [prefix + k for k in close_matches(str(key), keys)]
    where = f"'{prefix.rstrip('.')}'" if prefix else f"ctrbench {command}'s config"
    if found:
        return f"unknown key '{full_key}': {_did_you_mean(found)} (no such key in {where})"
    return (f"unknown key '{full_key}': {where} has {_listing([prefix + k for k in keys])} "
            f"(`ctrbench {command} --cfg job` shows the config)")


def _not_in_defaults(command: str, group: str, text: str) -> str:
    """``Could not override 'G'. No match in the defaults list.``: a config group the command's
    config does not use."""
    hint = _APPEND_HINT.search(text)
    override = hint.group(1) if hint else f"{group}=..."
    if command in GROUP_COMMANDS:
        return (f"'{group}' is not one of the config groups ctrbench {command} composes by default: an optional group is "
                f"added with a +: +{override}")
    takes = _command_keys(command)
    found = close_matches(group, takes)
    takes_text = f": it takes {', '.join(takes)}" if takes else ""
    mean = f"; {_did_you_mean(found)}" if found else ""
    return f"ctrbench {command} takes no '{group}'{takes_text}{mean} (ctrbench {command} --help)"


def _command_keys(command: str) -> list[str]:
    """The keys a command's primary config sets and the groups its defaults list picks."""
    from omegaconf import OmegaConf

    from ctrbench.conf_paths import conf_dir

    try:
        cfg = OmegaConf.load(conf_dir() / f"{command}.yaml")
    except Exception:  # noqa: BLE001 - no listing then
        return []
    keys = [str(k) for k in cfg if k not in ("defaults", "hydra")]
    for item in cfg.get("defaults", []) or []:
        if not isinstance(item, str) and item is not None:
            keys += [str(k) for k in item if not str(k).startswith(("override", "hydra"))]
    return keys


def _missing_option(exc) -> str | None:
    """``Could not find 'model/dni'``: an option that no folder on the search path has."""
    missing = getattr(exc, "missing_cfg_file", None)
    options = getattr(exc, "options", None)
    if not missing or options is None:
        return None
    group, _, value = str(missing).rpartition("/")
    if not group:
        return None
    options = sorted(str(o) for o in options)
    found = close_matches(value, options)
    mean = f": {_did_you_mean(found)}" if found else ""
    return f"unknown {group} {value!r}{mean} (expected one of {_listing(options)})"


def one_line(command: str, exc: BaseException) -> str | None:
    """The one-line message for a Hydra config error, or None for other exceptions."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    if isinstance(exc, MissingConfigException):
        msg = _missing_option(exc)
        if msg:
            return msg
    if isinstance(exc, ConfigCompositionException):
        msg = _unknown_key(command, exc)
        if msg:
            return msg
        m = _DELETE.search(str(exc))
        if m:
            return f"cannot delete '{m.group(1)}' (~{m.group(1)}): the config has no such key"
    if isinstance(exc, (ConfigCompositionException, MissingConfigException, OverrideParseException)):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("To append", "Config search path", "provider="))]
        cause = exc.__cause__
        if cause is not None and str(cause).strip():
            lines.append(str(cause).strip().splitlines()[0])
        return "; ".join(lines[:2]) if lines else type(exc).__name__
    return None


@contextlib.contextmanager
def one_line_config_errors(command: str) -> Iterator[None]:
    """While Hydra runs a command: its config-composition errors exit 2 with one line (the other
    errors go to Hydra's own reporting, as before)."""
    import hydra._internal.utils as hydra_utils

    from ctrbench.streams import fail

    original = hydra_utils.run_and_report

    def run_and_report(func):
        def translated():
            try:
                return func()
            except Exception as e:  # only config errors are translated; the others are re-raised
                msg = one_line(command, e)
                if msg is None:
                    raise
                from ctrbench.output_folders import remove_unstarted_sweeps

                remove_unstarted_sweeps()  # a sweep stopped by its jobs' config leaves no empty sweep folder
                fail(command, msg)

        return original(translated)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original
