"""Experiment tracking (``tracking=tensorboard|mlflow``, docs/tracking.md), read back with each
library's own reader: TensorBoard's event accumulator, MLflow's client on its SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_cli import ctrbench

FAST = ["+debug=fast", "device.threads=1"]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# ---- end to end ---------------------------------------------------------------------------------
def test_mlflow_sweep_in_a_sqlite_store_has_one_parent_and_a_child_per_job(tmp_path):
    pytest.importorskip("mlflow", reason="pip install 'ctrbench[mlflow]'")
    pytest.importorskip("sqlalchemy")
    db = tmp_path / "mlruns.db"
    sweep = tmp_path / "sweep"
    # the default launcher on CPU: joblib, the two jobs side by side in worker processes
    ctrbench("train", "-m", *FAST, "tracking=mlflow", f"tracking.uri=sqlite:///{db}", "seed=1,2", f"hydra.sweep.dir={sweep}",
             cwd=tmp_path)
    client = _client(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("ctrbench")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.run_name == sweep.name and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert json.loads((sweep / "mlflow_parent.json").read_text())["parents"][0]["run_id"] == parent.info.run_id
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    for child in children:
        run_dir = Path(child.data.tags["ctrbench.run_dir"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert child.info.status == "FINISHED"
        assert json.loads((run_dir / "tracking.json").read_text())["run_id"] == child.info.run_id
        # params: the flattened resolved config, the row and the seed included
        p = child.data.params
        assert p["seed"] == str(metrics["seed"]) and p["row_name"] == "null" and p["model.name"] == "din"
        assert p["trainer.batch_size"] == "64" and p["tracking.name"] == "mlflow" and len(p) > 60
        tags = child.data.tags
        assert (tags["model"], tags["act"], tags["reg"], tags["dataset"], tags["row"]) == ("din", "prelu", "none", "synthetic", "")
        # metrics with their steps: every validation (eval_every=10 of 20 steps), then the test split
        gauc = client.get_metric_history(child.info.run_id, "valid/gauc")
        assert [m.step for m in gauc] == [10, 20]
        history = (run_dir / "history.csv").read_text().splitlines()
        assert len(history) == 3
        assert child.data.metrics["test/gauc"] == pytest.approx(metrics["test"]["gauc"])
        assert child.data.metrics["valid_best/gauc"] == pytest.approx(metrics["valid_best"]["gauc"])
        assert {m.step for m in client.get_metric_history(child.info.run_id, "train/loss")} == {10, 20}
        assert "train/lr" in child.data.metrics and "train/samples_per_s" in child.data.metrics
        # the run folder's files as artifacts
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"metrics.json", "history.csv", "config.yaml"}


def test_tensorboard_sweep_writes_scalars_and_hparams_in_each_run_folder(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'ctrbench[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    sweep = tmp_path / "sweep"
    # the basic launcher: the jobs one after the other in this process, each with its helper process
    ctrbench("train", "-m", *FAST, "hydra/launcher=basic", "tracking=tensorboard", "tracking.log_every=5", "seed=1,2",
             f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    for job, seed in (("0", 1), ("1", 2)):
        run_dir = sweep / job
        assert list(run_dir.glob("events.out.tfevents.*")), "event files in the run folder"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        acc = EventAccumulator(str(run_dir))
        acc.Reload()
        scalars = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/lr", "train/samples_per_s", "valid/auc", "valid/gauc", "valid/logloss",
                "test/auc", "test/gauc", "test/logloss", "valid_best/gauc"} <= scalars
        assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20]  # every 5 steps (and at 10, 20: evaluations)
        assert [e.step for e in acc.Scalars("valid/gauc")] == [10, 20]
        assert acc.Scalars("test/gauc")[0].value == pytest.approx(metrics["test"]["gauc"], abs=1e-6)
        # the config as hparams (the plugin's session records), and how the run ended
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["seed"].number_value == seed
        assert start.hparams["model.name"].string_value == "din"
        assert start.hparams["row_name"].string_value == "null"
        assert start.hparams["trainer.batch_size"].number_value == 64
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == 1  # STATUS_SUCCESS
    # what `tensorboard --logdir <sweep>` loads: one run per job, each a hparams session
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(sweep))
    mux.Reload()
    sessions = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    assert set(sessions) == {"0", "1"} and all(metadata.SESSION_START_INFO_TAG in tags for tags in sessions.values())


def test_resume_continues_the_same_mlflow_run(tmp_path, monkeypatch):
    """Killed at step 15 (last.pt at step 10), resumed: one MLflow run (a file store here), its
    metric history without a step twice."""
    pytest.importorskip("mlflow", reason="pip install 'ctrbench[mlflow]'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # this test's own client (MLflow 3 asks for it)
    store = tmp_path / "mlruns"
    run_dir = tmp_path / "run"
    common = [*FAST, "tracking=mlflow", f"tracking.uri={store}", "tracking.log_every=5"]
    proc = ctrbench("train", *common, f"hydra.run.dir={run_dir}", "trainer.fault_injection.kill_at_step=15", cwd=tmp_path, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ctrbench("train", *common, f"trainer.resume={run_dir}", cwd=tmp_path)
    state = json.loads((run_dir / "tracking.json").read_text())
    client = _client(state["tracking_uri"])
    runs = client.search_runs([state["experiment_id"]])
    assert [r.info.run_id for r in runs] == [state["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["ctrbench.status"] == "completed"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/gauc")] == [10, 20]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [5, 10, 15, 20]
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_at_steps"] == [10]


def test_a_resumed_tensorboard_run_replaces_the_points_after_its_step(tmp_path):
    """A run killed after logging step 15, resumed from step 10: TensorBoard's reader keeps the
    killed run's points up to step 10 and the resumed run's from step 11 on."""
    pytest.importorskip("tensorboard", reason="pip install 'ctrbench[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ctrbench.tracking.base import RunInfo
    from ctrbench.tracking.tensorboard import TensorBoardTracker

    killed = TensorBoardTracker()
    killed.start(RunInfo(str(tmp_path), {"seed": 1}, resumed=False, step=0))
    for step in (5, 10, 15):
        killed.log_metrics(step, {"train/loss": 1.0})
    killed.finish("killed", None)
    resumed = TensorBoardTracker()
    resumed.start(RunInfo(str(tmp_path), {"seed": 1}, resumed=True, step=10))
    for step in (15, 20):
        resumed.log_metrics(step, {"train/loss": 2.0})
    resumed.finish("completed", {"steps": 20})
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(5, 1.0), (10, 1.0), (15, 2.0), (20, 2.0)]
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)  # one session: started once, ended once (success)
    assert metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG]).status == 1


BROKEN = """
from pathlib import Path


