"""The results table: runs grouped by (dataset, model, act, reg), mean ± std over seeds, RelaImpr.

RelaImpr (DIN paper Eq. 11) is computed against the ``base`` row of the same dataset, from the mean
test GAUC (the DIN paper's "AUC" column is the user-weighted AUC of Eq. 10) and from the mean AUC.
The base row with the same act and reg is preferred, then act=prelu reg=none, then any base row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import UserError
from ctrbench.metrics import rela_impr
from ctrbench.report.collect import RunRecord

PAPER_ORDER = ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"]
ORACLE = "oracle (Bayes-optimal)"
METRICS = ("auc", "gauc", "logloss")
FORMATS = ("markdown", "csv")


@dataclass
class Row:
    dataset: str
    model: str
    act: str
    reg: str
    seeds: list = field(default_factory=list)
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    rela_impr_gauc: float | None = None
    rela_impr_auc: float | None = None
    n_failed: int = 0
    n_missing: int = 0
    is_oracle: bool = False

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


@dataclass
class ResultTable:
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    # ---- plain data ----------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        recs = []
        for r in self.rows:
            rec = {
                "dataset": r.dataset, "model": r.model, "act": r.act, "reg": r.reg,
                "n_seeds": r.n_seeds, "seeds": " ".join(str(s) for s in r.seeds),
            }
            for m in METRICS:
                rec[f"{m}_mean"] = r.mean.get(m)
                rec[f"{m}_std"] = r.std.get(m)
            rec.update(rela_impr_gauc=r.rela_impr_gauc, rela_impr_auc=r.rela_impr_auc, n_failed=r.n_failed, n_missing=r.n_missing)
            recs.append(rec)
        return pd.DataFrame.from_records(recs)

    def to_csv(self) -> str:
        return self.to_frame().to_csv(index=False)

    # ---- formatted -----------------------------------------------------------------------
    def _show_failures(self) -> bool:
        return any(r.n_failed or r.n_missing for r in self.rows)

    def _cells(self, r: Row) -> list[str]:
        def ms(m: str) -> str:
            v = r.mean.get(m)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "–"
            return f"{v:.4f}" if r.is_oracle or r.n_seeds <= 1 else f"{v:.4f} ± {r.std[m]:.4f}"

        def ri(v: float | None) -> str:
            return "–" if v is None else f"{v:+.2f}%"

        cells = [r.dataset, r.model, r.act, r.reg, "–" if r.is_oracle else str(r.n_seeds), ms("auc"), ms("gauc"), ms("logloss"), ri(r.rela_impr_gauc)]
        if self._show_failures():
            cells.append(f"{r.n_failed}/{r.n_missing}")
        return cells

    def _header(self) -> list[str]:
        h = ["dataset", "model", "act", "reg", "seeds", "AUC", "GAUC", "logloss", "RelaImpr"]
        return h + (["failed/missing"] if self._show_failures() else [])

    def to_markdown(self) -> str:
        header = self._header()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(self._cells(r)) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_rich(self):
        from rich.table import Table

        datasets = sorted({r.dataset for r in self.rows})
        one = len(datasets) == 1
        title = f"ctrbench results · {datasets[0]}" if one else "ctrbench results"
        t = Table(title=title)
        header = self._header()
        skip = {0} if one else set()
        for i, h in enumerate(header):
            if i in skip:
                continue
            t.add_column(h, justify="left" if h in ("dataset", "model", "act", "reg") else "right", no_wrap=True)
        best = {}
        for r in self.rows:
            g = r.mean.get("gauc")
            if not r.is_oracle and g is not None and not math.isnan(g):
                best[r.dataset] = max(best.get(r.dataset, -1.0), g)
        for r in self.rows:
            cells = [c.replace(" ± ", "±") for c in self._cells(r)]
            if not r.is_oracle and r.mean.get("gauc") is not None and r.mean.get("gauc") == best.get(r.dataset):
                cells[6] = f"[bold]{cells[6]}[/bold]"
            if r.is_oracle:
                cells[1] = "oracle"
            t.add_row(*[c for i, c in enumerate(cells) if i not in skip], style="dim" if r.is_oracle else None)
        if any(r.is_oracle for r in self.rows):
            t.caption = "oracle: the Bayes-optimal score (the data's known click probability), a ceiling no model beats in expectation"
        return t


def _order_key(r: Row) -> tuple:
    m = PAPER_ORDER.index(r.model) if r.model in PAPER_ORDER else len(PAPER_ORDER)
    return (r.dataset, r.is_oracle, m, r.model, r.act, r.reg)


def _pick_base(rows: list[Row], row: Row) -> Row | None:
    bases = [b for b in rows if b.dataset == row.dataset and b.model == "base" and not b.is_oracle and b.n_seeds]
    for pred in (
        lambda b: b.act == row.act and b.reg == row.reg,
        lambda b: b.act == "prelu" and b.reg == "none",
        lambda b: True,
    ):
        found = [b for b in bases if pred(b)]
        if found:
            return found[0]
    return None


def _ri(model: float | None, base: float | None) -> float | None:
    if model is None or base is None or math.isnan(model) or math.isnan(base) or base == 0.5:
        return None
    return rela_impr(model, base)


def build_table(records: list[RunRecord]) -> ResultTable:
    groups: dict[tuple, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.dataset, rec.model, rec.act, rec.reg), []).append(rec)
    rows: list[Row] = []
    notes: list[str] = []
    for (dataset, model, act, reg), recs in groups.items():
        done = [r for r in recs if r.status == "completed"]
        row = Row(dataset, model, act, reg, seeds=sorted(r.seed for r in done),
                  n_failed=sum(r.status not in ("completed", "missing") for r in recs),
                  n_missing=sum(r.status == "missing" for r in recs))
        for m in METRICS:
            vals = np.array([r.test.get(m, float("nan")) for r in done], dtype=float)
            row.mean[m] = float(vals.mean()) if vals.size else None
            row.std[m] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        rows.append(row)
        if any(r.selection == "test_as_valid" for r in done):
            notes.append(f"{dataset}/{model}/{act}/{reg}: model selection used the test set (trainer.selection=test_as_valid)")
    # One oracle row per dataset whose runs carry the Bayes-optimal metrics.
    for dataset in sorted({r.dataset for r in records}):
        oracle = next((r.oracle["test"] for r in records if r.dataset == dataset and r.oracle and r.oracle.get("test")), None)
        if oracle:
            rows.append(Row(dataset, ORACLE, "", "", mean={m: oracle.get(m) for m in METRICS},
                            std={m: 0.0 for m in METRICS}, is_oracle=True))
    for row in rows:
        base = _pick_base(rows, row)
        if base is None:
            continue
        row.rela_impr_gauc = _ri(row.mean.get("gauc"), base.mean.get("gauc"))
        row.rela_impr_auc = _ri(row.mean.get("auc"), base.mean.get("auc"))
    for dataset in sorted({r.dataset for r in rows}):
        if not any(r.dataset == dataset and r.model == "base" and r.n_seeds for r in rows):
            notes.append(f"{dataset}: no completed 'base' run, so RelaImpr is not shown (it is measured against BaseModel)")
    if any(r.n_missing for r in rows):
        notes.append("failed/missing: runs whose job failed, or that have a config but no metrics.json (unfinished)")
    rows.sort(key=_order_key)
    return ResultTable(rows=rows, notes=notes)


def write_table(table: ResultTable, fmt: str, path: str | Path) -> Path:
    """Write the table as Markdown or CSV, atomically (temporary file, then rename)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}: expected one of {', '.join(FORMATS)} (or rich, for the terminal only)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.to_markdown() if fmt == "markdown" else table.to_csv()
    atomic_write_text(path, text)
    return path
