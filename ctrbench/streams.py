"""Output to a terminal or pipe that may be gone.

``ctrbench train ... | tee log`` and then Ctrl-C: the terminal sends SIGINT to tee too, tee exits,
and every later write to ctrbench's stdout fails (``BrokenPipeError``; rich's console then raises
``SystemExit(1)``). A closed stdout or stderr must not stop what ctrbench does next (save the
training state, write ``metrics.json`` and ``status.json``, exit 130): ``say`` writes a message and,
when the stream is closed, points it at ``os.devnull`` and goes on; ``tolerate_closed_stdout``
makes rich's console (the log lines, tables and progress bar) do the same. What is logged still
goes to the run's log file.
"""

from __future__ import annotations

import contextlib
import os
import sys


def _to_devnull(stream) -> None:
    """Point ``stream``'s file descriptor at ``os.devnull`` (so its buffered text and later writes,
    and the interpreter's flush at exit, succeed) and drop what it still holds."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def say(text: str, stream=None) -> None:
    """Write ``text`` to ``stream`` (default: stderr) and flush it. A stream whose reader has gone
    (a broken pipe, a hung-up terminal) or that was closed is not an error: the text is dropped."""
    stream = sys.stderr if stream is None else stream
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except ValueError:  # closed
        pass
    except OSError:
        _to_devnull(stream)


def flush_quietly() -> None:
    """Flush stdout and stderr; a closed one is pointed at ``os.devnull`` (else the interpreter's
    own flush at exit fails and turns the exit status into 120)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except ValueError:
            pass
        except OSError:
            _to_devnull(stream)


def tolerate_closed_stdout() -> None:
    """Make rich's shared console (what ctrbench prints and logs through) go quiet when its output
    is closed, instead of ending the process (rich's default: ``SystemExit(1)``)."""
    from rich import get_console

    console = get_console()

    def on_broken_pipe() -> None:
        console.quiet = True
        _to_devnull(console.file)

    console.on_broken_pipe = on_broken_pipe


def fail(command: str, message: str, code: int = 2, prefix: str = "error: ") -> None:
    """Print ``ctrbench <command>: error: <message>`` (a closed stderr is not a second error) and
    exit with ``code``."""
    say(f"ctrbench {command}: {prefix}{message}\n")
    flush_quietly()  # a closed stdout must not turn the exit status into 120 at the interpreter's exit
    raise SystemExit(code)
