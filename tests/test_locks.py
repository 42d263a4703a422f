"""The dataset and run-folder locks (``filelock``): a process that finds one held says who holds it
(pid, host, command, since when), waits at most ``CTRBENCH_LOCK_TIMEOUT`` seconds, and then stops
with a one-line error naming the holder (exit status 2 on the command line)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import tiny_dataset_cfg

from ctrbench.data import store
from ctrbench.data.prepare import content_config, dataset_lock
from ctrbench.errors import ConfigError
from ctrbench.locks import lock_timeout
from ctrbench.run_folder import MARKER

ROOT = Path(__file__).resolve().parents[1]
HOLDER_ARGV = ["ctrbench-prepare", "dataset=synthetic", "+debug=fast"]


def holder(lock: str, target: Path, hold_s: float = 120) -> subprocess.Popen:
    """A process that holds ``lock`` (``dataset`` or ``folder``) of ``target``, as the CLI would
    (its argv as ``ctrbench prepare`` has it), prints "held" and keeps it ``hold_s`` seconds."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        sys.argv = {HOLDER_ARGV!r}
        from ctrbench.data.prepare import dataset_lock
        from ctrbench.run_folder import _folder_lock
        lock = dataset_lock if {lock!r} == "dataset" else _folder_lock
        with lock(Path({str(target)!r})):
            print("held", flush=True)
            time.sleep({hold_s!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


def names_the_holder(message: str, proc: subprocess.Popen) -> None:
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message, message
    assert "`ctrbench prepare dataset=synthetic +debug=fast`" in message, message
    assert "since 20" in message, message


def fast_dataset_dir(data_dir: Path) -> Path:
    """The processed dataset folder of `ctrbench prepare +debug=fast` (what the CLI builds)."""
    from conftest import compose_train

    cfg = compose_train("+debug=fast", f"paths.data_dir={data_dir}")
    return store.dataset_dir(data_dir, cfg.dataset.name, content_config(cfg.dataset))


def test_prepare_times_out_naming_the_holder(tmp_path):
    """Was: fcntl.flock without a timeout, so the second `ctrbench prepare` waited for ever and said
    nothing about why."""
    data = tmp_path / "data"
    target = fast_dataset_dir(data)
    proc = holder("dataset", target)
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "COLUMNS")}
    env.update(CTRBENCH_LOCK_TIMEOUT="1", CTRBENCH_DATA_DIR=str(data))
    try:
        t0 = time.monotonic()
        waiter = subprocess.run([sys.executable, "-m", "ctrbench", "prepare", "+debug=fast"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        stop(proc)
    assert waiter.returncode == 2, (waiter.returncode, waiter.stdout, waiter.stderr)
    lines = [line for line in waiter.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ctrbench prepare: error: gave up waiting for the processed dataset"), waiter.stderr
    names_the_holder(lines[0], proc)
    assert "CTRBENCH_LOCK_TIMEOUT" in lines[0] and "Traceback" not in waiter.stderr
    assert "waiting for the processed dataset" in waiter.stdout and f"pid {proc.pid}" in waiter.stdout  # said while waiting
    assert elapsed < 60
    assert not target.exists()  # nothing built, nothing corrupted


def test_a_waiter_says_whom_it_waits_for_and_gets_the_lock_when_it_is_released(tmp_path, monkeypatch, caplog):
    target = tmp_path / "processed" / "synthetic-x"
    proc = holder("dataset", target, hold_s=1.5)
    monkeypatch.setenv("CTRBENCH_LOCK_TIMEOUT", "60")
    try:
        with caplog.at_level(logging.WARNING, logger="ctrbench"), dataset_lock(target):
            record = json.loads((target.parent / f".{target.name}.lock.holder").read_text())
            assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    finally:
        stop(proc)
    assert proc.returncode is not None
    waited = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waited) == 1, caplog.text
    names_the_holder(waited[0], proc)
    assert "up to 60 s" in waited[0]
    assert not (target.parent / f".{target.name}.lock.holder").exists()  # removed with the lock


def test_a_resume_times_out_on_the_run_folder_lock_naming_the_holder(tmp_path):
    """Two resumes of one folder take it over one at a time; the second one now stops after
    CTRBENCH_LOCK_TIMEOUT seconds instead of waiting for ever."""
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"pid": 999999999, "host": socket.gethostname(), "claimed": "then"}))  # a run that is over
    proc = holder("folder", run)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from ctrbench.run_folder import claim_run_folder
        from ctrbench.errors import UserError
        try:
            claim_run_folder({str(run)!r}, resume=True)
            print("claimed")
        except UserError as e:
            print("refused:", e)
    """)
    try:
        waiter = subprocess.run([sys.executable, "-c", script], env={**os.environ, "CTRBENCH_LOCK_TIMEOUT": "0.5"},
                                capture_output=True, text=True, timeout=60)
    finally:
        stop(proc)
    out = waiter.stdout.strip()
    assert out.startswith(f"refused: gave up waiting for the run folder '{run}' after 0.5 s"), (out, waiter.stderr)
    names_the_holder(out, proc)
    assert json.loads((run / MARKER).read_text())["pid"] == 999999999  # the marker is untouched


@pytest.mark.parametrize("value", ["soon", "-1", "nan", ""])
def test_lock_timeout_values(monkeypatch, value):
    monkeypatch.setenv("CTRBENCH_LOCK_TIMEOUT", value)
    if value == "":
        assert lock_timeout(7) == 7
        return
    with pytest.raises(ConfigError, match=rf"^CTRBENCH_LOCK_TIMEOUT='{value}' is invalid: expected a number of seconds >= 0"):
        lock_timeout(7)


def test_lock_timeout_accepts_seconds_and_inf(monkeypatch):
    monkeypatch.setenv("CTRBENCH_LOCK_TIMEOUT", "2.5")
    assert lock_timeout(7) == 2.5
    monkeypatch.setenv("CTRBENCH_LOCK_TIMEOUT", "inf")
    assert lock_timeout(7) == float("inf")


def test_the_dataset_lock_does_not_change_what_prepare_builds(tmp_path):
    from ctrbench.data.prepare import prepare

    path, built = prepare(tiny_dataset_cfg(seed=43), tmp_path)
    assert built and store.is_intact(path)
    assert not list(path.parent.glob("*.holder"))
