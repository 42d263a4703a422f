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

This module builds the table (rows, sections, notes); ``render.py`` turns it into cells and formats.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import UserError
from ctrbench.report import published as pub
from ctrbench.report import render
from ctrbench.report.render import is_num, published_number  # noqa: F401 (re-exported)
from ctrbench.report.sections import METRIC_NAMES, METRICS, ORACLE, ORACLE_NOTE, TEXT_COLUMNS, Row, Section  # noqa: F401 (re-exported)
from ctrbench.report import stats
from ctrbench.report.collect import RunRecord

PAPER_ORDER = ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"]
FORMATS = ("markdown", "csv", "latex")
FAILED_NOTE = "failed/missing: runs whose job failed, or that have a config but no metrics.json (unfinished)"


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

    # ---- renderings (ctrbench/report/render.py) ---------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        return render.frame(self.sections)

    def to_csv(self) -> str:
        return self.to_frame().to_csv(index=False)

    def to_markdown(self) -> str:
        return render.markdown(self.sections, self._headed)

    def to_latex(self) -> str:
        """Each section as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the notes as comments."""
        return render.latex(self.sections)

    def to_rich(self, notes: bool = False, width: int | None = None):
        """The terminal rendering (``render.rich``)."""
        return render.rich(self.sections, self._headed, notes=notes, width=width)


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
    # the dataset's own name for the published numbers (``dataset`` is the processed dataset's
    # folder name when runs of this name used several, see _by_processed_dataset)
    name = next((str(r.raw["dataset_name"]) for r in records if r.raw.get("dataset_name")), dataset)
    spec = pub.get_table(experiment)
    metric = spec.metric if spec else "gauc"
    baseline_key = spec.baseline if spec else _own_baseline(records)
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
                  row_name=_row_name(spec, key), no_runs=not recs, is_baseline=key == baseline_key)
        rows.append(_aggregate(row, recs))
    oracle = _oracle_row(dataset, records, experiment=experiment)
    if oracle:
        rows.append(oracle)

    done = [r for r in records if r.status == "completed"]
    protocols = Counter(r.protocol for r in done)
    lookup = None
    if spec:
        one = next(iter(protocols)) if len(protocols) == 1 else None
        lookup = pub.lookup(experiment, name, one)
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
                if lookup.comparable and is_num(ours):
                    row.diff[c.label] = ours - mean
    section = Section(rows=rows, experiment=experiment, dataset=dataset, spec=spec, lookup=lookup, metric=metric, dataset_name=name)
    section.baseline = baseline_key
    section.notes = _experiment_notes(section, records, extra, base)
    return section


# a row of a published table's experiment that is not one of the paper's rows (a model of your own,
# +row=<table>/<your row>; docs/extending.md), unless published.json names it as a reference row
NOT_IN_PAPER = "(not in the paper)"


def _row_name(spec: pub.TableSpec | None, key: str) -> str:
    if spec is None:
        return key
    if key in spec.row_keys or key in dict(spec.extra_rows):
        return spec.row_name(key)
    return f"{key} {NOT_IN_PAPER}"


def _own_baseline(records: list[RunRecord]) -> str:
    """The baseline row of an experiment of the user's own (no published table): the ``baseline_row``
    its runs recorded (set in the experiment's config), else ``base``."""
    named = Counter(str(r.raw["baseline_row"]) for r in records if r.raw.get("baseline_row"))
    return named.most_common(1)[0][0] if named else "base"


def _counts(c: Counter) -> str:
    return ", ".join(f"{'not recorded' if k is None else k} ×{n}" for k, n in sorted(c.items(), key=lambda kv: str(kv[0])))


def _describe(d: dict | None, fallback: str) -> str:
    """``prelu (in_attention=true, init=0.1)`` from a variant's activation / regularizer dict."""
    if not d:
        return f"{fallback} (settings not recorded)"
    rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items() if k != "name")
    name = d.get("name", fallback)
    return f"{name} ({rest})" if rest else str(name)


def describe_training(t: dict | None) -> str:
    """``sgd lr=1.0, batch 32, lr ×0.1 every 4 epochs (exponential), grad clip 5.0, uniformly shuffled
    batches`` from a run's ``variant.training`` (metrics.json)."""
    if not t:
        return "not recorded (runs older than the record)"
    parts = [f"{t.get('optimizer')} lr={t.get('lr')}", f"batch {t.get('batch_size')}"]
    sched = t.get("schedule")
    if isinstance(sched, dict):
        every = f"{sched['every_epochs']} epochs" if "every_epochs" in sched else f"{sched.get('every_steps')} steps"
        parts.append(f"lr ×{sched.get('gamma')} every {every} ({sched.get('type')})")
    else:
        parts.append("constant lr")
    if t.get("grad_clip") is not None:
        parts.append(f"grad clip {t['grad_clip']}")
    bucket = t.get("bucket") or 0
    parts.append(f"batches bucketed by history length (chunks of {bucket})" if bucket > 1 else "uniformly shuffled batches")
    return ", ".join(parts)


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


def _rows_by(s: Section, key) -> dict:
    """``key(run)`` of every completed run -> the labels of the rows holding such runs, in row order."""
    out: dict = {}
    for row in s.rows:
        for r in row.runs:
            if r.status == "completed":
                labels = out.setdefault(key(r), [])
                if row.label not in labels:
                    labels.append(row.label)
    return out


