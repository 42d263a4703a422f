"""``tracking=tensorboard``: TensorBoard event files in the run folder (``pip install 'ctrbench[tensorboard]'``).

Scalars: ``train/loss`` (every ``tracking.log_every`` steps and at each evaluation: the mean since
the previous point), ``train/lr``, ``train/samples_per_s``, ``train/epoch``, ``valid/*`` at each
evaluation, and at the end ``test/*``, ``valid_best/*`` and ``run/*`` (throughput, memory).

HParams: each run writes the hparams plugin's session start (the flattened resolved config as
hyperparameters, at the start) and session end (success or failure; none for an interrupted run, which
can be resumed) records, and no
experiment record: TensorBoard then builds the HParams view from all the runs under its
``--logdir``, the union of their hyperparameters (a sweep over models whose configs differ keeps
every column) and, as metrics, their scalars (``test/gauc`` ...). So ``tensorboard --logdir
outputs/multirun/<sweep>`` compares the sweep's jobs, one run per job folder.

A resumed run writes a new event file in the same folder that starts with a session-start record at
the step after the one it resumes from (what ``SummaryWriter(purge_step=...)`` writes): TensorBoard
drops the points the killed run had written from there on, which the resumed run writes again.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from ctrbench.tracking.base import RunInfo, flatten_config

# the hparams plugin's session status of each way a run ends
# (an interrupted or killed run writes none: it can be resumed, and TensorBoard keeps the first
# session end record of a run)
_STATUS = {"completed": "STATUS_SUCCESS", "failed": "STATUS_FAILURE"}


class TensorBoardTracker:
    """Writes the run's scalars and hparams records with TensorBoard's own event file writer (the
    one ``torch.utils.tensorboard.SummaryWriter`` wraps; without importing torch, the helper
    starts on about 0.9 s of CPU instead of 2.5 s)."""

    @classmethod
    def requirements(cls, **kwargs) -> dict[str, str]:
        """Module -> the ctrbench extra that installs it."""
        return {"tensorboard": "tensorboard"}

    def __init__(self, flush_secs: int = 30, log_dir: str | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._pb = SimpleNamespace(Event=Event, SessionLog=SessionLog, Summary=Summary, Writer=EventFileWriter)
        self.flush_secs = int(flush_secs)
        self.log_dir = log_dir
        self.writer = None

    def _add(self, step: int, **fields) -> None:
        self.writer.add_event(self._pb.Event(wall_time=time.time(), step=int(step), **fields))

    def start(self, run: RunInfo) -> None:
        pb = self._pb
        log_dir = Path(self.log_dir or run.run_dir)
        earlier = log_dir.is_dir() and any(log_dir.glob("events.out.tfevents.*"))  # (a run resumed with tracking just switched on has none)
        self.writer = pb.Writer(str(log_dir), max_queue_size=100, flush_secs=self.flush_secs)
        if run.resumed and earlier:
            # TensorBoard drops the points of earlier event files from this step on: those the
            # killed run wrote after the step it is resumed from, which the resumed run writes again
            self._add(run.step + 1, session_log=pb.SessionLog(status=pb.SessionLog.START))
        else:
            self._add(0, summary=session_start(flatten_config(run.config)))
        self.writer.flush()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        Value = self._pb.Summary.Value
        self._add(step, summary=self._pb.Summary(value=[Value(tag=tag, simple_value=float(v)) for tag, v in metrics.items()]))

    def finish(self, status: str, metrics: dict | None) -> None:
        if self.writer is None:
            return
        if status in _STATUS:
            self._add(int((metrics or {}).get("steps") or 0), summary=session_end(status))
        self.writer.close()
        self.writer = None


def _hparam_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"  # a column of two values, not a 0..1 range
    if isinstance(v, (int, float)):
        return v
    return "null" if v is None else str(v)


def _plugin_summary(tag: str, data):
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME

    data.version = PLUGIN_DATA_VERSION
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def session_start(hparams: dict):
    """The hparams plugin's session start record: the run's hyperparameters."""
    from tensorboard.plugins.hparams.metadata import SESSION_START_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionStartInfo

    info = SessionStartInfo(start_time_secs=time.time())
    for name, raw in hparams.items():
        v = _hparam_value(raw)
        if isinstance(v, str):
            info.hparams[name].string_value = v
        else:
            info.hparams[name].number_value = float(v)
    return _plugin_summary(SESSION_START_INFO_TAG, HParamsPluginData(session_start_info=info))


def session_end(status: str):
    """The hparams plugin's session end record: how the run ended."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    info = SessionEndInfo(status=Status.Value(_STATUS[status]), end_time_secs=time.time())
    return _plugin_summary(SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=info))
