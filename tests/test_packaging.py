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


def test_every_package_ctrbench_imports_is_declared():
    """Each third-party package that ctrbench's code imports is a dependency (or, for the optional
    features, in an extra) of pyproject.toml, not only there because something else pulls it in."""
    import ast
    import importlib.metadata
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requirements}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in sorted((ROOT / "ctrbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ctrbench", "__future__"):
                    continue
                if top == "hydra_plugins":  # namespace package of the launcher / sweeper plugins (extras)
                    continue
                dists = {norm(d) for d in distributions.get(top, [top])}
                if not dists & declared:
                    undeclared.setdefault(top, str(path.relative_to(ROOT)))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
