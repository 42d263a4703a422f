"""Fetching a dataset's official files: resumable, checked, atomic, and honest when offline.

A file is downloaded to ``<name>.part`` (continued with an HTTP Range request when a partial file
is there), its size and checksum compared with what the source publishes (when it does), then
renamed into place; a ``.zip`` is unpacked next to it. Without network, or for sources with no
direct download link, ``missing_files_error`` lists each file needed, where to put it and where to
get it.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ctrbench.atomic import atomic_path
from ctrbench.checksums import file_digest
from ctrbench.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    """One official file. ``url`` None: no direct link (a login page, say); ``page`` is where a
    person gets it. ``md5`` / ``size`` are checked when given."""

    name: str
    url: str | None
    page: str
    md5: str | None = None
    size: int | None = None
    md5_url: str | None = None  # where the source publishes the md5 (fetched with the file)


def missing_files_error(dataset: str, raw_dir: Path, needed: list[str], remotes: list[RemoteFile], why: str) -> DataError:
    lines = [f"dataset '{dataset}': {why}. Put these files in {raw_dir} (or point dataset.raw_dir at a folder that has them):"]
    lines += [f"  - {n}" for n in needed]
    lines.append("Where to get them:")
    for r in remotes:
        lines.append(f"  - {r.name}: {r.url or r.page}" + ("" if r.url else " (manual download)"))
    return DataError("\n".join(lines))


def _published_md5(url: str | None, timeout: float) -> str | None:
    """The hex digest in a published ``.md5`` file (``<digest>  <name>``), or None."""
    if url is None:
        return None
    with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "ctrbench"}), timeout=timeout) as r:
        words = r.read(4096).decode("ascii", "replace").split()
    digest = next((w.lower() for w in words if len(w) == 32 and all(c in "0123456789abcdefABCDEF" for c in w)), None)
    if digest is None:
        raise DataError(f"{url} does not hold an md5 digest")
    return digest


def fetch(remote: RemoteFile, raw_dir: Path, timeout: float = 30.0) -> Path:
    """Download ``remote`` into ``raw_dir`` (resuming a ``.part``); returns the final path.
    Raises ``urllib.error.URLError`` / ``OSError`` when the network is not there."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    if remote.url is None:
        raise DataError(f"{remote.name} has no direct download link; get it from {remote.page}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    final, part = raw_dir / remote.name, raw_dir / (remote.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "ctrbench"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        total = response.length + have if response.length is not None else remote.size
        with open(part, "ab" if have else "wb") as out, Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()
        ) as bar:
            task = bar.add_task(remote.name, total=total, completed=have)
            while block := response.read(1 << 20):
                out.write(block)
                bar.advance(task, len(block))
    if remote.size is not None and part.stat().st_size != remote.size:
        raise DataError(f"{part}: downloaded {part.stat().st_size:,} bytes, expected {remote.size:,}; run prepare again to resume")
    expected = remote.md5 or _published_md5(remote.md5_url, timeout)
    if expected is not None and file_digest(part, "md5") != expected:
        part.unlink()
        raise DataError(f"{remote.name}: the download does not match its published md5 {expected}; it was deleted, run prepare again")
    os.replace(part, final)
    if final.suffix == ".zip":
        unpack_zip(final, raw_dir)
    return final


def unpack_zip(path: Path, into: Path) -> None:
    """Unpack a zip archive into ``into`` (members keep their folders), atomically per member. Every
    member's path is checked first (as a path, not a string prefix: ``raw/ml-x`` is not inside
    ``raw/ml``), so an archive with one member outside ``into`` writes nothing."""
    root = into.resolve()
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            for member in members:
                if not (into / member.filename).resolve().is_relative_to(root):
                    raise DataError(f"{path}: member '{member.filename}' would unpack outside {into}; the archive is not unpacked")
            for member in members:
                target = (into / member.filename).resolve()
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with atomic_path(target) as tmp, z.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as e:
        raise DataError(f"{path} is not a valid zip archive ({e}); delete it and run prepare again") from None


def ensure(dataset: str, raw_dir: Path, found, needed: list[str], remotes: list[RemoteFile], allow_download: bool,
           absent: str = "the raw files are not there"):
    """``found()`` returns the input files when they are all in ``raw_dir`` (else None). When they
    are not, download ``remotes`` (if allowed) and look again; otherwise raise a DataError that
    lists what is needed. ``absent`` says what is missing (the first words of the message)."""
    files = found()
    if files is not None:
        return files
    if not allow_download:
        raise missing_files_error(dataset, raw_dir, needed, remotes, f"{absent} and dataset.download=false")
    if any(r.url is None for r in remotes):
        raise missing_files_error(dataset, raw_dir, needed, remotes, f"{absent} and cannot be downloaded automatically")
    try:
        for r in remotes:
            fetch(r, raw_dir)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise missing_files_error(dataset, raw_dir, needed, remotes, f"{absent} and the download failed ({e})") from None
    files = found()
    if files is None:
        raise missing_files_error(dataset, raw_dir, needed, remotes, "the downloaded files do not contain what was expected")
    return files
