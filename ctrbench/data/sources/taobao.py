"""Taobao UserBehavior (Alibaba, Tianchi dataset 649): user behaviours with the item's category.

File: ``UserBehavior.csv`` (or ``UserBehavior.csv.gz``; the official ``UserBehavior.csv.zip`` is
unpacked next to itself when it is the only form present), in ``raw_dir`` or one folder down. No
header; one behaviour a line, comma-separated::

    user_id,item_id,category_id,behavior_type,timestamp

with ``behavior_type`` one of ``pv`` (page view), ``buy``, ``cart``, ``fav`` and ``timestamp`` in
seconds. The official download needs a Tianchi login (https://tianchi.aliyun.com/dataset/649), so
there is no automatic download.

Choices:

- ``behaviors`` selects the behaviour types kept as events (None: all four); the report gives the
  rows of each type kept and dropped. Another type name in the file is a malformed line.
- **Categories come from the file itself**: the item metadata is the (item, category) pair of each
  item's *first* row (over all rows, kept or not); items seen with more than one category are
  counted in the report.
- **Timestamps outside the documented period** (2017-11-25 to 2017-12-03, China Standard Time;
  the real file has some, a few negative) are *kept* by default: time is only an order key within
  a user's stream. They are never dropped silently: the report counts them (and the negative
  ones); ``keep_out_of_period=False`` drops them instead (counted too).

Speed: one typed ``pyarrow.csv`` read (multi-threaded; the behaviour type dictionary-encoded), then
numpy; the full file (about 100M rows) needs no per-line Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.data.download import RemoteFile, unpack_zip
from ctrbench.data.sources.delimited import Field, candidate_folders, read_delimited
from ctrbench.data.sources.raw import Events, ItemMeta, LineErrors
from ctrbench.data.sources.real import RealSource
from ctrbench.errors import ConfigError, DataError

BEHAVIORS = ("pv", "buy", "cart", "fav")
FIELDS = (
    Field("user_id"), Field("item_id"), Field("category_id"),
    Field("behavior_type", "enum", BEHAVIORS), Field("timestamp"),
)
FILE = "UserBehavior.csv"
ZIP = FILE + ".zip"
PAGE = "https://tianchi.aliyun.com/dataset/649"
# The documented period, [2017-11-25 00:00, 2017-12-04 00:00) in China Standard Time (UTC+8).
PERIOD = (1511539200, 1512316800)
PERIOD_TEXT = "2017-11-25 to 2017-12-03 (UTC+8)"


def check_behaviors(behaviors) -> tuple[str, ...]:
    """The behaviour types to keep (None: all), validated; a ConfigError names dataset.behaviors."""
    if behaviors is None:
        return BEHAVIORS
    if isinstance(behaviors, str) or not isinstance(behaviors, (list, tuple)):
        raise ConfigError(f"dataset.behaviors={behaviors!r}: expected null or a list of {', '.join(BEHAVIORS)}, e.g. [buy]")
    unknown = [b for b in behaviors if b not in BEHAVIORS]
    if unknown:
        raise ConfigError(f"dataset.behaviors: unknown behaviour type {unknown[0]!r}; expected some of {', '.join(BEHAVIORS)}")
    if not behaviors:
        raise ConfigError(f"dataset.behaviors is empty; use null for all of {', '.join(BEHAVIORS)}")
    return tuple(b for b in BEHAVIORS if b in behaviors)


def first_category(item: np.ndarray, cate: np.ndarray) -> tuple[ItemMeta, int]:
    """(the category of each item's first row, number of items seen with several categories).
    ``pd.factorize`` numbers items in order of first appearance, so a new item starts wherever the
    running maximum of the codes grows."""
    codes, uniques = pd.factorize(item)
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    first_cate = cate[first]
    conflict = cate != first_cate[codes]
    n_conflicts = int(np.unique(codes[conflict]).size)
    return ItemMeta(item=np.asarray(uniques), cate=first_cate), n_conflicts


def _kept_dropped(rows: np.ndarray, keep: np.ndarray) -> dict[str, int]:
    kept = int(np.count_nonzero(rows & keep))
    return {"kept": kept, "dropped": int(np.count_nonzero(rows)) - kept}


@dataclass
class TaobaoSource(RealSource):
    """Taobao UserBehavior (see the module docstring for the format and choices)."""

    behaviors: list[str] | None = None  # None: all of pv, buy, cart, fav
    keep_out_of_period: bool = True  # False: drop rows timestamped outside the documented period

    dataset_name = "taobao"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._kept = check_behaviors(self.behaviors)

    def find_inputs(self, raw_dir: Path) -> dict[str, Path] | None:
        """``UserBehavior.csv`` (or ``.csv.gz``) in ``raw_dir`` or a subfolder; a lone
        ``UserBehavior.csv.zip`` is unpacked in its folder first."""
        folders = candidate_folders(Path(raw_dir))
        for name in (FILE, FILE + ".gz"):
            for folder in folders:
                if (folder / name).is_file():
                    return {"behaviors": folder / name}
        for folder in folders:
            if (folder / ZIP).is_file():
                unpack_zip(folder / ZIP, folder)
                for found in [folder / FILE, *sorted(folder.glob(f"*/{FILE}"))]:
                    if found.is_file():
                        return {"behaviors": found}
        return None

    def needed_files(self) -> list[str]:
        return [f"{FILE} (or {ZIP} as downloaded, or {FILE}.gz)"]

    def remote_files(self) -> list[RemoteFile]:
        return [RemoteFile(name=ZIP, url=None, page=PAGE)]

    def read(self, inputs: dict[str, Path]) -> tuple[Events, ItemMeta, dict]:
        path = Path(inputs["behaviors"])
        errors = LineErrors(path, self.on_bad_line)
        table = read_delimited(path, FIELDS, errors, delimiter=",")
        c = table.columns
        user, item, cate, kind, ts = (c[f.name] for f in FIELDS)
        meta, n_conflicts = first_category(item, cate)

        keep = np.isin(kind, [BEHAVIORS.index(b) for b in self._kept])
        outside = (ts < PERIOD[0]) | (ts >= PERIOD[1])
        if not self.keep_out_of_period:
            keep &= ~outside
        if not keep.any():
            raise DataError(f"{path}: no behaviour is left after keeping only {', '.join(self._kept)}")
        events = Events(user=user[keep], item=item[keep], time=ts[keep])
        report = {
            "behaviors_kept": list(self._kept),
            "rows_by_behavior": {
                b: _kept_dropped(kind == k, keep) for k, b in enumerate(BEHAVIORS)
            },
            "out_of_period": {
                "period": PERIOD_TEXT,
                "rows": int(np.count_nonzero(outside)),
                "negative_timestamps": int(np.count_nonzero(ts < 0)),
                "min_timestamp": int(ts.min()),
                "max_timestamp": int(ts.max()),
                "action": "kept" if self.keep_out_of_period else "dropped",
            },
            "category": "from the file: each item's first row",
            "items_with_several_categories": n_conflicts,
            "bad_lines": {"behaviors": errors.report()},
        }
        return events, meta, report
