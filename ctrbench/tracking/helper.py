"""The tracker's helper process (``tracking.helper_process=true``, as ``tracking=tensorboard|mlflow``).

Importing MLflow takes about 3 s of CPU (5-11 s of wall time on a busy 2-core machine;
TensorBoard's writer about 1 s), a new SQLite store seconds more, and a tracking server can be slow
to answer: in the training process, both would stop training (a thread would not
help: its Python work holds the GIL the training step needs at every op). So the tracker runs in
``python -m ctrbench.tracking.helper RUN_DIR``, started at set-up, which imports it while the data
load and the first steps run. The run sends it one JSON line per call on its stdin, from a writer
thread, so a training step never waits on the pipe; the helper answers on its stdout with the first
error (the run logs it once) and writes its own log, the tracker library's included, to
``RUN_DIR/tracking.log`` (deleted when empty).

The helper holds the lock ``RUN_DIR/.tracking.lock`` while it lives, so the helper of a resumed run
waits for the one of the killed run to finish writing (e.g. ``tracking.json``) before it looks.
When its stdin closes without a ``finish`` (the run was killed), it finishes the tracked run as
``killed``. It ignores Ctrl-C: the run tells it how the run ended.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import types
import weakref
from pathlib import Path

from ctrbench.tracking.base import Guarded, RunInfo, instantiate_tracker

LOG_FILE = "tracking.log"
LOCK_FILE = ".tracking.lock"


class HelperProcess:
    """The run's side: forwards the calls to the helper process; never blocks a training step."""

    def __init__(self, target: str, kwargs: dict, run_dir: Path, report) -> None:
        self.log_path = Path(run_dir) / LOG_FILE
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.proc = None
        report_ref = weakref.WeakMethod(report) if isinstance(report, types.MethodType) else (lambda: report)
        env = dict(os.environ)
        paths = [p for p in (os.environ.get("PYTHONPATH", ""), os.getcwd()) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)  # a user's tracker module, importable from here
        env["PYTHONUNBUFFERED"] = "1"
        try:
            with open(self.log_path, "ab") as log_file:  # an append-only log, not a result file: tracking.log
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "ctrbench.tracking.helper", str(run_dir)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=env,
                    text=True, encoding="utf-8", close_fds=True,
                )
        except OSError as e:
            report(f"could not start the tracker's helper process: {e}")
            return
        self.queue.put({"target": target, "kwargs": kwargs})
        self.writer = threading.Thread(target=_write, args=(self.queue, self.proc.stdin, report_ref),
                                       name="ctrbench-tracking-writer", daemon=True)
        self.reader = threading.Thread(target=_read, args=(self.proc.stdout, report_ref),
                                       name="ctrbench-tracking-reader", daemon=True)
        self.writer.start()
        self.reader.start()
        # a run dropped without finish (its set-up failed): the helper sees its stdin close and exits
        weakref.finalize(self, self.queue.put, None)

    def call(self, method: str, *args) -> None:
        if self.proc is not None:
            self.queue.put({"call": method, "args": list(args)})

    def close(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the helper to finish; then stop it."""
        if self.proc is None:
            return
        self.queue.put(None)
        deadline = time.monotonic() + timeout
        self.writer.join(max(0.0, deadline - time.monotonic()))
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            logging.getLogger("ctrbench").warning(
                f"tracking: the tracker had not finished writing {timeout:g} s after the run ended "
                f"(tracking.finish_timeout): stopped; what it had not written is lost"
            )
        self.reader.join(5)
        try:
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()
        except OSError:
            pass


def _write(q: queue.SimpleQueue, pipe, report_ref) -> None:
    while True:
        msg = q.get()
        if msg is None:
            break
        try:
            pipe.write(json.dumps(msg, default=str) + "\n")
            pipe.flush()
        except (OSError, ValueError) as e:  # the helper has gone
            report = report_ref()
            if report is not None:
                report(f"the tracker's helper process stopped ({type(e).__name__}: {e})")
            break
    try:
        pipe.close()
    except (OSError, ValueError):
        pass


def _read(pipe, report_ref) -> None:
    try:
        for line in pipe:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("error"):
                report = report_ref()
                if report is not None:
                    report(str(msg["error"]))
    except (OSError, ValueError):
        pass


# ---- the helper process ---------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run says how it ended (Ctrl-C: interrupted)
    run_dir = Path(argv[1])
    reply = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to tracking.log, not into the reply channel
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("ctrbench.tracking").setLevel(logging.DEBUG)  # tracebacks of tracker errors

    def report(message: str) -> None:
        reply.write(json.dumps({"error": message}) + "\n")

    from ctrbench.locks import held_lock

    try:
        with held_lock(run_dir / LOCK_FILE, "the tracker of this run folder", 600.0,
                       why="the helper of an earlier run in this folder is still writing"):
            serve(sys.stdin, report)
    except Exception as e:  # noqa: BLE001
        report(f"{type(e).__name__}: {e}")
        return 1
    finally:
        reply.close()
    return 0


def serve(lines, report) -> None:
    """Build the tracker from the first line, then make each line's call (``{"call", "args"}``)."""
    head = lines.readline()
    if not head:
        return
    first = json.loads(head)
    guard = Guarded(lambda: instantiate_tracker(first["target"], first["kwargs"]), report)
    guard.call(None)  # build it now (its imports), before training sends anything
    started = finished = False
    for line in lines:
        msg = json.loads(line)
        method, args = msg["call"], list(msg.get("args") or [])
        if method == "start":
            args[0] = RunInfo(**args[0])
            started = True
        elif method == "finish":
            finished = True
        guard.call(method, *args)
    if started and not finished:  # stdin closed without finish: the run was killed
        guard.call("finish", "killed", None)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: everything is written and flushed by now, and
    tearing down MLflow's modules takes seconds (2.5 s measured) that the run would wait for."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main(sys.argv))
