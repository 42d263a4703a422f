"""``tracking=mlflow``: one MLflow run per ctrbench run (``pip install 'ctrbench[mlflow]'``).

Through ``MlflowClient`` (no global "active run"), against ``tracking.uri``: a SQLite database
(``sqlite:///mlruns.db``, no server), a folder (MLflow's file store), a tracking server
(``http://host:5000``), or MLflow's default when null (``MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in MLflow 3). A relative SQLite path or folder is made absolute once, so every
job of a sweep and a resumed run use the same store wherever they run from.

The run gets params (the flattened resolved config, ``row_name`` and ``seed`` included), tags
(``model``, ``act``, ``reg``, ``dataset``, ``row``, ``experiment``, ``seed``, the run folder),
metrics with their steps, and at the end ``metrics.json``, ``history.csv`` and ``config.yaml`` as
artifacts and its status (FINISHED, FAILED or KILLED). Its ids are kept in ``RUN_DIR/tracking.json``:
a resumed run (``trainer.resume``) continues the same MLflow run, and the points the killed run had
already logged past the resumed step are not logged twice.

Sweeps: the jobs of one multirun are children (``mlflow.parentRunId``) of one parent run named after
the sweep folder. The first job to get there creates it, under a lock, and writes its id into
``SWEEP_DIR/mlflow_parent.json``, where the others (in this process or in joblib's worker processes)
find it; when the sweep ends, the CLI's sweep callback marks it FINISHED (FAILED when a job failed).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ctrbench.tracking.base import RunInfo, flatten_config

STATE_FILE = "tracking.json"  # in the run folder
PARENT_FILE = "mlflow_parent.json"  # in the sweep folder
PARAM_MAX = 500  # characters of a param value (the limit of older MLflow servers)
ARTIFACTS = ("metrics.json", "history.csv", "config.yaml")
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "killed": "KILLED"}
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _scheme(uri: str | None) -> str:
    if uri is None:
        return ""
    head, sep, _ = str(uri).partition("://")
    if sep:
        return head.split("+", 1)[0].lower()
    return "file" if str(uri).startswith("file:") else ""


def normalize_uri(uri: str | None) -> str:
    """The tracking URI with a relative SQLite path or store folder made absolute."""
    import mlflow

    uri = str(uri) if uri else mlflow.get_tracking_uri()
    scheme = _scheme(uri)
    if scheme == "sqlite" and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            return "sqlite:///" + str(Path(path).resolve())
    if scheme == "file" or (not scheme and "://" not in uri and not uri.startswith(("databricks", "uc"))):
        path = uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):] if uri.startswith("file:") else uri
        return Path(path).resolve().as_uri()
    return uri


def _allow_file_store(uri: str) -> None:
    """MLflow 3 refuses its file store unless asked: asking for a folder is asking for it."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _store_lock(uri: str, sweep_dir: str | None):
    """Serialise what a sweep's jobs must do once: a new SQLite database's tables (the first
    client creates them), the experiment, the sweep's parent run."""
    from ctrbench.locks import held_lock

    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if str(db) != ":memory:":
            return held_lock(db.with_name(f".{db.name}.ctrbench-lock"), f"the MLflow database '{db}'", 600.0)
    if sweep_dir:
        return held_lock(Path(sweep_dir) / ".mlflow_parent.lock", "the sweep's MLflow parent run", 600.0)
    return contextlib.nullcontext()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    from ctrbench.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))


