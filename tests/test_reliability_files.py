"""Reliability of what ctrbench writes (docs/reliability.md, part 3): every file is written to a
temporary name and renamed into place, so a kill or a full disk mid-write leaves the old complete
file; processed datasets and checkpoints carry checksums, a damaged cache is rebuilt and a
damaged checkpoint is refused with a message that names the file, the expected and the found
digest."""

from __future__ import annotations

import ast
import errno
import logging
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_dataset_cfg

from ctrbench import atomic
from ctrbench.atomic import atomic_path, atomic_write_text
from ctrbench.data import store
from ctrbench.data.prepare import load_dataset, prepare
from ctrbench.errors import CorruptFile, DataError, UserError, WriteFailed
from ctrbench.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left beside the targets."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


# ---- atomic writes: an interrupted write leaves the old complete file -------------------------


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_write_interrupted_midway_keeps_the_old_file(tmp_path, interrupt):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, '{"old": true}')
    with pytest.raises(interrupt), atomic_path(target) as tmp, open(tmp, "w") as f:
        f.write('{"new": tr')  # half of the new content
        f.flush()
        raise interrupt()
    assert target.read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


def test_sigkill_during_a_slow_write_keeps_the_old_file(tmp_path):
    """A process SIGKILLed while it writes (no cleanup code runs) leaves the old file whole; only
    an unused temporary file remains beside it."""
    target = tmp_path / "history.csv"
    old = "step,valid_gauc\n" + "".join(f"{i},0.5\n" for i in range(1000))
    atomic_write_text(target, old)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ctrbench.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write("step,valid_gauc\\n1,0.")
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
                f.write("7\\n")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == old
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(".history.csv.") and stale[0].endswith(".tmp")


def _half_then(exc: BaseException):
    """A ``torch.save`` that writes half of the real bytes, then raises ``exc``."""
    real = torch.save

    def fake(payload, path, *a, **kw):
        real(payload, path, *a, **kw)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise exc

    return fake


def test_checkpoint_interrupted_midway_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"step": 10, "w": torch.arange(1000.0)})
    monkeypatch.setattr(checkpoint.torch, "save", _half_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(ckpt, {"step": 20, "w": torch.zeros(1000)})
    monkeypatch.undo()
    state = checkpoint.load(ckpt)
    assert state["step"] == 10 and torch.equal(state["w"], torch.arange(1000.0))
    assert leftovers(tmp_path) == []


class Killed(BaseException):
    """Stands for a kill at a chosen point (nothing after it runs)."""


@pytest.mark.parametrize("point", ["before_rename", "after_rename"])
def test_checkpoint_and_checksum_stay_consistent_at_every_kill_point(tmp_path, monkeypatch, point):
    """The checkpoint and its sidecar are two files: a kill between their writes must still leave
    a checkpoint that its sidecar accepts (the old one before the rename, the new one after)."""
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"step": 1})
    real_replace, real_write = atomic.os.replace, checkpoint.atomic_write_text
    if point == "before_rename":
        def replace(src, dst):
            if Path(dst) == ckpt:
                raise Killed()
            return real_replace(src, dst)
        monkeypatch.setattr(atomic.os, "replace", replace)
    else:
        calls = []

        def write(path, text):
            calls.append(path)
            if len(calls) == 2:  # the final rewrite of the sidecar, after the rename
                raise Killed()
            return real_write(path, text)
        monkeypatch.setattr(checkpoint, "atomic_write_text", write)
    with pytest.raises(Killed):
        checkpoint.save(ckpt, {"step": 2})
    monkeypatch.undo()
    assert checkpoint.load(ckpt)["step"] == (1 if point == "before_rename" else 2)
    checkpoint.save(ckpt, {"step": 3})  # the next save goes back to one accepted digest
    assert checkpoint.load(ckpt)["step"] == 3
    assert len(checkpoint.sidecar(ckpt).read_text().splitlines()) == 1


