"""``ctrbench <command> --help`` for the commands that are not ``train``: what the command takes.

Hydra's own ``--help`` lists every config group on the search path, so ``ctrbench table --help``
showed the training groups (model, act, reg, ...) that ``table`` does not read. This help is built
from the command's own primary config (``conf/<command>.yaml``): its settings with their defaults
and the comments written beside them (which name the valid values), and the config groups its
defaults list picks, with their options.
"""

from __future__ import annotations

import re
from pathlib import Path

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(?P<comment>.*)$")


def settings(path: Path) -> list[tuple[str, str, str]]:
    """(dotted key, default as written, comment) of each setting in a primary config file, in file
    order; the ``defaults`` list and the ``hydra`` section left out."""
    out: list[list[str]] = []
    stack: list[tuple[int, str]] = []
    skipping = False
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") and not line.startswith(" "):
            continue
        c = _COMMENT.match(line)
        if c and out and not skipping:
            out[-1][2] = f"{out[-1][2]} {c.group('comment').strip()}".strip()
            continue
        m = _KEY.match(line)
        if not m:
            continue
        indent, key, value = len(m.group("indent")), m.group("key"), m.group("value").strip()
        if indent == 0:
            skipping = key in ("defaults", "hydra")
            stack = []
        if skipping:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        if value == "":
            stack.append((indent, key))
            continue
        out.append([dotted, value, (m.group("comment") or "").strip()])
    return [tuple(x) for x in out]  # type: ignore[misc]


def groups(path: Path, conf: Path) -> list[tuple[str, str, list[str]]]:
    """(group, default option, options) of each config group a primary config's defaults list picks."""
    from omegaconf import OmegaConf

    from ctrbench.conf_paths import group_options

    cfg = OmegaConf.load(path)
    options = group_options(conf)
    out = []
    for item in cfg.get("defaults", []) or []:
        if isinstance(item, str) or item is None:
            continue
        for group, default in item.items():
            group = str(group)
            if group.startswith(("override", "hydra", "optional")):
                continue
            out.append((group, str(default), sorted(options.get(group, ()))))
    return out


def command_help(command: str, description: str, usage: str, conf: Path) -> str:
    """The help text of ``ctrbench <command>``."""
    path = conf / f"{command}.yaml"
    lines = [f"usage: {usage}", "", f"ctrbench {command}: {description}"]
    rows = settings(path) if path.is_file() else []
    if rows:
        width = max(len(k) for k, _, _ in rows)
        value_width = min(max(len(v) for _, v, _ in rows), 24)
        lines += ["", "settings (key=value; the default first):"]
        for key, value, comment in rows:
            lines.append(f"  {key.ljust(width)}  {value.ljust(value_width)}  {comment}".rstrip())
    picked = groups(path, conf) if path.is_file() else []
    if picked:
        lines += ["", "config groups (group=option):"]
        width = max(len(g) for g, _, _ in picked)
        for group, default, options in picked:
            lines.append(f"  {group.ljust(width)}  {', '.join(options)} (default {default})")
    lines += ["", "flags: --cfg job (print the composed config and exit), --hydra-help (Hydra's own flags)"]
    return "\n".join(lines).rstrip() + "\n"