class MLflowTracker:
    """Logs one ctrbench run as one MLflow run (see the module's docstring)."""

    @classmethod
    def requirements(cls, uri: str | None = None, **kwargs) -> dict[str, str]:
        """Module -> the ctrbench extra that installs it (a database store needs SQLAlchemy)."""
        needs = {"mlflow": "mlflow"}
        if uri is None or _scheme(uri) in _DB_SCHEMES:
            needs |= {"sqlalchemy": "mlflow", "alembic": "mlflow"}
        return needs

    def __init__(self, uri: str | None = None, experiment: str = "ctrbench", artifact_location: str | None = None,
                 run_name: str | None = None) -> None:
        import mlflow  # noqa: F401 - the import that takes seconds: done when the tracker is built
        from mlflow.tracking import MlflowClient

        self._client_cls = MlflowClient
        self.uri = uri
        self.experiment = str(experiment or "ctrbench")
        self.artifact_location = artifact_location
        self.run_name = run_name
        self.client = None
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self.skip_until = -1  # a resumed run: steps the killed run had already logged

    # ---- start ----------------------------------------------------------------------------------
    def start(self, run: RunInfo) -> None:
        self.run_dir = Path(run.run_dir)
        state = _read_json(self.run_dir / STATE_FILE) if run.resumed else None
        if state and state.get("run_id") and state.get("tracking_uri"):
            self._continue(state)
            return
        uri = normalize_uri(self.uri)
        _allow_file_store(uri)
        with _store_lock(uri, run.sweep_dir):
            self.client = self._client_cls(tracking_uri=uri)  # (a new SQLite database gets its tables here)
            experiment_id = self._experiment_id()
            parent = self._parent_run(uri, experiment_id, run.sweep_dir) if run.sweep_dir else None
        config = run.config
        tags = run_tags(config, run)
        if parent:
            tags["mlflow.parentRunId"] = parent
        created = self.client.create_run(experiment_id, tags=tags, run_name=self.run_name or run_name(config))
        self.run_id = created.info.run_id
        _write_json(self.run_dir / STATE_FILE, {
            "tracker": "mlflow", "tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id,
            "parent_run_id": parent, "artifact_uri": created.info.artifact_uri,
        })
        self._log_params(config)

    def _continue(self, state: dict) -> None:
        """A resumed run: the MLflow run of tracking.json, RUNNING again."""
        uri = str(state["tracking_uri"])
        _allow_file_store(uri)
        with _store_lock(uri, None):
            self.client = self._client_cls(tracking_uri=uri)
        self.run_id = str(state["run_id"])
        self.client.update_run(self.run_id, status="RUNNING")
        steps = [m.step for key in ("train/loss", "train/lr") for m in self.client.get_metric_history(self.run_id, key)]
        self.skip_until = max(steps, default=-1)

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException:  # another job created it first
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _parent_run(self, uri: str, experiment_id: str, sweep_dir: str) -> str:
        """The sweep's parent run in this store and experiment: found in the sweep folder, or made."""
        path = Path(sweep_dir) / PARENT_FILE
        record = _read_json(path) or {}
        parents = [p for p in record.get("parents", []) if isinstance(p, dict)]
        for p in parents:
            if p.get("tracking_uri") == uri and str(p.get("experiment_id")) == str(experiment_id) and p.get("run_id"):
                return str(p["run_id"])
        name = Path(sweep_dir).name
        parent = self.client.create_run(experiment_id, run_name=name, tags={"ctrbench.sweep_dir": str(sweep_dir), "ctrbench.kind": "sweep"})
        parents.append({"tracking_uri": uri, "experiment_id": experiment_id, "run_id": parent.info.run_id})
        _write_json(path, {"parents": parents})
        return parent.info.run_id

    def _log_params(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, _param_value(v)) for k, v in flatten_config(config).items()]
        self.client.log_batch(self.run_id, params=params)

    # ---- metrics and the end --------------------------------------------------------------------
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if step <= self.skip_until:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, int(step)) for k, v in metrics.items()])

    def finish(self, status: str, metrics: dict | None) -> None:
        if self.run_id is None:
            return
        for name in ARTIFACTS:
            path = self.run_dir / name
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_tag(self.run_id, "ctrbench.status", status)
        self.client.set_terminated(self.run_id, _STATUS.get(status, "FAILED"))
        self.run_id = None


def _param_value(v) -> str:
    text = "null" if v is None else ("true" if v is True else "false" if v is False else str(v))
    return text if len(text) <= PARAM_MAX else text[: PARAM_MAX - 3] + "..."


def run_name(config: dict) -> str:
    """``din_dice-seed1`` (a published table's row), else ``din-prelu-none-seed1``."""
    name = lambda group: str((config.get(group) or {}).get("name", group))  # noqa: E731
    row = config.get("row_name")
    head = str(row).rsplit("/", 1)[-1] if row else f"{name('model')}-{name('act')}-{name('reg')}"
    return f"{head}-seed{config.get('seed')}"


def run_tags(config: dict, run: RunInfo) -> dict[str, str]:
    tags = {group: str((config.get(group) or {}).get("name", "")) for group in ("model", "act", "reg", "dataset")}
    tags["row"] = str(config.get("row_name") or "")
    tags["experiment"] = str(config.get("experiment_name") or "")
    tags["seed"] = str(config.get("seed"))
    tags["ctrbench.run_dir"] = run.run_dir
    if run.sweep_dir:
        tags["ctrbench.sweep_dir"] = run.sweep_dir
        tags["ctrbench.job"] = str(run.job)
    return tags


def end_sweep(sweep_dir: Path, failed: bool) -> None:
    """Mark the sweep's parent runs (``mlflow_parent.json``) FINISHED, or FAILED when a job failed."""
    record = _read_json(Path(sweep_dir) / PARENT_FILE)
    if not record:
        return
    from mlflow.tracking import MlflowClient

    for p in record.get("parents", []):
        uri = str(p["tracking_uri"])
        _allow_file_store(uri)
        with _store_lock(uri, None):
            client = MlflowClient(tracking_uri=uri)
        client.set_terminated(str(p["run_id"]), "FAILED" if failed else "FINISHED")
