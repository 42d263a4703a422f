"""The base of every real (file-backed) source: locate or download the raw files, read them into
``Events`` + ``ItemMeta`` (the subclass's job), encode ids, then hand the streams to the protocol.

A subclass defines:

- ``dataset_name``: used in messages;
- ``find_inputs(raw_dir) -> dict[str, Path] | None``: the input files when present (format
  detection happens here), else None;
- ``needed_files() -> list[str]`` and ``remote_files() -> list[RemoteFile]``: what to ask for / fetch;
- ``read(inputs) -> (Events, ItemMeta | None, report)``.

``prepare`` calls ``locate(data_dir, name)`` first; ``fingerprint()`` (file names, sizes and
modification times of the inputs) becomes part of the processed dataset's cache key, so replacing
a raw file rebuilds the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctrbench.data import download
from ctrbench.data.encode import encode
from ctrbench.data.schema import Samples, Streams
from ctrbench.data.sources.raw import BAD_LINE_POLICIES, Events, ItemMeta
from ctrbench.errors import ConfigError


@dataclass
class RealSource:
    raw_dir: str | None = None  # null: <data_dir>/raw/<dataset name>
    on_bad_line: str = "error"  # error | skip
    download: bool = True  # fetch missing files when the network is there

    dataset_name = "real"

    def __post_init__(self) -> None:
        if self.on_bad_line not in BAD_LINE_POLICIES:
            raise ConfigError(f"dataset.on_bad_line={self.on_bad_line!r}: expected one of {', '.join(BAD_LINE_POLICIES)}")
        self._raw_dir: Path | None = Path(self.raw_dir) if self.raw_dir else None
        self._inputs: dict[str, Path] | None = None

    # ---- to be defined by each source --------------------------------------------------------
    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:
        raise NotImplementedError

    def needed_files(self) -> list[str]:
        raise NotImplementedError

    def remote_files(self) -> list[download.RemoteFile]:
        raise NotImplementedError

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta | None, dict]:
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------------
    def locate(self, data_dir: str | Path, name: str) -> dict[str, Path]:
        """Find (or download) the input files; remembers them for ``build``."""
        self.dataset_name = name
        if self._raw_dir is None:
            self._raw_dir = Path(data_dir) / "raw" / name
        raw_dir = self._raw_dir
        self._inputs = download.ensure(
            name, raw_dir, lambda: self.find_inputs(raw_dir), self.needed_files(), self.remote_files(), self.download
        )
        return self._inputs

    def fingerprint(self) -> list:
        assert self._inputs is not None, "locate() first"
        out = []
        for role, path in sorted(self._inputs.items()):
            st = Path(path).stat()
            out.append([role, Path(path).name, st.st_size, st.st_mtime_ns])
        return out

    def build(self, protocol) -> tuple[Streams, np.ndarray, dict[str, Samples], dict]:
        assert self._inputs is not None, "locate() first"
        events, meta, report = self.read(self._inputs)
        streams, item_cate, encoded = encode(events, meta)
        splits, info = protocol.build(streams, item_cate)
        info["source"] = {"files": {k: str(v) for k, v in self._inputs.items()}, **report, "encoded": encoded}
        return streams, item_cate, splits, info
