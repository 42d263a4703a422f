"""The configs are found from an installed wheel, not only from a source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_and_finds_the_configs(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    wheel = next(wheels.glob("ctrbench-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import ctrbench.cli as c; print(c.__file__); print(c.conf_dir())"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert where[0].startswith(str(target)) and where[1].startswith(str(target)), where
    out = subprocess.run(
        [sys.executable, "-m", "ctrbench", "train", "model=lr", "--cfg", "job"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert "ctrbench.models.lr.LR" in out
    # nested config groups (dataset protocols, the tables' rows) ship too
    out = subprocess.run(
        [sys.executable, "-m", "ctrbench", "train", "+experiment=din_table3", "+row=din_table3/din_dice",
         "dataset=amazon_books", "--cfg", "job"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert "row_name: din_dice" in out and "DIENProtocol" in out
