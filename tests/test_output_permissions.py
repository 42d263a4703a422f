"""Where ctrbench writes, and with which permissions (docs/reliability.md, "Output folders and
permissions"): a folder it cannot write to is a one-line error with exit status 2 (never a
traceback), and every file and folder it writes gets the permissions a plain ``open()`` /
``mkdir()`` gives under the process's umask (not the 0600 / 0700 of ``tempfile``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_dataset_cfg

from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.data.prepare import prepare
from ctrbench.train import checkpoint
from test_cli import ctrbench

FAST = ["+debug=fast", "device=cpu", "device.threads=1"]

# ---- read-only folders ----------------------------------------------------------------------------
# Root ignores permission bits, so as root a folder is made really read-only: a read-only bind mount
# in a mount namespace of the child's own (unshare -m), else the immutable attribute (chattr +i).
_BIND_RO = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'


def _write_fails(folder: Path, prefix: list[str]) -> bool:
    probe = f"open({str(folder / 'probe')!r}, 'w')"
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode != 0 and ("Read-only file system" in proc.stderr or "Permission denied" in proc.stderr
                                     or "Operation not permitted" in proc.stderr)


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only for the commands run with the yielded prefix (a list of words put
    before the command); skips the test when this machine offers no way to."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield []
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("unshare"):
        prefix = ["unshare", "-m", "sh", "-c", _BIND_RO, str(folder)]
        if _write_fails(folder, prefix):
            yield prefix
            return
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            if _write_fails(folder, []):
                yield []
                return
        finally:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    pytest.skip("running as root without a way to make a folder read-only (no unshare -m with mount, no chattr +i)")


def ctrbench_in(prefix: list[str], *args: str, cwd: Path, env_data: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "COLUMNS")}
    env["CTRBENCH_DATA_DIR"] = str(env_data)
    return subprocess.run([*prefix, sys.executable, "-m", "ctrbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ctrbench {command}: error: "), proc.stderr
    return lines[0]


def test_train_into_a_read_only_run_folder_is_one_line(tmp_path):
    """Hydra writes .hydra/ and train.log into the run folder before ctrbench's code runs: that
    was Hydra's traceback ("Unable to configure handler 'file'") and exit status 1."""
    ro = tmp_path / "ro"
    with read_only(ro) as prefix:
        for run_dir in (ro, ro / "run"):  # the folder itself, and one Hydra would create inside it
            line = one_line_error(ctrbench_in(prefix, "train", *FAST, f"hydra.run.dir={run_dir}",
                                              cwd=tmp_path, env_data=tmp_path / "data"), "train")
            assert f"'{run_dir}'" in line and "hydra.run.dir" in line
            assert "Read-only file system" in line or "Permission denied" in line or "not permitted" in line
    assert list(ro.iterdir()) == []


def test_multirun_into_a_read_only_sweep_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    with read_only(ro) as prefix:
        line = one_line_error(ctrbench_in(prefix, "train", "-m", *FAST, "seed=1,2", f"hydra.sweep.dir={ro}",
                                          cwd=tmp_path, env_data=tmp_path / "data"), "train")
    assert f"'{ro}'" in line and "hydra.sweep.dir" in line
    assert list(ro.iterdir()) == []


def test_prepare_and_train_with_a_read_only_data_folder_are_one_line(tmp_path):
    """The dataset's lock file and folder cannot be created: that was a raw OSError traceback."""
    ro = tmp_path / "ro"
    with read_only(ro) as prefix:
        line = one_line_error(ctrbench_in(prefix, "prepare", "+debug=fast", f"paths.data_dir={ro}", cwd=tmp_path,
                                          env_data=tmp_path / "data"), "prepare")
        assert f"'{ro}/processed" in line and "paths.data_dir" in line
        run = tmp_path / "run"
        line = one_line_error(ctrbench_in(prefix, "train", *FAST, f"paths.data_dir={ro}", f"hydra.run.dir={run}",
                                          cwd=tmp_path, env_data=tmp_path / "data"), "train")
        assert f"'{ro}/processed" in line and "paths.data_dir" in line
    assert list(ro.iterdir()) == []


