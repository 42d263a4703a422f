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