class BrokenTracker:
    def __init__(self, folder):
        self.folder = Path(folder)

    def start(self, run):
        (self.folder / "started").write_text(run.run_dir)

    def log_metrics(self, step, metrics):
        raise RuntimeError("the tracking server said no")

    def finish(self, status, metrics):
        (self.folder / "finished").write_text(status)
"""


def test_a_tracker_that_raises_is_logged_once_and_the_run_goes_on(tmp_path):
    (tmp_path / "broken_tracker.py").write_text(textwrap.dedent(BROKEN))
    run_dir = tmp_path / "run"
    proc = ctrbench("train", *FAST, "tracking.name=mine", "+tracking._target_=broken_tracker.BrokenTracker",
                    f"+tracking.folder={tmp_path}", "+tracking.log_every=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert (tmp_path / "started").read_text() == str(run_dir.resolve())
    assert not (tmp_path / "finished").exists()  # not called again after its first error
    log = (run_dir / "train.log").read_text()
    assert log.count("tracking=mine failed") == 1 and "the tracking server said no" in log
    assert "tracking=mine failed" in proc.stdout + proc.stderr


def test_a_bad_tracking_uri_in_the_helper_process_is_reported_once(tmp_path):
    """tracking=mlflow with a URI MLflow cannot use: the helper process reports the first error,
    the run logs it once and goes on (here without training: the hooks alone)."""
    pytest.importorskip("mlflow", reason="pip install 'ctrbench[mlflow]'")
    from ctrbench import tracking

    tr = tracking.for_run({"name": "mlflow", "_target_": "ctrbench.tracking.mlflow.MLflowTracker", "helper_process": True,
                           "log_every": 1, "uri": "nosuchscheme://nowhere"}, tmp_path)
    reports = []
    tr.report = reports.append
    progress = SimpleNamespace(step=0, epoch=0, running_loss=0.0, running_steps=0, samples=0, train_seconds=0.0, history=[])
    clock = SimpleNamespace(elapsed=lambda: 1.0)
    scheduler = SimpleNamespace(get_last_lr=lambda: [0.1])
    tr.open()
    tr.start({"seed": 1, "model": {"name": "din"}}, progress, resumed=False)
    for step in (1, 2, 3):
        progress.step, progress.running_loss, progress.running_steps, progress.samples = step, 0.5 * step, step, 10 * step
        tr.step(progress, clock, scheduler)
    tr.finish("completed", {"steps": 3, "test": {"auc": 0.5}})
    assert len(reports) == 1 and "start" in reports[0], reports
    assert "Traceback" in (tmp_path / "tracking.log").read_text()  # the details, in the run folder


@pytest.mark.parametrize("group, module", [("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_a_tracker_that_is_not_installed_is_a_one_line_error_naming_the_extra(tmp_path, group, module):
    env = dict(os.environ, CTRBENCH_DATA_DIR=str(tmp_path / "data"))
    env.pop("HYDRA_FULL_ERROR", None)
    code = (f"import sys; sys.modules[{module!r}] = None; from ctrbench.cli import main; "
            f"sys.exit(main(['train', '+debug=fast', 'tracking={group}', 'hydra.run.dir=run']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"pip install 'ctrbench[{group}]'" in lines[0] and f"tracking={group}" in lines[0], proc.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


# ---- the hooks ----------------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.calls = []

    def call(self, method, *args):
        self.calls.append((method, *args))

    def close(self, timeout):
        self.calls.append(("close",))


def _hooks(every: int):
    from ctrbench import tracking

    tr = tracking.for_run({"name": "rec", "_target_": "test_tracking.Recorder", "log_every": every}, Path("."))
    tr.backend = Recorder()
    return tr


def test_training_points_are_means_since_the_last_point_from_the_loops_running_sum():
    tr = _hooks(every=2)
    p = SimpleNamespace(step=0, epoch=0, running_loss=0.0, running_steps=0, samples=0, train_seconds=0.0, history=[])
    clock = SimpleNamespace(elapsed=lambda: p.step * 0.5)
    scheduler = SimpleNamespace(get_last_lr=lambda: [0.01])
    tr.start({"seed": 1}, p, resumed=False)
    losses = [1.0, 3.0, 5.0, 7.0, 9.0]
    for loss in losses:
        p.step += 1
        p.running_loss += loss
        p.running_steps += 1
        p.samples += 10
        tr.step(p, clock, scheduler)
        if p.step == 3:  # an evaluation, then the loop resets its running loss
            p.history.append({"step": 3, "valid_gauc": 0.7, "valid_auc": 0.6})
            tr.evaluated(p, clock, scheduler)
            p.running_loss, p.running_steps = 0.0, 0
    points = [(c[1], c[2]) for c in tr.backend.calls if c[0] == "log_metrics"]
    assert [s for s, _ in points] == [2, 3, 4]
    assert points[0][1]["train/loss"] == 2.0  # steps 1-2
    assert points[1][1]["train/loss"] == 5.0 and points[1][1]["valid/gauc"] == 0.7  # step 3, at the evaluation
    assert points[2][1]["train/loss"] == 7.0  # step 4 (the running sum restarted after the evaluation)
    assert points[0][1]["train/samples_per_s"] == pytest.approx(20.0) and points[0][1]["train/lr"] == 0.01


def test_only_rank_0_tracks_and_none_costs_nothing():
    from ctrbench import tracking

    tr = _hooks(every=1)
    tr.backend = None
    tr.open(main=False)
    assert tr.backend is None and tr.done
    assert tracking.for_run({"name": "none"}, Path(".")) is tracking.NO_TRACKING
    assert tracking.for_run(None, Path(".")) is tracking.NO_TRACKING


@pytest.mark.parametrize("overrides, message", [
    (["tracking=tensorboard", "tracking.log_every=0"], "tracking.log_every=0 is invalid"),
    (["tracking.name=x", "+tracking._target_=no_such_module.Tracker"], "tracking._target_=no_such_module.Tracker: cannot be imported"),
])
def test_bad_tracking_settings_are_one_line_errors(tmp_path, overrides, message):
    proc = ctrbench("train", *FAST, *overrides, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_every_tracking_option_composes_and_is_checked():
    from conftest import compose_train

    from ctrbench import tracking
    from ctrbench.cli import config_groups
    from ctrbench.config_checks import check_train

    assert set(config_groups()["tracking"]) == {"none", "tensorboard", "mlflow"}
    assert compose_train().tracking.name == "none"
    for option in config_groups()["tracking"]:
        cfg = compose_train(f"tracking={option}")
        check_train(cfg)
        tr = tracking.for_run(cfg.tracking, Path("."))
        assert (tr is tracking.NO_TRACKING) == (option == "none")
        if option != "none":
            assert tr.every == 100 and tr.helper
