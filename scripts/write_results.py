"""Write a results page for docs/results/: the `ctrbench table` report of a sweep, headed by the
exact command that produced the runs, the commit, the machine and the date.

    python scripts/write_results.py outputs/multirun/<date_time> docs/results/din_table3_synthetic.md \
        --title "DIN Table 3 on the synthetic default" \
        --command "ctrbench train -m +experiment=din_table3 seed=1,2,3"
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run or multirun folders")
    ap.add_argument("out", help="the Markdown page to write")
    ap.add_argument("--title", required=True)
    ap.add_argument("--command", required=True, help="the command that produced the runs")
    ap.add_argument("--note", default="", help="a paragraph to add under the header")
    ap.add_argument("--commit", default=None, help="the commit the runs were made with (default: HEAD)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.md"
        subprocess.run(
            [sys.executable, "-m", "ctrbench", "table", *args.runs, "format=markdown", f"output={table}"],
            check=True, capture_output=True, text=True,
        )
        body = table.read_text()
    header = [
        f"# {args.title}",
        "",
        f"- command: `{args.command}`, then `ctrbench table <that multirun folder> format=markdown`",
        f"- commit: `{args.commit or _commit()}` (the code the runs were made with); page written {time.strftime('%Y-%m-%d')}",
        f"- machine: {_machine()}",
        "",
    ]
    if args.note:
        header += [args.note, ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header) + body)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
