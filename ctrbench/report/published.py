"""The published numbers of the DIN and DIEN papers' tables (and of their public re-runs), from
``published.json`` beside this module, and which of them a set of runs can be compared with.

``lookup(table_id, dataset, protocol)`` answers: the published columns for that table on that
dataset when they exist (``comparable=True``: the report shows them with the difference ours −
published); otherwise the table's reference dataset's columns, flagged ``comparable=False`` with the
reason ("different data", or the same data under a different protocol), which the report shows for
orientation only, with no difference column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ctrbench.errors import UserError

METRICS = ("auc", "gauc", "logloss")
METRIC_NAMES = {"gauc": "GAUC", "auc": "AUC", "logloss": "logloss"}


@dataclass(frozen=True)
class PublishedColumn:
    """One published column: a source's values for the rows of one table on one dataset."""

    label: str  # short, used as a column header: "paper", "authors' repo", "BARS"
    dataset: str  # the dataset the numbers were measured on
    source: str
    values: dict  # row key -> {metric: {"mean": float, "std": float?}}
    rela_impr: dict = field(default_factory=dict)  # row key -> the RelaImpr the source prints (percent)
    note: str | None = None

    def mean(self, row: str, metric: str) -> float | None:
        v = self.values.get(row, {}).get(metric)
        return None if v is None else float(v["mean"])

    def std(self, row: str, metric: str) -> float | None:
        v = self.values.get(row, {}).get(metric)
        return None if v is None or v.get("std") is None else float(v["std"])


@dataclass(frozen=True)
class TableSpec:
    """A published table: its rows in the paper's order, its metric and its RelaImpr baseline."""

    id: str
    paper: str
    table: str
    title: str
    metric: str  # gauc | auc
    baseline: str  # the row key RelaImpr and the t-test are measured against
    reference_dataset: str
    rows: tuple  # ((key, paper name), ...)
    notes: tuple = ()
    datasets: dict = field(default_factory=dict, compare=False, hash=False)
    extra_rows: tuple = ()  # ((key, name), ...): reference rows an experiment adds, shown after the paper's

    @property
    def row_keys(self) -> list[str]:
        return [k for k, _ in self.rows]

    def row_name(self, key: str) -> str:
        return dict(self.rows).get(key) or dict(self.extra_rows).get(key, key)

    @property
    def label(self) -> str:
        return f"{self.paper} {self.table}"


@dataclass(frozen=True)
class Lookup:
    """The published numbers to show beside runs of ``table`` on ``dataset``."""

    table: TableSpec
    dataset: str  # the runs' dataset
    published_dataset: str | None  # the dataset the shown numbers are from (None: nothing to show)
    columns: tuple  # of PublishedColumn
    comparable: bool  # same data (and protocol): the difference is meaningful
    reason: str | None = None  # why not comparable
    protocol: str | None = None  # the protocol the published numbers used (None: not applicable)
    note: str | None = None


