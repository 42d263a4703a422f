"""The results table over run folders: mean ± std over seeds, RelaImpr, published numbers, t-tests.

Two kinds of runs, two groupings:

* Runs of a published table (metrics.json ``experiment`` = ``din_table3`` ..., set by
  ``+experiment=<table>``) are grouped by (experiment, dataset, row). Each (experiment, dataset) is
  one section, laid out like the paper: its rows in the paper's order under the paper's row names
  (a row with no runs is shown as missing), the table's metric (GAUC, the DIN paper's user-weighted
  AUC of Eq. 10, or the DIEN paper's global AUC), RelaImpr (DIN paper Eq. 11) on that metric
  against the table's baseline row (BaseModel; Table 4: its first row), Welch's t-test of each row
  against the baseline over seeds, and the published numbers beside ours, with the difference
  ours − published only when the runs used the published dataset and protocol
  (``ctrbench/report/published.json``). Notes below each section say which protocol, GAUC
  weighting, act / reg settings and model-selection mode produced the numbers, and flag mixtures.
* Runs outside a published table (``experiment`` null) keep the plain table grouped by
  (dataset, model, act, reg), RelaImpr on the mean test GAUC (and AUC) against the ``base`` row of
  the same dataset: the one with the same act and reg, else act=prelu reg=none, else any base row.

Synthetic data adds an oracle row (the Bayes-optimal score) to each table.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import UserError
from ctrbench.report import published as pub
from ctrbench.report import stats
from ctrbench.report.collect import RunRecord

PAPER_ORDER = ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"]
ORACLE = "oracle (Bayes-optimal)"
METRICS = ("auc", "gauc", "logloss")
METRIC_NAMES = {"auc": "AUC", "gauc": "GAUC", "logloss": "logloss"}
FORMATS = ("markdown", "csv", "latex")
TEXT_COLUMNS = ("dataset", "model", "act", "reg", "row", "failed/missing")
FAILED_NOTE = "failed/missing: runs whose job failed, or that have a config but no metrics.json (unfinished)"
ORACLE_NOTE = "oracle: the Bayes-optimal score (the data's known click probability), a ceiling no model beats in expectation"


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
    # per-seed values of the completed runs (metric -> list), and the runs themselves
    values: dict = field(default_factory=dict)
    runs: list = field(default_factory=list, repr=False)
    # runs of a published table
    experiment: str | None = None
    row_key: str | None = None
    row_name: str | None = None
    no_runs: bool = False  # a row of the paper with no runs at all
    is_baseline: bool = False
    rela_impr: float | None = None  # on the section's metric
    rela_impr_seeds: list = field(default_factory=list)  # each seed against the baseline's mean
    welch: stats.Welch | None = None
    published: dict = field(default_factory=dict)  # column label -> (mean, std) on the section's metric
    diff: dict = field(default_factory=dict)  # column label -> ours - published (comparable data only)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def p_value(self) -> float | None:
        return None if self.welch is None else self.welch.p

    @property
    def label(self) -> str:
        if self.is_oracle:
            return ORACLE
        return self.row_name if self.row_name is not None else f"{self.model}/{self.act}/{self.reg}"


@dataclass
class Section:
    """One table of the report: a published table on one dataset, or the plain runs."""

    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    experiment: str | None = None
    dataset: str | None = None
    spec: pub.TableSpec | None = None
    lookup: pub.Lookup | None = None
    metric: str = "gauc"

    @property
    def is_experiment(self) -> bool:
        return self.experiment is not None

    @property
    def title(self) -> str:
        if not self.is_experiment:
            return "runs outside a published table"
        what = f"{self.spec.paper} {self.spec.table}" if self.spec else "(no published table of this name)"
        return f"{self.experiment} · {what} · {self.dataset} · metric {METRIC_NAMES[self.metric]}"

    @property
    def baseline_name(self) -> str:
        if self.spec:
            return self.spec.row_name(self.spec.baseline)
        return "base"

    @property
    def columns(self) -> list[pub.PublishedColumn]:
        return list(self.lookup.columns) if self.lookup else []

    @property
    def comparable(self) -> bool:
        return bool(self.lookup and self.lookup.comparable)


@dataclass
class ResultTable:
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def __post_init__(self):
        if not self.sections:
            self.sections = [Section(rows=self.rows, notes=self.notes)]

    @property
    def _headed(self) -> bool:
        """Sections get a heading unless the table is only the plain runs (today's layout)."""
        return len(self.sections) > 1 or any(s.is_experiment for s in self.sections)

    # ---- plain data ----------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        recs = []
        for s in self.sections:
            for r in s.rows:
                recs.append(_frame_record(s, r))
        return pd.DataFrame.from_records(recs)

    def to_csv(self) -> str:
        return self.to_frame().to_csv(index=False)

    # ---- formatted -----------------------------------------------------------------------
    def to_markdown(self) -> str:
        parts = []
        for s in self.sections:
            header, cells = _header(s), [_cells(s, r) for r in s.rows]
            lines = [f"### {s.title}", ""] if self._headed else []
            lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in cells]
            if s.notes:
                lines += [""] + [f"- {n}" for n in s.notes]
            parts.append("\n".join(lines) + "\n")
        return "\n".join(parts)

    def to_latex(self) -> str:
        """Each section as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the notes as comments."""
        parts = []
        for s in self.sections:
            header, cells = _header(s), [_cells(s, r) for r in s.rows]
            spec = "".join("l" if h in TEXT_COLUMNS else "r" for h in header)
            lines = [f"% ctrbench table: {s.title}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
            lines.append(" & ".join(_latex(h) for h in header) + r" \\")
            lines.append("\\midrule")
            for r, row in zip(s.rows, cells):
                if r.is_oracle:
                    lines.append("\\midrule")
                lines.append(" & ".join(_latex(c) for c in row) + r" \\")
            lines += ["\\bottomrule", "\\end{tabular}"]
            lines += [f"% note: {n}" for n in s.notes]
            parts.append("\n".join(lines) + "\n")
        return "\n".join(parts)

    def to_rich(self, notes: bool = False, width: int | None = None):
        """The terminal rendering: one rich Table per section (a Group when there are several, or
        when ``notes`` puts each section's notes under it). A published-table section narrower than
        ``width`` (default: the console's) keeps every column; a wider one drops, in turn, the std of
        the metrics other than the table's, an all-zero failed/missing column, logloss, and the
        other AUC, so that no column is squeezed to nothing (the files keep everything)."""
        from rich import get_console
        from rich.console import Group
        from rich.text import Text

        width = width or get_console().width
        items = []
        for s in self.sections:
            items.append(_rich_section(s, headed=self._headed, width=width))
            if notes:
                items += [Text(f"note: {n}", style="dim" if s.is_experiment else None) for n in s.notes]
                if s.is_experiment:
                    items.append(Text(""))
        if len(items) == 1:
            return items[0]
        return Group(*items)


# ---- cells ------------------------------------------------------------------------------------
def _num(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _ms(r: Row, m: str) -> str:
    v = r.mean.get(m)
    if not _num(v):
        return "–"
    return f"{v:.4f}" if r.is_oracle or r.n_seeds <= 1 else f"{v:.4f} ± {r.std[m]:.4f}"


def _ri(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2f}%"


def _pub_num(v: float) -> str:
    """A published number as printed: at least 4 decimals, more if the source gives more."""
    text = repr(float(v))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{v:.{max(4, decimals)}f}"


def _pub(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return _pub_num(mean) if std is None else f"{_pub_num(mean)} ± {_pub_num(std)}"


def _show_failures(s: Section) -> bool:
    return any(r.n_failed or r.n_missing for r in s.rows)


def _header(s: Section) -> list[str]:
    if not s.is_experiment:
        h = ["dataset", "model", "act", "reg", "seeds", "AUC", "GAUC", "logloss", "RelaImpr"]
        return h + (["failed/missing"] if _show_failures(s) else [])
    h = ["row", "seeds", "AUC", "GAUC", "logloss", "RelaImpr"]
    for c in s.columns:
        if s.comparable:
            h += [c.label, f"Δ {c.label}"]
        else:
            h.append(f"{c.label} ({c.dataset})")
    return h + ["p", "failed/missing"]


def _cells(s: Section, r: Row) -> list[str]:
    if not s.is_experiment:
        cells = [r.dataset, r.model, r.act, r.reg, "–" if r.is_oracle else str(r.n_seeds), _ms(r, "auc"), _ms(r, "gauc"),
                 _ms(r, "logloss"), _ri(r.rela_impr_gauc)]
        if _show_failures(s):
            cells.append(f"{r.n_failed}/{r.n_missing}")
        return cells
    cells = [r.label, "–" if r.is_oracle else str(r.n_seeds), _ms(r, "auc"), _ms(r, "gauc"), _ms(r, "logloss"), _ri(r.rela_impr)]
    for c in s.columns:
        cells.append(_pub(*r.published.get(c.label, (None, None))))
        if s.comparable:
            d = r.diff.get(c.label)
            cells.append("–" if d is None else f"{d:+.4f}")
    if r.is_oracle:
        cells.append("–")
    elif r.is_baseline:
        cells.append("ref")
    else:
        cells.append(stats.format_p(r.p_value))
    if r.is_oracle:
        cells.append("")
    elif r.no_runs:
        cells.append("missing (no runs)")
    else:
        cells.append(f"{r.n_failed}/{r.n_missing}")
    return cells


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "–": "--", "Δ": r"$\Delta$", "·": r"$\cdot$", "’": "'"}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX text: the special characters escaped, ±, –, Δ and · spelled in LaTeX."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for k, v in _LATEX_UNICODE.items():
        out = out.replace(k, v)
    return out


def _latex(text: str) -> str:
    return latex_escape(text)


def _rich_header(s: Section, h: str) -> str:
    """Shorter headers for the terminal (the Markdown / LaTeX / CSV ones stay spelled out)."""
    if not s.is_experiment:
        return h
    if h.startswith("Δ "):
        return "Δ"
    if s.lookup is not None and not s.comparable and h.endswith(f"({s.lookup.published_dataset})"):
        return h[: -len(f" ({s.lookup.published_dataset})")] + "†"
    return {"seeds": "n", "failed/missing": "fail/miss"}.get(h, h)


def _fits(header: list[str], cells: list[list[str]], width: int) -> bool:
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    return sum(widths) + 3 * len(widths) + 1 <= width


def _compact(s: Section, header: list[str], cells: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """Drop what the terminal can spare until the experiment table fits in ``width`` columns
    (``cells`` come with "missing" in the fail/miss column of a row with no runs)."""
    def drop_at(i: int) -> None:
        header.pop(i)
        for row in cells:
            row.pop(i)

    def drop(name: str) -> None:
        if name in header:
            drop_at(header.index(name))

    metric = METRIC_NAMES[s.metric]

    def strip_std() -> None:
        for i, h in enumerate(header):
            if h in ("AUC", "GAUC", "logloss") and h != metric:
                for row in cells:
                    row[i] = row[i].split("±")[0]

    def drop_clean_failures() -> None:
        if "fail/miss" in header and all(row[header.index("fail/miss")] in ("0/0", "") for row in cells):
            drop("fail/miss")

    def keep_first_published() -> None:
        first, end = header.index("RelaImpr") + 1, header.index("p")
        for i in reversed(range(first + (2 if s.comparable else 1), end)):
            drop_at(i)

    def strip_metric_std() -> None:
        i = header.index(metric)
        for row in cells:
            row[i] = row[i].split("±")[0]

    def fold_failures_into_n() -> None:
        if "fail/miss" not in header:
            return
        i, n = header.index("fail/miss"), header.index("n")
        for r, row in zip(s.rows, cells):
            if r.no_runs:
                row[n] = "missing"
            elif r.n_failed or r.n_missing:
                row[n] = f"{row[n]}!"
        drop_at(i)

    steps = (strip_std, drop_clean_failures, lambda: drop("logloss"), lambda: drop("AUC" if metric == "GAUC" else "GAUC"),
             keep_first_published, strip_metric_std, fold_failures_into_n)
    for step in steps:
        if _fits(header, cells, width):
            break
        step()
    return header, cells


def _rich_section(s: Section, headed: bool, width: int = 200):
    from rich.markup import escape
    from rich.table import Table

    header = _header(s)
    cells = [[c.replace(" ± ", "±") for c in _cells(s, r)] for r in s.rows]
    for r, row in zip(s.rows, cells):
        if r.no_runs:
            row[-1] = "missing"
    if not s.is_experiment:
        datasets = sorted({r.dataset for r in s.rows})
        one = len(datasets) == 1
        title = f"ctrbench results · {datasets[0]}" if one else "ctrbench results"
        if headed:
            title = f"{title} · runs outside a published table"
        skip = {0} if one else set()
        metric_col = 5 if one else 6
        if one:
            header, cells = header[1:], [row[1:] for row in cells]
    else:
        title = s.title
        header = [_rich_header(s, h) for h in header]
        before = (list(header), [list(row) for row in cells])
        header, cells = _compact(s, header, cells, width)
        compacted = (header, cells) != before
        metric_col = header.index(METRIC_NAMES[s.metric])
    t = Table(title=escape(title))
    for h in header:
        if h == "row":
            label_width = max((len(r.label) for r in s.rows), default=3)
            t.add_column("row", justify="left", min_width=min(label_width, 24))
            continue
        left = h in TEXT_COLUMNS or h == "fail/miss"
        t.add_column(escape(h), justify="left" if left else "right", no_wrap=True)
    best: dict[str, float] = {}
    for r in s.rows:
        g = r.mean.get(s.metric)
        if not r.is_oracle and _num(g):
            best[r.dataset] = max(best.get(r.dataset, -1.0), g)
    for r, row in zip(s.rows, cells):
        row = [escape(c) for c in row]
        if not r.is_oracle and _num(r.mean.get(s.metric)) and r.mean.get(s.metric) == best.get(r.dataset):
            row[metric_col] = f"[bold]{row[metric_col]}[/bold]"
        if r.is_oracle and not s.is_experiment:
            row[0 if skip else 1] = "oracle"
        if r.no_runs:
            row = [f"[red]{c}[/red]" if c == "missing" else c for c in row]
        t.add_row(*row, style="dim" if r.is_oracle else None)
    if not s.is_experiment and any(r.is_oracle for r in s.rows):
        t.caption = ORACLE_NOTE
    elif s.is_experiment:
        caption = []
        if s.lookup is not None and s.lookup.columns and not s.comparable:
            caption.append(f"† published on {s.lookup.published_dataset}, for orientation only (no Δ): {s.lookup.reason}")
        if compacted:
            caption.append("narrow terminal: some columns left out (format=markdown, csv or latex has them all)")
        if "fail/miss" not in header and any(r.n_failed or r.n_missing for r in s.rows):
            caption.append("n!: some runs of the row failed or did not finish")
        t.caption = escape(" · ".join(caption)) if caption else None
    return t


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _frame_record(s: Section, r: Row) -> dict:
    rec = {
        "dataset": r.dataset, "model": r.model, "act": r.act, "reg": r.reg,
        "n_seeds": r.n_seeds, "seeds": " ".join(str(x) for x in r.seeds),
    }
    for m in METRICS:
        rec[f"{m}_mean"] = r.mean.get(m)
        rec[f"{m}_std"] = r.std.get(m)
    rec.update(rela_impr_gauc=r.rela_impr_gauc, rela_impr_auc=r.rela_impr_auc, n_failed=r.n_failed, n_missing=r.n_missing)
    rec.update(
        experiment=r.experiment, row=r.row_key, row_name=r.row_name if s.is_experiment else None,
        metric=s.metric if s.is_experiment else None, rela_impr=r.rela_impr if s.is_experiment else None,
        p_value=r.p_value, t=None if r.welch is None else r.welch.t, dof=None if r.welch is None else r.welch.dof,
        is_oracle=r.is_oracle, no_runs=r.no_runs,
        published_dataset=s.lookup.published_dataset if s.lookup else None,
        published_comparable=s.comparable if s.lookup else None,
    )
    for c in s.columns:
        mean, std = r.published.get(c.label, (None, None))
        rec[f"published_{_slug(c.label)}"] = mean
        rec[f"published_{_slug(c.label)}_std"] = std
        rec[f"diff_{_slug(c.label)}"] = r.diff.get(c.label)
    return rec


# ---- building ---------------------------------------------------------------------------------
def _aggregate(row: Row, recs: list[RunRecord]) -> Row:
    done = [r for r in recs if r.status == "completed"]
    row.runs = list(recs)
    row.seeds = sorted(r.seed for r in done)
    row.n_failed = sum(r.status not in ("completed", "missing") for r in recs)
    row.n_missing = sum(r.status == "missing" for r in recs)
    for m in METRICS:
        vals = np.array([r.test.get(m, float("nan")) for r in done], dtype=float)
        row.values[m] = [float(v) for v in vals]
        row.mean[m] = float(vals.mean()) if vals.size else None
        row.std[m] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    return row


def _oracle_row(dataset: str, records: list[RunRecord], **extra) -> Row | None:
    oracle = next((r.oracle["test"] for r in records if r.dataset == dataset and r.oracle and r.oracle.get("test")), None)
    if not oracle:
        return None
    return Row(dataset, ORACLE, "", "", mean={m: oracle.get(m) for m in METRICS}, std={m: 0.0 for m in METRICS},
               is_oracle=True, **extra)


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


def _plain_section(records: list[RunRecord]) -> Section:
    """Runs outside a published table: grouped by (dataset, model, act, reg), as before."""
    groups: dict[tuple, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.dataset, rec.model, rec.act, rec.reg), []).append(rec)
    rows: list[Row] = []
    notes: list[str] = []
    for (dataset, model, act, reg), recs in groups.items():
        rows.append(_aggregate(Row(dataset, model, act, reg), recs))
        if any(r.selection == "test_as_valid" for r in recs if r.status == "completed"):
            notes.append(f"{dataset}/{model}/{act}/{reg}: model selection used the test set (trainer.selection=test_as_valid)")
    for dataset in sorted({r.dataset for r in records}):
        o = _oracle_row(dataset, records)
        if o:
            rows.append(o)
    for row in rows:
        base = _pick_base(rows, row)
        if base is None:
            continue
        row.rela_impr_gauc = stats.rela_impr(row.mean.get("gauc"), base.mean.get("gauc"))
        row.rela_impr_auc = stats.rela_impr(row.mean.get("auc"), base.mean.get("auc"))
        row.rela_impr = row.rela_impr_gauc
        if not row.is_oracle:
            row.rela_impr_seeds = stats.rela_impr_per_seed(row.values.get("gauc", []), base.mean.get("gauc"))
    for dataset in sorted({r.dataset for r in rows}):
        if not any(r.dataset == dataset and r.model == "base" and r.n_seeds for r in rows):
            notes.append(f"{dataset}: no completed 'base' run, so RelaImpr is not shown (it is measured against BaseModel)")
    if any(r.n_missing for r in rows):
        notes.append(FAILED_NOTE)
    rows.sort(key=_order_key)
    return Section(rows=rows, notes=notes)


def _uniform(values: list[str]) -> str:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else "|".join(distinct)


def _experiment_section(experiment: str, dataset: str, records: list[RunRecord]) -> Section:
    spec = pub.get_table(experiment)
    metric = spec.metric if spec else "gauc"
    baseline_key = spec.baseline if spec else "base"
    groups: dict[str, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault(rec.row if rec.row is not None else rec.model, []).append(rec)
    paper_keys = spec.row_keys if spec else []
    extra = [k for k in groups if k not in paper_keys]
    rows: list[Row] = []
    for key in paper_keys + extra:
        recs = groups.get(key, [])
        row = Row(dataset, _uniform([r.model for r in recs]) if recs else "", _uniform([r.act for r in recs]) if recs else "",
                  _uniform([r.reg for r in recs]) if recs else "", experiment=experiment, row_key=key,
                  row_name=spec.row_name(key) if spec else key, no_runs=not recs, is_baseline=key == baseline_key)
        rows.append(_aggregate(row, recs))
    oracle = _oracle_row(dataset, records, experiment=experiment)
    if oracle:
        rows.append(oracle)

    done = [r for r in records if r.status == "completed"]
    protocols = Counter(r.protocol for r in done)
    lookup = None
    if spec:
        one = next(iter(protocols)) if len(protocols) == 1 else None
        lookup = pub.lookup(experiment, dataset, one)
        if len(protocols) > 1 and lookup.comparable:
            lookup = replace(lookup, comparable=False, reason="mixed protocols: " + _counts(protocols))

    base = next((r for r in rows if r.is_baseline and r.n_seeds), None)
    for row in rows:
        if base is not None:
            row.rela_impr = stats.rela_impr(row.mean.get(metric), base.mean.get(metric))
            row.rela_impr_gauc = stats.rela_impr(row.mean.get("gauc"), base.mean.get("gauc"))
            row.rela_impr_auc = stats.rela_impr(row.mean.get("auc"), base.mean.get("auc"))
            if not row.is_oracle:
                row.rela_impr_seeds = stats.rela_impr_per_seed(row.values.get(metric, []), base.mean.get(metric))
                if not row.is_baseline:
                    row.welch = stats.welch(row.values.get(metric, []), base.values.get(metric, []))
        if lookup and not row.is_oracle:
            for c in lookup.columns:
                mean, std = c.mean(row.row_key, metric), c.std(row.row_key, metric)
                if mean is None:
                    continue
                row.published[c.label] = (mean, std)
                ours = row.mean.get(metric)
                if lookup.comparable and _num(ours):
                    row.diff[c.label] = ours - mean
    section = Section(rows=rows, experiment=experiment, dataset=dataset, spec=spec, lookup=lookup, metric=metric)
    section.notes = _experiment_notes(section, records, extra, base)
    return section


def _counts(c: Counter) -> str:
    return ", ".join(f"{'not recorded' if k is None else k} ×{n}" for k, n in sorted(c.items(), key=lambda kv: str(kv[0])))


def _describe(d: dict | None, fallback: str) -> str:
    """``prelu (in_attention=true, init=0.1)`` from a variant's activation / regularizer dict."""
    if not d:
        return f"{fallback} (settings not recorded)"
    rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items() if k != "name")
    name = d.get("name", fallback)
    return f"{name} ({rest})" if rest else str(name)


def _weighting(r: RunRecord) -> str | None:
    w = (r.test or {}).get("gauc_weighting")
    if w is None and r.variant:
        w = r.variant.get("gauc_weighting")
    return w


PROTOCOL_TEXT = {
    "din": "the DIN paper's (every position a training target, the last behaviour the test pair)",
    "dien": "the DIEN paper's (the last behaviour of each user, users split 90/10)",
    "movielens": "the DIN paper's MovieLens (users split at random, label = rating >= 4)",
    "as_is": "the files' own train/test split (BARS)",
}
SELECTION_TEXT = {
    "valid": "valid (best validation GAUC, validation carved from the training data)",
    "test_as_valid": "test_as_valid (the checkpoint picked on the test set, as the official code and BARS do)",
}


def _experiment_notes(s: Section, records: list[RunRecord], extra: list[str], base: Row | None) -> list[str]:
    notes: list[str] = []
    spec, m, M = s.spec, s.metric, METRIC_NAMES[s.metric]
    done = [r for r in records if r.status == "completed"]
    by_name = {r.row_key: r.label for r in s.rows}
    # what the numbers are
    if spec is None:
        notes.append(f"{s.experiment}: no published table of this name (ctrbench/report/published.json); rows in the order found, "
                     "metric GAUC, RelaImpr against 'base'")
    if m == "gauc":
        notes.append("metric: GAUC, the user-weighted AUC of the DIN paper's Eq. (10) (the paper's 'AUC' column)")
    else:
        notes.append("metric: AUC over all test samples (the DIEN paper's)")
    if base is not None:
        notes.append(f"RelaImpr (DIN paper Eq. 11) on the mean {M} against '{s.baseline_name}'; p: Welch's t-test (unequal variances, "
                     f"two-sided) of each row's per-seed {M} against '{s.baseline_name}'; * p<0.05, ** p<0.01, *** p<0.001; "
                     "– fewer than 2 seeds on a side")
    else:
        notes.append(f"no completed '{s.baseline_name}' run: RelaImpr and p (measured against it) are not shown")
    degenerate = [r.label for r in s.rows if r.welch is not None and r.welch.degenerate]
    if degenerate:
        notes.append(f"zero variance over seeds on both sides for {', '.join(degenerate)}: p is 0 (different means) or 1 (equal)")
    # the published numbers
    if s.lookup is not None and s.lookup.columns:
        for c in s.lookup.columns:
            extra_note = f" ({c.note})" if c.note else ""
            notes.append(f"published '{c.label}' on {c.dataset}: {c.source}{extra_note}")
        if s.lookup.comparable:
            notes.append(f"Δ = ours − published, on {M} (mean over seeds)")
            if s.lookup.note:
                notes.append(s.lookup.note)
            for u in pub.unmapped(s.dataset):
                v = u["values"].get(m)
                if v:
                    notes.append(f"also published on {u['dataset']} and mapped to no row: {u['model']} {M} {_pub_num(v['mean'])} "
                                 f"({u['source']}; {u['note']})")
        else:
            notes.append(f"published numbers shown for orientation only, no difference: {s.lookup.reason}")
    if spec is not None:
        notes += list(spec.notes)
    # how they were produced
    protocols = Counter(r.protocol for r in done)
    expected = s.lookup.protocol if s.lookup else None
    if len(protocols) > 1:
        notes.append(f"MIXED protocols: {_counts(protocols)}; the rows are not comparable with each other")
    elif protocols:
        p = next(iter(protocols))
        if p is None:
            notes.append("protocol: not recorded in metrics.json")
        else:
            text = f"protocol: {p}, {PROTOCOL_TEXT.get(p, p)}"
            if expected is not None and s.lookup.comparable:
                text += " (as the published numbers)"
            notes.append(text)
    weightings = Counter(_weighting(r) for r in done)
    if len(weightings) > 1:
        notes.append(f"MIXED GAUC weightings: {_counts(weightings)}")
    elif weightings:
        w = next(iter(weightings))
        text = f"GAUC weighting: {w or 'not recorded'}"
        if w in ("impressions", "samples"):
            text += " (each user weighted by impressions, the DIN paper's Eq. 10)"
        elif m == "gauc" and spec is not None:
            text += " (NOT the DIN paper's impression weighting)"
        notes.append(text)
    for kind, var_key in (("act", "activation"), ("reg", "regularizer")):
        settings: dict[str, dict[str, list[str]]] = {}
        for row in s.rows:
            for r in row.runs:
                if r.status != "completed":
                    continue
                name = getattr(r, kind)
                desc = _describe((r.variant or {}).get(var_key), name)
                rows_of = settings.setdefault(name, {}).setdefault(desc, [])
                if row.label not in rows_of:
                    rows_of.append(row.label)
        for name, descs in settings.items():
            if len(descs) == 1:
                desc, names = next(iter(descs.items()))
                notes.append(f"{kind} {desc}: {', '.join(names)}")
            else:
                notes.append(f"MIXED {kind} {name} settings: " + "; ".join(f"{d}: {', '.join(n)}" for d, n in descs.items()))
    selections = Counter(r.selection for r in done)
    if len(selections) > 1:
        notes.append(f"MIXED model selection: {_counts(selections)}")
    elif selections:
        sel = next(iter(selections))
        notes.append(f"model selection: {SELECTION_TEXT.get(sel, sel)}")
    # rows whose runs differ in their config
    for row in s.rows:
        done_row = [r for r in row.runs if r.status == "completed"]
        configs = Counter(f"{r.model}/{r.act}/{r.reg}" for r in done_row)
        if len(configs) > 1:
            notes.append(f"MIXED configs in row '{row.label}': {_counts(configs)}")
        variants = {json.dumps(r.variant, sort_keys=True) for r in done_row}
        if len(configs) == 1 and len(variants) > 1:
            notes.append(f"MIXED settings in row '{row.label}': its runs' metrics.json 'variant' differ")
        seeds = Counter(row.seeds)
        dup = sorted(k for k, n in seeds.items() if n > 1)
        if dup:
            notes.append(f"row '{row.label}' has several runs of seed(s) {', '.join(map(str, dup))}")
    # what is absent
    no_runs = [r.label for r in s.rows if r.no_runs]
    if no_runs:
        notes.append(f"rows of the paper with no runs: {', '.join(no_runs)}")
    rowless = Counter(r.model for r in records if r.row is None)
    if rowless:
        notes.append(f"runs with an experiment but no row, grouped under their model's name: {_counts(rowless)}")
    if extra and spec is not None:
        notes.append(f"rows not in {spec.paper} {spec.table}, shown after its rows: {', '.join(by_name[k] for k in extra)}")
    if any(r.n_failed or r.n_missing for r in s.rows):
        notes.append(FAILED_NOTE)
    if any(r.is_oracle for r in s.rows):
        notes.append(ORACLE_NOTE)
    return notes


def build_table(records: list[RunRecord]) -> ResultTable:
    """The report over ``records``: one section per (published table, dataset) for runs that carry
    an ``experiment``, then the plain table of the other runs."""
    sections: list[Section] = []
    by_key: dict[tuple[str, str], list[RunRecord]] = {}
    for rec in records:
        if rec.experiment:
            by_key.setdefault((rec.experiment, rec.dataset), []).append(rec)
    known = pub.table_ids() if by_key else []

    def order(k: tuple[str, str]) -> tuple:
        return (known.index(k[0]) if k[0] in known else len(known), k[0], k[1])

    for key in sorted(by_key, key=order):
        sections.append(_experiment_section(key[0], key[1], by_key[key]))
    plain = [r for r in records if not r.experiment]
    if plain:
        sections.append(_plain_section(plain))
    rows = [r for s in sections for r in s.rows]
    if len(sections) == 1:
        notes = list(sections[0].notes)
    else:
        notes = [f"{s.title}: {n}" for s in sections for n in s.notes]
    return ResultTable(rows=rows, notes=notes, sections=sections)


def write_table(table: ResultTable, fmt: str, path: str | Path) -> Path:
    """Write the table as Markdown, CSV or LaTeX, atomically (temporary file, then rename)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}: expected one of {', '.join(FORMATS)} (or rich, for the terminal only)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = {"markdown": table.to_markdown, "csv": table.to_csv, "latex": table.to_latex}[fmt]()
    atomic_write_text(path, text)
    return path
