"""Resume: a run killed by SIGKILL mid-epoch and continued with ``trainer.resume`` ends exactly as an
uninterrupted run of the same seed (test metrics and history.csv); Ctrl-C saves the training state,
prints the command that resumes it and exits 130."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf


from ctrbench.data.batches import Batcher
from ctrbench.errors import ConfigError, DataError
from ctrbench.train import checkpoint, resume
from conftest import compose_train
from ctrbench.train.loop import Trainer, TrainingInterrupted
from test_cli import ctrbench

# 3,012 training samples: 24 batches of 128 per epoch; 60 steps end in the third epoch. Evaluations
# at 9, 18, 27, ...; last.pt after each of them and every 5 steps.
RUN = ["+debug=fast", "device=cpu", "device.threads=1", "trainer.batch_size=128", "trainer.max_epochs=5", "trainer.max_steps=60",
       "trainer.eval_every=9", "trainer.checkpoint_every=5", "trainer.patience=0"]
DIEN = ["model=dien", "reg=dropout", "reg.mlp_dropout=0.2", "act=dice", "trainer.max_steps=40"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume-data")


@pytest.fixture
def live_pid():
    """A process that runs for the length of a test (a run marked running by it is live)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def cfg_for(data_dir: Path, *overrides: str):
    return compose_train(f"paths.data_dir={data_dir}", *overrides)


def uninterrupted(tmp_path: Path, data_dir: Path, *overrides: str) -> tuple[dict, str]:
    """An uninterrupted run of the same config, in this process: (metrics, history.csv)."""
    run = tmp_path / "uninterrupted"
    run.mkdir()
    t = Trainer(cfg_for(data_dir, *RUN, *overrides), run)
    t.setup()
    return t.fit(), (run / "history.csv").read_text()


def assert_same_result(a: dict, b: dict) -> None:
    for k in ("auc", "gauc", "logloss"):
        assert b["test"][k] == pytest.approx(a["test"][k], abs=1e-6), k
    assert b["valid_best"] == a["valid_best"] and b["steps"] == a["steps"] and b["epochs"] == a["epochs"]


def killed_then_resumed(tmp_path, data_dir, overrides, kill_at, resume_with):
    run = tmp_path / "killed"
    proc = ctrbench("train", *RUN, *overrides, f"hydra.run.dir={run}", f"trainer.fault_injection.kill_at_step={kill_at}",
                    cwd=tmp_path, env_data=data_dir, check=False)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    # killed mid-epoch, after at least one checkpoint: the folder reads as an unfinished run
    assert not (run / "metrics.json").exists()
    assert json.loads((run / "status.json").read_text())["status"] == "running"
    state = checkpoint.load(run / "last.pt")
    assert 0 < state["progress"]["step"] < kill_at and 0 < state["progress"]["batch"] < 24
    proc = ctrbench("train", *RUN, *overrides, resume_with(run), cwd=tmp_path, env_data=data_dir)
    return run, state["progress"]["step"], proc


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_run(tmp_path, data_dir):
    run, from_step, _ = killed_then_resumed(tmp_path, data_dir, [], kill_at=33, resume_with=lambda run: f"trainer.resume={run}")
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumed_at_steps"] == [from_step] == [30]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    metrics, history = uninterrupted(tmp_path, data_dir)
    assert_same_result(metrics, resumed)
    assert (run / "history.csv").read_text() == history


@pytest.mark.slow
def test_dien_dropout_dice_resume_auto_gives_the_same_run(tmp_path, data_dir):
    # DIEN's negative histories, the dropout regularizer's draws, Dice's moving statistics
    def auto(run):
        return "trainer.resume=auto"

    run, from_step, proc = killed_then_resumed(tmp_path, data_dir, [*DIEN, f"trainer.runs_dir={tmp_path}"], kill_at=28, resume_with=auto)
    assert f"continuing {run.resolve()}" in proc.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["resumed_at_steps"] == [from_step] == [27]
    metrics, history = uninterrupted(tmp_path, data_dir, *DIEN)
    assert_same_result(metrics, resumed)
    assert (run / "history.csv").read_text() == history