def test_table_plots_and_evaluate_into_read_only_folders_are_one_line(tmp_path):
    """The other writers (already one line before: they write through ctrbench.atomic)."""
    data = tmp_path / "data"
    ctrbench("train", *FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env_data=data)
    ro = tmp_path / "ro"
    with read_only(ro) as prefix:
        line = one_line_error(ctrbench_in(prefix, "table", str(tmp_path / "run"), "format=csv", f"output={ro / 'r.csv'}",
                                          cwd=tmp_path, env_data=data), "table")
        assert f"cannot write '{ro / 'r.csv'}'" in line
        line = one_line_error(ctrbench_in(prefix, "table", str(tmp_path / "run"), "plot=true", f"output={ro / 'r.csv'}",
                                          cwd=tmp_path, env_data=data), "table")
        assert f"cannot write '{ro}/" in line and ".png'" in line
    with read_only(tmp_path / "run") as prefix:
        line = one_line_error(ctrbench_in(prefix, "evaluate", str(tmp_path / "run"), cwd=tmp_path, env_data=data), "evaluate")
        assert f"cannot write '{tmp_path / 'run' / 'eval_test.json'}'" in line


def test_an_unwritable_file_anywhere_else_is_one_line():
    """The CLI's last net for writers that do not say it themselves (a download folder, ...)."""
    from ctrbench.cli import _access_error

    msg = _access_error(PermissionError(13, "Permission denied", "/data/raw/ratings.csv.part"))
    assert msg == ("cannot use '/data/raw/ratings.csv.part': Permission denied [EACCES]; expected a file or folder "
                   "this user may read and write")
    assert _access_error(OSError(30, "Read-only file system", "/data/raw")).startswith("cannot write '/data/raw': Read-only")
    assert _access_error(OSError(5, "Input/output error", "/x")) is None  # not the user's to fix: a traceback
    assert _access_error(PermissionError(13, "Permission denied")) is None  # no file named
    assert _access_error(ValueError("x")) is None


# ---- permissions: the umask, as open() and mkdir() apply it ----------------------------------------


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_written_files_and_folders_follow_the_umask(tmp_path, mask):
    """The atomic writer's temporary files were mkstemp's 0600 and the processed dataset's folder
    mkdtemp's 0700, whatever the umask: results meant to be shared were private."""
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    with umask(mask):
        atomic_write_text(tmp_path / "metrics.json", "{}")
        with atomic_path(tmp_path / "history.csv") as tmp, open(tmp, "w") as f:
            f.write("step\n")
        checkpoint.save(tmp_path / "best.pt", {"w": torch.zeros(3)})
        atomic_write_text(tmp_path / "metrics.json", "{}")  # rewritten: the same
        path, built = prepare(tiny_dataset_cfg(seed=41), tmp_path / "data")
    assert built
    for name in ("metrics.json", "history.csv", "best.pt", "best.pt.sha256"):
        assert oct(mode(tmp_path / name)) == oct(file_mode), name
    assert oct(mode(path)) == oct(dir_mode)
    for f in path.iterdir():
        assert oct(mode(f)) == oct(file_mode), f.name


@pytest.mark.slow
def test_a_run_its_dataset_and_its_table_are_readable_by_others_under_umask_022(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    with umask(0o022):
        ctrbench("train", *FAST, f"hydra.run.dir={run}", cwd=tmp_path, env_data=data)
        ctrbench("table", str(run), "format=markdown", f"output={tmp_path / 'report' / 'results.md'}", "plot=true",
                 cwd=tmp_path, env_data=data)
    written = [p for p in run.rglob("*")] + [p for p in (data / "processed").rglob("*")] + list((tmp_path / "report").iterdir())
    names = {p.name for p in written}
    assert {"metrics.json", "config.yaml", "best.pt", "last.pt", "history.csv", "status.json", "manifest.json",
            "train.parquet", "results.md", "valid_gauc.png", "relaimpr.png"} <= names, names
    private = [f"{p} {oct(mode(p))}" for p in written if mode(p) != (0o755 if p.is_dir() else 0o644)]
    assert private == []
