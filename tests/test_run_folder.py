"""Two runs never write into the same run folder (docs/reliability.md, part 5): the first claims it
with an O_EXCL marker, a second is refused; a resumed run takes over a folder only when the run
that claimed it is over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ctrbench.errors import ConfigError
from ctrbench.run_folder import MARKER, claim_run_folder, process_alive, read_claim

ROOT = Path(__file__).resolve().parents[1]


def claimer(folder: Path, then: str = "exit", resume: bool = False) -> subprocess.Popen:
    """A separate process that claims ``folder``, prints the outcome, then exits or sleeps."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ctrbench.run_folder import claim_run_folder
        from ctrbench.errors import ConfigError
        try:
            claim_run_folder({str(folder)!r}, resume={resume!r})
            print("claimed", flush=True)
        except ConfigError as e:
            print("refused", e, flush=True)
        if {then!r} == "sleep":
            time.sleep(60)
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen) -> None:
    p.kill()
    p.wait(timeout=10)
    p.stdout.close()


def test_first_claim_writes_the_marker(tmp_path):
    run = tmp_path / "outputs" / "2026-01-01" / "10-00-00"
    claim_run_folder(run)
    owner = read_claim(run)
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["claimed"]
    claim_run_folder(run)  # the same process again: a no-op
    claim_run_folder(run, resume=True)
    assert read_claim(run)["pid"] == os.getpid()


def test_a_second_run_in_the_same_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    p = claimer(run, then="sleep")
    try:
        assert p.stdout.readline().strip() == "claimed"
        with pytest.raises(ConfigError) as info:
            claim_run_folder(run)
        msg = str(info.value)
        assert len(msg.splitlines()) == 1 and f"'{run}' is already used by another run (pid {p.pid}" in msg
        assert "choose another hydra.run.dir" in msg
        # resuming while that run is still going is refused too
        with pytest.raises(ConfigError, match=rf"cannot resume in .*still going \(pid {p.pid}"):
            claim_run_folder(run, resume=True)
    finally:
        finish(p)
    assert read_claim(run)["pid"] == p.pid  # the marker was not touched


def test_a_finished_runs_folder_is_refused_to_a_new_run_but_resumable(tmp_path):
    run = tmp_path / "run"
    p = claimer(run)
    assert p.stdout.readline().strip() == "claimed"
    p.wait(timeout=10)
    p.stdout.close()
    with pytest.raises(ConfigError, match="already used by another run"):
        claim_run_folder(run)
    claim_run_folder(run, resume=True)
    assert read_claim(run)["pid"] == os.getpid()


def test_a_zombie_or_a_recycled_pid_is_not_alive(tmp_path):
    run = tmp_path / "run"
    p = claimer(run)
    assert p.stdout.readline().strip() == "claimed"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}").exists() and Path(f"/proc/{p.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not process_alive(p.pid)  # exited, not reaped yet
    claim_run_folder(run, resume=True)
    p.wait(timeout=10)
    p.stdout.close()
    # a marker whose pid now belongs to another process (a different start time)
    other = tmp_path / "other"
    other.mkdir()
    (other / MARKER).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "start_time": 1, "claimed": "then"}))
    assert process_alive(os.getppid()) and not process_alive(os.getppid(), start_time=1)
    claim_run_folder(other, resume=True)
    assert read_claim(other)["pid"] == os.getpid()


def test_a_claim_from_another_host_cannot_be_resumed_here(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"pid": 1, "host": "node-17.elsewhere", "claimed": "2026-01-01T10:00:00"}))
    with pytest.raises(ConfigError, match=r"claimed by pid 1 on host node-17.elsewhere .*cannot be checked .*delete '.*\.ctrbench-run'"):
        claim_run_folder(run, resume=True)


def test_an_unreadable_marker(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="its marker is unreadable"):
        claim_run_folder(run)
    claim_run_folder(run, resume=True)  # a damaged marker does not block a resume forever
    assert read_claim(run)["pid"] == os.getpid()


def test_racing_runs_exactly_one_wins(tmp_path):
    run = tmp_path / "run"
    procs = [claimer(run, then="sleep") for _ in range(4)]
    try:
        outcomes = [p.stdout.readline().split()[0] for p in procs]
    finally:
        for p in procs:
            finish(p)
    assert sorted(outcomes) == ["claimed", "refused", "refused", "refused"]


def test_a_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the run folder .*choose another hydra.run.dir"):
        claim_run_folder(blocker / "run")