@pytest.mark.slow
def test_ctrl_c_saves_prints_the_resume_command_and_exits_130(tmp_path, data_dir):
    run = tmp_path / "ctrl-c"
    many = [*RUN, "trainer.max_steps=200", "trainer.max_epochs=20", "trainer.eval_every=50"]
    env = {**os.environ, "CTRBENCH_DATA_DIR": str(data_dir)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "ctrbench", "train", *many, f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    status = json.loads((run / "metrics.json").read_text())
    assert status["status"] == "interrupted" and 0 < status["checkpoint_step"] < 200
    assert f"saved in {run / 'last.pt'}" in err
    command = next(line for line in err.splitlines() if line.startswith("resume with: "))[len("resume with: "):]
    assert command == status["resume_command"] and f"trainer.resume={run}" in command
    args = shlex.split(command)
    assert args[:2] == ["ctrbench", "train"]
    ctrbench(*args[1:], cwd=tmp_path, env_data=data_dir)
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["steps"] == 200
    assert resumed["resumed_at_steps"] == [status["checkpoint_step"]]


@pytest.mark.slow
@pytest.mark.parametrize("closed", ["stdout", "stdout+stderr"])
def test_ctrl_c_with_a_closed_stdout_still_saves_and_exits_130(tmp_path, data_dir, closed):
    """`ctrbench train | tee log` (or `2>&1 | tee log`), then Ctrl-C: the terminal's SIGINT ends tee
    too, so the progress bar's last drawing (and any message) goes to a closed pipe. That ended the
    process (rich's SystemExit(1) on the broken pipe) with status.json still "running" and no
    metrics.json; the interrupt is handled all the same now."""
    run = tmp_path / "ctrl-c-piped"
    many = [*RUN, "trainer.max_steps=400", "trainer.max_epochs=40", "trainer.eval_every=100", "trainer.progress=true"]
    env = {**os.environ, "CTRBENCH_DATA_DIR": str(data_dir)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "ctrbench", "train", *many, f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read()
        proc.stdout.close()  # tee has gone: the pipe has no reader
        if closed == "stdout+stderr":
            proc.stderr.close()
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read() if closed == "stdout" else ""
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and 0 < metrics["checkpoint_step"] < 400
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    assert checkpoint.load(run / "last.pt")["progress"]["step"] == metrics["checkpoint_step"]
    if closed == "stdout":  # the terminal still shows where the state is and how to resume
        assert "Traceback" not in err and f"saved in {run / 'last.pt'}" in err
        assert f"resume with: {metrics['resume_command']}" in err


# ---- in process: the full state round trip, quickly --------------------------------------------
@pytest.mark.parametrize("overrides", [[], DIEN, [*DIEN, "trainer.sparse_embeddings=true"], ["model=lr", "optim=sgd", "trainer.grad_clip=5"]],
                         ids=["din", "dien-dropout-dice", "dien-row-adam", "lr-native-step"])  # Adam's row-wise step (row_adam.py); LR's native step (native_step.py)
def test_interrupt_then_resume_in_process(tmp_path, data_dir, overrides):
    metrics, history = uninterrupted(tmp_path, data_dir, *overrides)
    run = tmp_path / "run"
    run.mkdir()
    t = Trainer(cfg_for(data_dir, *RUN, *overrides, "trainer.fault_injection.interrupt_at_step=31"), run)
    t.setup()
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 31: the training state at step 31 is saved in .*\nresume with: ctrbench train .*trainer.resume="):
        t.fit()
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["checkpoint_step"] == 31
    torch.manual_seed(12345)  # whatever the process drew since, the resumed run restores its own RNG states
    again = Trainer(cfg_for(data_dir, *RUN, *overrides, f"trainer.resume={run}"), run)
    assert again.plan == "resume"
    again.setup()
    resumed = again.fit()
    assert_same_result(metrics, resumed)
    assert resumed["training_step"] == ("native_lr" if "model=lr" in overrides else "autograd")
    assert resumed["resumed_at_steps"] == [31]
    assert (run / "history.csv").read_text() == history


def test_batches_and_negatives_are_a_function_of_seed_epoch_and_position(tiny_dataset):
    def run(start, seed_noise):
        b = Batcher(tiny_dataset, "train", 100, 20, shuffle=True, bucket=5, seed=3, negative_history=True)
        b.set_epoch(2)
        torch.manual_seed(seed_noise)  # the global generator plays no part
        return [(idx, batch.neg_hist_item) for idx, batch in b.iterate(start)]

    full, tail = run(0, 1), run(7, 2)
    assert len(tail) == len(full) - 7
    for (i1, n1), (i2, n2) in zip(full[7:], tail):
        assert torch.equal(i1, i2) and torch.equal(n1, n2)


# ---- which runs can be resumed ----------------------------------------------------------------
def fake_run(path: Path, cfg, status: str | None = "running", pid: int | None = None, last: bool = True, metrics: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if last:
        (path / "last.pt").write_bytes(b"state")
    if status:
        (path / "status.json").write_text(json.dumps({"status": status, "pid": pid or 2**22 + 12345, "host": os.uname().nodename}))
    if metrics:
        (path / "metrics.json").write_text(json.dumps({"status": metrics}))
    return path


def test_same_config_ignores_only_what_cannot_change_a_result(tmp_path):
    a = cfg_for(tmp_path, "trainer.resume=auto", "trainer.progress=true", "trainer.checkpoint_every=7", "trainer.fault_injection.kill_at_step=3")
    b = cfg_for(tmp_path / "elsewhere")
    assert resume.comparable_config(a) == resume.comparable_config(b)
    c = cfg_for(tmp_path, "optim.lr=0.01")
    assert resume.config_differences(resume.comparable_config(b), resume.comparable_config(c)) == ["optim.lr: 0.001 -> 0.01"]


def test_resume_auto_picks_the_newest_unfinished_run_with_the_same_config(tmp_path, live_pid):
    cfg = cfg_for(tmp_path)
    old = fake_run(tmp_path / "outputs" / "a", cfg)
    newer = fake_run(tmp_path / "outputs" / "b", cfg, status="interrupted", metrics="interrupted")
    fake_run(tmp_path / "outputs" / "c", cfg, status="completed", metrics="completed")
    fake_run(tmp_path / "outputs" / "d", cfg_for(tmp_path, "seed=2"))
    fake_run(tmp_path / "outputs" / "e", cfg, pid=live_pid)  # its process is alive
    os.utime(old / "last.pt", (time.time() - 100, time.time() - 100))
    assert resume.find_unfinished(tmp_path / "outputs", cfg) == newer
    (newer / "last.pt").unlink()
    assert resume.find_unfinished(tmp_path / "outputs", cfg) == old
    assert resume.find_unfinished(tmp_path / "nowhere", cfg) is None


def test_resume_refuses_what_it_cannot_continue(tmp_path, live_pid):
    def plan(run, *extra):
        return resume.plan(cfg_for(tmp_path, f"trainer.resume={run}", *extra), run)

    cfg = cfg_for(tmp_path)
    with pytest.raises(DataError, match="no such run folder"):
        plan(tmp_path / "missing")
    other = fake_run(tmp_path / "other", cfg)
    with pytest.raises(ConfigError, match="continues in its own folder"):
        resume.plan(cfg_for(tmp_path, f"trainer.resume={other}"), tmp_path / "not-it")
    with pytest.raises(ConfigError, match=r"another config \(optim.lr: 0.001 -> 0.5\)"):
        plan(other, "optim.lr=0.5")
    done = fake_run(tmp_path / "done", cfg, status="completed", metrics="completed")
    with pytest.raises(ConfigError, match="already completed"):
        plan(done)
    assert resume.plan(cfg_for(tmp_path, "trainer.resume=auto"), done) == "completed"
    with pytest.raises(DataError, match="has no last.pt"):
        plan(fake_run(tmp_path / "early", cfg, last=False))
    with pytest.raises(ConfigError, match="still being trained by process"):
        plan(fake_run(tmp_path / "live", cfg, pid=live_pid))
    assert plan(other) == "resume"
    assert resume.plan(cfg_for(tmp_path, "trainer.resume=auto"), tmp_path / "fresh") == "fresh"


def test_cli_refuses_a_run_folder_in_a_multirun(tmp_path):
    proc = ctrbench("train", "-m", "seed=1,2", f"trainer.resume={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "trainer.resume=auto" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