def _experiment_notes(s: Section, records: list[RunRecord], extra: list[str], base: Row | None) -> list[str]:
    notes: list[str] = []
    spec, m, M = s.spec, s.metric, METRIC_NAMES[s.metric]
    done = [r for r in records if r.status == "completed"]
    by_name = {r.row_key: r.label for r in s.rows}
    # what the numbers are
    if spec is None:
        notes.append(f"{s.experiment}: an experiment of your own, not a published table (ctrbench/report/published.json): rows in "
                     f"the order found, metric GAUC, RelaImpr against '{s.baseline_name}' (the experiment's baseline_row; default base)")
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
            for u in pub.unmapped(s.dataset_name or s.dataset):
                v = u["values"].get(m)
                if v:
                    notes.append(f"also published on {u['dataset']} and mapped to no row: {u['model']} {M} {published_number(v['mean'])} "
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
        by_setting = _rows_by(s, lambda r: (getattr(r, kind), _describe((r.variant or {}).get(var_key), getattr(r, kind))))
        for (name, desc), labels in by_setting.items():
            settings.setdefault(name, {})[desc] = labels
        for name, descs in settings.items():
            if len(descs) == 1:
                desc, names = next(iter(descs.items()))
                notes.append(f"{kind} {desc}: {', '.join(names)}")
            else:
                notes.append(f"MIXED {kind} {name} settings: " + "; ".join(f"{d}: {', '.join(n)}" for d, n in descs.items()))
    trainings = _rows_by(s, lambda r: describe_training((r.variant or {}).get("training")))
    if len(trainings) == 1:
        notes.append(f"training: {next(iter(trainings))}")
    elif trainings:
        notes.append("MIXED training setups: " + "; ".join(f"{d}: {', '.join(n)}" for d, n in trainings.items()))
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


def _by_processed_dataset(records: list[RunRecord]) -> tuple[list[RunRecord], dict[str, str]]:
    """Runs whose dataset name covers several processed datasets (the same name, different dataset
    configs: a full run and a ``+debug=fast`` one are both 'synthetic') get the processed dataset's
    own name (``<name>-<config hash>``, metrics.json ``dataset_dir``) as their dataset, so that each
    gets its own table, rows and oracle; and a note naming them. Other runs are returned as they are."""
    fingerprints: dict[str, Counter] = {}
    for rec in records:
        # an unfinished run has no metrics.json to say (see collect), and a failed run's record may
        # not name its processed dataset: neither makes a dataset of its own
        if rec.status != "missing" and rec.dataset_dir:
            fingerprints.setdefault(rec.dataset, Counter())[rec.dataset_dir] += 1
    notes: dict[str, str] = {}
    out = []
    for rec in records:
        seen = fingerprints.get(rec.dataset, Counter())
        if len(seen) > 1:
            if rec.dataset_dir:
                label = rec.dataset_dir
            elif rec.status == "missing":
                label = f"{rec.dataset} (unfinished runs; processed dataset unknown)"
            else:
                label = f"{rec.dataset} (processed dataset not recorded)"
            rec = replace(rec, dataset=label, raw={**rec.raw, "dataset_name": rec.dataset})
        out.append(rec)
    for name, seen in sorted(fingerprints.items()):
        if len(seen) > 1:
            listed = ", ".join(f"{fp or 'not recorded'} ({n} run{'s' if n > 1 else ''})" for fp, n in sorted(seen.items(), key=lambda kv: str(kv[0])))
            notes[name] = (f"the '{name}' runs used {len(seen)} different processed datasets ({listed}): different dataset configs "
                         "(e.g. +debug=fast), so each is a table of its own, with its own oracle; compare rows within a table only")
    return out, notes


def build_table(records: list[RunRecord]) -> ResultTable:
    """The report over ``records``: one section per (published table, dataset) for runs that carry
    an ``experiment``, then the plain table of the other runs, one per dataset when there are
    several. A dataset is the processed dataset a run read: runs of one dataset name on different
    processed datasets (different dataset configs) are never mixed in one table."""
    records, mixed = _by_processed_dataset(records)
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
    datasets = sorted({r.dataset for r in plain})
    for dataset in datasets:
        section = _plain_section([r for r in plain if r.dataset == dataset] if len(datasets) > 1 else plain)
        if len(datasets) > 1:
            section.dataset = dataset
        sections.append(section)
        if len(datasets) == 1:
            break
    for s in sections:
        names = {run.raw.get("dataset_name") for row in s.rows for run in row.runs} - {None}
        s.notes = [mixed[n] for n in sorted(names)] + s.notes
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
    atomic_write_text(path, render_table(table, fmt))
    return path


def render_table(table: ResultTable, fmt: str) -> str:
    """The table as Markdown, CSV or LaTeX text."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}: expected one of {', '.join(FORMATS)} (or rich, for the terminal only)")
    return {"markdown": table.to_markdown, "csv": table.to_csv, "latex": table.to_latex}[fmt]()


SUFFIXES = {"markdown": "md", "csv": "csv", "latex": "tex"}
LATEX_NOTE = ("the LaTeX uses booktabs rules (\\toprule, \\midrule, \\bottomrule): add \\usepackage{booktabs} to the "
              "document's preamble")


def default_folder(paths: list[str | Path]) -> Path:
    """Where ``ctrbench table`` writes its files when no ``output`` is given: the run or sweep folder
    it read (with several, the folder that holds them all)."""
    import os

    if len(paths) == 1:
        return Path(paths[0])
    return Path(os.path.commonpath([os.path.abspath(p) for p in paths]))