# ---- a full disk -------------------------------------------------------------------------------


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"step": 10})
    before = (ckpt.read_bytes(), checkpoint.sidecar(ckpt).read_bytes())
    monkeypatch.setattr(checkpoint.torch, "save", _half_then(enospc()))
    with pytest.raises(WriteFailed) as info:
        checkpoint.save(ckpt, {"step": 20})
    msg = str(info.value)
    assert f"cannot write '{ckpt}'" in msg and "No space left on device" in msg and "ENOSPC" in msg
    assert "the previous 'best.pt' is unchanged" in msg and len(msg.splitlines()) == 1
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert isinstance(info.value, UserError)  # the CLI prints it as one line, exit status 2
    monkeypatch.undo()
    assert (ckpt.read_bytes(), checkpoint.sidecar(ckpt).read_bytes()) == before
    assert checkpoint.load(ckpt)["step"] == 10
    assert leftovers(tmp_path) == []


def test_text_file_on_a_full_disk(tmp_path, monkeypatch):
    """fsync can report ENOSPC too (NFS, thin volumes): same outcome for metrics.json & co."""
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def full(path):
        raise enospc()

    monkeypatch.setattr(atomic, "fsync_file", full)
    with pytest.raises(WriteFailed, match=r"cannot write .*metrics\.json.*No space left on device \[ENOSPC\]; the previous"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    # a target that did not exist yet: nothing is written
    with pytest.raises(WriteFailed, match="nothing was written"):
        atomic_write_text(tmp_path / "results.md", "x")
    assert not (tmp_path / "results.md").exists() and leftovers(tmp_path) == []


def test_processed_dataset_on_a_full_disk(tmp_path, monkeypatch):
    """A disk that fills while a dataset is written: no folder, no temporary folder, a one-line
    error; the next prepare (with space again) builds it."""
    cfg = tiny_dataset_cfg(seed=31)
    real = store.pq.write_table
    calls = []

    def write_table(table, where, **kw):
        calls.append(where)
        if len(calls) == 3:
            Path(where).write_bytes(b"PAR1 half")
            raise enospc()
        return real(table, where, **kw)

    monkeypatch.setattr(store.pq, "write_table", write_table)
    with pytest.raises(WriteFailed, match="No space left on device") as info:
        prepare(cfg, tmp_path)
    assert len(str(info.value).splitlines()) == 1
    processed = tmp_path / "processed"
    assert [p.name for p in processed.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    path, built = prepare(cfg, tmp_path)
    assert built and store.is_intact(path)


# ---- checksums: a damaged cache is rebuilt, a damaged checkpoint refused ------------------------


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A processed dataset and a pristine copy of its arrays."""
    data_dir = tmp_path_factory.mktemp("data")
    cfg = tiny_dataset_cfg(seed=32)
    ds = load_dataset(cfg, data_dir)
    return cfg, data_dir, ds


@pytest.mark.parametrize("fname", ["train.parquet", "behaviours.parquet", "items.parquet", "manifest.json"])
def test_flipped_byte_in_the_cache_is_detected_and_rebuilt(cached, fname, caplog):
    cfg, data_dir, original = cached
    path, built = prepare(cfg, data_dir)
    assert not built
    if fname == "manifest.json":  # a value changed (valid JSON still): the manifest's own checksum
        m = (path / fname).read_text()
        (path / fname).write_text(m.replace('"n_users": ', '"n_users": 1', 1))
    else:
        flip_byte(path / fname)
    with pytest.raises(CorruptFile) as info:
        store.load(path)
    assert info.value.path == path / fname and str(path / fname) in str(info.value)
    assert "expected" in str(info.value) and "sha256" in str(info.value)

    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        ds = load_dataset(cfg, data_dir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path / fname) in warnings[0] and "rebuilding" in warnings[0]
    assert store.is_intact(path)
    for split in ("train", "valid", "test"):
        for col in ("user", "item", "cate", "label", "hist_end"):
            assert np.array_equal(getattr(ds.splits[split], col), getattr(original.splits[split], col))
    assert np.array_equal(ds.streams.item, original.streams.item) and ds.vocab == original.vocab


def test_invalid_json_manifest_and_missing_file_are_rebuilt(cached, caplog):
    cfg, data_dir, original = cached
    path, _ = prepare(cfg, data_dir)
    (path / "valid.parquet").unlink()
    with caplog.at_level(logging.WARNING, logger="ctrbench"):
        assert load_dataset(cfg, data_dir).vocab == original.vocab
    assert "valid.parquet' is missing" in caplog.text
    (path / "manifest.json").write_text('{"name": "synth')
    with pytest.raises(CorruptFile, match="not valid JSON"):
        store.load(path)
    assert load_dataset(cfg, data_dir).vocab == original.vocab and store.is_intact(path)


def test_a_dataset_damaged_right_after_it_was_built_is_an_error(tmp_path, monkeypatch):
    """No endless rebuilding: when the fresh build itself fails its checksum (a failing disk),
    the error names the file."""
    cfg = tiny_dataset_cfg(seed=33)
    real_load = store.load

    def load(path, verify=True):
        flip_byte(Path(path) / "test.parquet")
        return real_load(path, verify)

    monkeypatch.setattr(store, "load", load)
    with pytest.raises(CorruptFile, match="test.parquet' does not match its checksum"):
        load_dataset(cfg, tmp_path)


@pytest.mark.parametrize("at", [0.0, 0.3, 0.6, 0.999])
def test_flipped_byte_in_a_checkpoint_is_detected_on_load(tmp_path, at):
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"model": {"w": torch.randn(64, 8)}, "step": 5})
    expected = checkpoint.sidecar(ckpt).read_text().split()[0]
    flip_byte(ckpt, at)
    with pytest.raises(CorruptFile) as info:
        checkpoint.load(ckpt)
    msg = str(info.value)
    assert isinstance(info.value, DataError) and len(msg.splitlines()) == 1
    assert f"checkpoint '{ckpt}' is corrupted" in msg and f"expected {expected}" in msg
    assert info.value.expected == expected and info.value.found and info.value.found != expected
    assert info.value.found in msg


def test_checkpoint_sidecar_is_sha256sum_format(tmp_path):
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"step": 1})
    line = checkpoint.sidecar(ckpt).read_text()
    assert re.fullmatch(r"[0-9a-f]{64}  best\.pt\n", line)
    if shutil.which("sha256sum"):  # coreutils agrees
        proc = subprocess.run(["sha256sum", "-c", "best.pt.sha256"], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "best.pt: OK" in proc.stdout, proc.stdout + proc.stderr


def test_checkpoint_without_sidecar_loads_and_garbage_is_named(tmp_path):
    ckpt = tmp_path / "best.pt"
    torch.save({"step": 7}, ckpt)  # written by an older ctrbench: no checksum file
    assert checkpoint.load(ckpt)["step"] == 7
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, and nothing to check it against
    with pytest.raises(CorruptFile, match=r"checkpoint '.*best\.pt' cannot be read .*no checksum file"):
        checkpoint.load(ckpt)
    checkpoint.sidecar(ckpt).write_text("not a digest\n")
    with pytest.raises(CorruptFile, match=r"best\.pt\.sha256' is not a sha256 checksum file"):
        checkpoint.load(ckpt)
    with pytest.raises(DataError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")


# ---- checkpoints are plain data: a planted object is refused, never built -----------------------

class Planted:
    """An object that, when unpickled, writes ``marker`` (what a malicious checkpoint could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('ran')",))


def plant(ckpt: Path, marker: Path) -> None:
    """Add a ``Planted`` object to the checkpoint ``ckpt`` and rewrite its sidecar to match (as
    whoever hands the file over can)."""
    import hashlib

    state = torch.load(ckpt, weights_only=False) if ckpt.exists() else {"step": 1}
    state["note"] = Planted(marker)
    torch.save(state, ckpt)
    checkpoint.sidecar(ckpt).write_text(f"{hashlib.sha256(ckpt.read_bytes()).hexdigest()}  {ckpt.name}\n")
    assert checkpoint.verify(ckpt)  # the checksum is satisfied: only the content gives it away


def test_a_checkpoint_with_a_planted_object_is_refused_unexecuted(tmp_path):
    ckpt, marker = tmp_path / "best.pt", tmp_path / "MARKER"
    checkpoint.save(ckpt, {"model": {"w": torch.randn(4, 2)}, "step": 3, "rng": checkpoint.rng_state()})
    plant(ckpt, marker)
    with pytest.raises(DataError) as info:
        checkpoint.load(ckpt)
    assert not marker.exists()
    msg = str(info.value)
    assert type(info.value).__name__ == "UnsafeCheckpoint" and len(msg.splitlines()) == 1, msg
    assert info.value.found.split(".")[-1] == "exec", info.value.found  # torch names it exec (or builtins.exec)
    assert f"checkpoint '{ckpt}' holds a pickled object ({info.value.found})" in msg and "refused" in msg, msg


def test_a_checkpoints_state_is_plain_data(tmp_path):
    """What ctrbench writes (the RNG states included) loads with ``weights_only=True`` and no
    allow-list, and restores the RNG streams exactly."""
    import random

    ckpt = tmp_path / "last.pt"
    checkpoint.save(ckpt, {"rng": checkpoint.rng_state(), "best": {"score": np.float64(0.5)}, "history": [{"auc": np.float32(0.25)}]})
    drawn = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    state = torch.load(ckpt, weights_only=True)
    assert state["best"]["score"] == 0.5 and type(state["best"]["score"]) is float and state["history"] == [{"auc": 0.25}]
    checkpoint.set_rng_state(checkpoint.load(ckpt)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == drawn


def test_a_checkpoint_of_the_earlier_format_still_loads(tmp_path):
    """Checkpoints written before the RNG state was plain data hold numpy's legacy state tuple (an
    ndarray key): a plain numpy array is the one thing besides plain data that loads."""
    import random

    ckpt = tmp_path / "last.pt"
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"rng": old_rng, "step": 4}, ckpt)
    drawn = np.random.rand(3).tolist()
    state = checkpoint.load(ckpt)
    assert state["step"] == 4 and isinstance(state["rng"]["numpy"][1], np.ndarray)
    checkpoint.set_rng_state(state["rng"])
    assert np.random.rand(3).tolist() == drawn


# ---- every writer goes through a temporary name --------------------------------------------------

def _written_target(call: ast.Call) -> ast.AST | None:
    """The expression naming the file a call writes, or None when the call writes no file."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    args = call.args
    if name == "open" and args:
        mode = args[1] if len(args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
            return args[0]
        return None
    if name in ("write_text", "write_bytes") and isinstance(f, ast.Attribute):
        return f.value
    if name in ("savefig", "to_csv", "to_parquet") and args:
        return args[0]
    owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
    if (owner, name) in (("torch", "save"), ("pq", "write_table")) and len(args) >= 2:
        return None if _in_memory(args[1]) else args[1]
    return None


def _in_memory(target: ast.AST) -> bool:
    """A target made on the spot as an in-memory buffer (``pa.BufferOutputStream()``, ``io.BytesIO()``,
    possibly named with ``:=``): no file is written."""
    value = target.value if isinstance(target, ast.NamedExpr) else target
    f = value.func if isinstance(value, ast.Call) else None
    return (f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else "") in ("BufferOutputStream", "BytesIO")


def test_the_writer_guard_tells_files_from_buffers():
    def target(code: str):
        return _written_target(ast.parse(code).body[0].value)

    assert target("pq.write_table(t, sink := pa.BufferOutputStream())") is None
    assert target("torch.save(x, io.BytesIO())") is None
    assert ast.unparse(target("pq.write_table(t, out_path)")) == "out_path"
    assert ast.unparse(target("pq.write_table(t, sink := open_file(p))")) == "(sink := open_file(p))"


def _append_only(call: ast.Call) -> bool:
    args = call.args
    mode = args[1] if len(args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "a" in mode.value and "w" not in mode.value


def test_every_writer_in_ctrbench_writes_a_temporary_name():
    """A guard for new code: each call in ctrbench/ that writes a file writes a temporary name
    (``tmp``: from atomic_path or a temporary folder renamed into place; ``part``: the resumable
    download) that is renamed into place; the exceptions are the dataset lock file and logs opened
    for appending (a log grows line by line; nothing reads it as a result)."""
    offenders = []
    for path in sorted((ROOT / "ctrbench").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or (target := _written_target(node)) is None:
                continue
            text = ast.get_source_segment(source, target) or ""
            if re.search(r"\b(tmp|part)\b", text) or ".lock" in text:
                continue
            if "log" in text and _append_only(node):
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: writes {text}")
    assert offenders == [], "write through ctrbench.atomic.atomic_path:\n" + "\n".join(offenders)