@lru_cache(maxsize=1)
def _data() -> dict:
    try:
        text = resources.files("ctrbench.report").joinpath("published.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("ctrbench's published numbers (ctrbench/report/published.json) are missing: reinstall ctrbench") from None
    data = json.loads(text)
    _validate(data)
    return data


def _validate(data: dict) -> None:
    """Catch an edit of published.json that breaks it: unknown metrics, rows or dataset references."""
    for tid, t in data["tables"].items():
        keys = [r["key"] for r in t["rows"]]
        if len(set(keys)) != len(keys):
            raise ValueError(f"published.json: {tid} has duplicate row keys")
        if t["metric"] not in ("gauc", "auc") or t["baseline"] not in keys:
            raise ValueError(f"published.json: {tid} has a bad metric or baseline")
        if t["reference_dataset"] not in t["datasets"]:
            raise ValueError(f"published.json: {tid}'s reference dataset has no numbers")
        for ds, entry in t["datasets"].items():
            ref = entry.get("columns_from")
            if ref is not None and ref not in t["datasets"]:
                raise ValueError(f"published.json: {tid}/{ds} takes columns from unknown {ref!r}")
            for col in entry["columns"]:
                for row, vals in col["values"].items():
                    if row not in keys or not set(vals) <= set(METRICS) or any("mean" not in v for v in vals.values()):
                        raise ValueError(f"published.json: {tid}/{ds}/{col['label']} has a bad entry for {row!r}")


def raw() -> dict:
    """The parsed published.json (treat as read-only)."""
    return _data()


def table_ids() -> list[str]:
    return list(_data()["tables"])


def canonical_dataset(dataset: str) -> str:
    """Our dataset config name under which published numbers are filed (e.g. the generic amazon
    config's ``amazon_Electronics_2014`` is ``amazon_electronics``)."""
    return _data().get("aliases", {}).get(dataset, dataset)


def get_table(table_id: str) -> TableSpec | None:
    """The published table ``table_id`` (``din_table3`` ...), or None if published.json has no such table."""
    t = _data()["tables"].get(table_id)
    if t is None:
        return None
    return TableSpec(
        id=table_id, paper=t["paper"], table=t["table"], title=t.get("title", ""), metric=t["metric"],
        baseline=t["baseline"], reference_dataset=t["reference_dataset"],
        rows=tuple((r["key"], r["name"]) for r in t["rows"]), notes=tuple(t.get("notes", ())), datasets=t["datasets"],
        extra_rows=tuple((r["key"], r["name"]) for r in t.get("extra_rows", ())),
    )


def table(table_id: str) -> TableSpec:
    spec = get_table(table_id)
    if spec is None:
        raise UserError(f"no published table {table_id!r}: expected one of {', '.join(table_ids())}")
    return spec


def _columns(spec: TableSpec, dataset: str) -> list[PublishedColumn]:
    entry = spec.datasets[dataset]
    cols = []
    if entry.get("columns_from"):
        cols += _columns(spec, entry["columns_from"])
    for c in entry["columns"]:
        cols.append(PublishedColumn(
            label=c["label"], dataset=dataset, source=c["source"], values=c["values"],
            rela_impr=c.get("rela_impr", {}), note=c.get("note"),
        ))
    return cols


def lookup(table_id: str, dataset: str, protocol: str | None = None) -> Lookup:
    """The published column(s) to show beside runs of ``table_id`` on ``dataset`` (under ``protocol``).

    * dataset with published numbers, same protocol (or the runs' protocol unknown): its columns,
      ``comparable=True``;
    * same dataset, another protocol: its columns, ``comparable=False`` ("different protocol");
    * a dataset without published numbers (synthetic, a sample of real data): the table's reference
      dataset's columns, ``comparable=False`` ("different data"), for orientation only.
    """
    spec = table(table_id)
    ds = canonical_dataset(dataset)
    entry = spec.datasets.get(ds)
    if entry is not None:
        expected = entry.get("protocol")
        cols = tuple(_columns(spec, ds))
        note = entry.get("note")
        if protocol is not None and expected is not None and protocol != expected:
            return Lookup(spec, dataset, ds, cols, False,
                          f"different protocol: these runs used {protocol}, the published numbers {expected}",
                          expected, note)
        return Lookup(spec, dataset, ds, cols, True, None, expected, note)
    ref = _closest_reference(spec, ds)
    ref_entry = spec.datasets[ref]
    return Lookup(spec, dataset, ref, tuple(_columns(spec, ref)), False,
                  f"different data: the published numbers are on {ref}, these runs on {dataset}",
                  ref_entry.get("protocol"), ref_entry.get("note"))


def _closest_reference(spec, ds: str) -> str:
    """The published dataset nearest to ``ds`` in kind (another MovieLens release -> MovieLens-20M,
    another Amazon category -> the table's Amazon set), else the table's reference dataset."""
    family = ds.split("_")[0].lower()
    for name in spec.datasets:
        if name.split("_")[0].lower() == family and family in ("movielens", "amazon"):
            return name
    return spec.reference_dataset


def unmapped(dataset: str | None = None) -> list[dict]:
    """Published numbers that correspond to no table row (e.g. BARS DIEN without the auxiliary loss)."""
    items = _data().get("unmapped", [])
    ds = None if dataset is None else canonical_dataset(dataset)
    return [u for u in items if ds is None or u["dataset"] == ds]
