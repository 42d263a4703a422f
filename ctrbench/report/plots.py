"""Figures for ``ctrbench table ... plot=true``: matplotlib is optional (``pip install 'ctrbench[plot]'``)
and imported only here, only when a plot is asked for.

* ``valid_gauc.png``: validation GAUC against the training step for each row (mean over its seeds,
  a band of ± one standard deviation where at least two seeds reached that step), read from each
  run's ``history.csv``; one panel per published table and dataset (or per dataset for runs
  outside a published table).
* ``relaimpr.png``: RelaImpr (DIN paper Eq. 11) of each row on the section's metric; the bar is the
  RelaImpr of the mean, the error bar the standard deviation over seeds of each seed's RelaImpr
  against the baseline row's mean (the baseline's own spread is not included). The published
  RelaImpr (from the published means) is marked ×, also when the published data differ (RelaImpr is
  a relative number, shown for orientation).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ctrbench.atomic import atomic_path
from ctrbench.errors import UserError
from ctrbench.report import stats
from ctrbench.report.table import METRIC_NAMES, ResultTable, Row, Section

MISSING_MATPLOTLIB = "plot=true needs matplotlib: pip install 'ctrbench[plot]'"
FILES = ("valid_gauc.png", "relaimpr.png")


def require_matplotlib() -> None:
    """Raise the one-line UserError when matplotlib is not installed."""
    _figure_class()


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(MISSING_MATPLOTLIB) from None
    return Figure


def _panels(table: ResultTable) -> list[tuple[str, Section, list[Row]]]:
    """(title, section, rows) per panel: each published-table section, and each dataset of the rest."""
    panels = []
    for s in table.sections:
        if s.is_experiment:
            panels.append((s.title, s, s.rows))
        else:
            for ds in sorted({r.dataset for r in s.rows}):
                panels.append((f"{ds} · runs outside a published table", s, [r for r in s.rows if r.dataset == ds]))
    return panels


def history_curve(row: Row, column: str = "valid_gauc") -> pd.DataFrame | None:
    """Mean, std and seed count of ``column`` per training step over the row's completed runs."""
    frames = []
    for run in row.runs:
        if run.status != "completed" or not run.history_path.exists():
            continue
        try:
            h = pd.read_csv(run.history_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if {"step", column} <= set(h.columns):
            frames.append(h[["step", column]].dropna())
    if not frames:
        return None
    g = pd.concat(frames).groupby("step")[column]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_valid_gauc(table: ResultTable, path: str | Path) -> tuple[Path, list[str]]:
    """Write the validation-GAUC curves; returns the path and the rows that had no history.csv."""
    Figure = _figure_class()
    panels = _panels(table)
    fig = Figure(figsize=(8, 3.6 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    skipped: list[str] = []
    for ax, (title, section, rows) in zip(axes, panels):
        drawn = 0
        for r in rows:
            if r.is_oracle:
                continue
            curve = history_curve(r)
            if curve is None:
                if not r.no_runs and r.n_seeds:
                    skipped.append(f"{title}: {r.label}")
                continue
            line = ax.plot(curve["step"], curve["mean"], marker=".", label=f"{r.label} ({r.n_seeds} seeds)")[0]
            band = curve[curve["n"] >= 2]
            if len(band):
                ax.fill_between(band["step"], band["mean"] - band["std"], band["mean"] + band["std"],
                                color=line.get_color(), alpha=0.15, linewidth=0)
            drawn += 1
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("validation GAUC (mean over seeds)")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no history.csv", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, Path(path)), skipped


def _published_rela_impr(section: Section, row: Row) -> float | None:
    """The published RelaImpr of ``row`` from the first published column's means (None if absent)."""
    if not section.is_experiment or not section.columns or section.spec is None:
        return None
    col = section.columns[0]
    return stats.rela_impr(col.mean(row.row_key, section.metric), col.mean(section.spec.baseline, section.metric))


def plot_relaimpr(table: ResultTable, path: str | Path) -> Path:
    """Write the RelaImpr bars with error bars over seeds."""
    Figure = _figure_class()
    panels = _panels(table)
    width = max(6.0, 0.9 * max((len(rows) for _, _, rows in panels), default=1))
    fig = Figure(figsize=(width, 3.8 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (title, section, rows) in zip(axes, panels):
        metric = METRIC_NAMES[section.metric]
        shown = [r for r in rows if not r.is_oracle]
        xs = list(range(len(shown)))
        heights = [r.rela_impr if r.rela_impr is not None else math.nan for r in shown]
        errs = [stats.mean_std(r.rela_impr_seeds)[1] or 0.0 if len(r.rela_impr_seeds) > 1 else 0.0 for r in shown]
        ax.bar(xs, [0.0 if math.isnan(h) else h for h in heights], yerr=errs, capsize=3, color="tab:blue", alpha=0.8,
               label=f"ours (RelaImpr of the mean {metric}; error bar: std over seeds)")
        pub_x = [(x, _published_rela_impr(section, r)) for x, r in zip(xs, shown)]
        pub_x = [(x, v) for x, v in pub_x if v is not None]
        if pub_x:
            col = section.columns[0]
            where = "" if section.comparable else f", {col.dataset}: different data"
            ax.scatter([x for x, _ in pub_x], [v for _, v in pub_x], marker="x", color="tab:red", zorder=3,
                       label=f"published ({col.label}{where})")
        for x, h, r in zip(xs, heights, shown):
            if math.isnan(h):
                ax.text(x, 0, "missing" if r.no_runs or not r.n_seeds else "–", ha="center", va="bottom", fontsize=7, rotation=90)
        oracle = next((r for r in rows if r.is_oracle and r.rela_impr is not None), None)
        if oracle is not None:
            ax.axhline(oracle.rela_impr, color="grey", linestyle="--", linewidth=1, label="oracle (Bayes-optimal)")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(xs)
        ax.set_xticklabels([r.label for r in shown], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"RelaImpr on {metric} (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(path))


def write_plots(table: ResultTable, folder: str | Path) -> tuple[list[Path], list[str]]:
    """Write valid_gauc.png and relaimpr.png into ``folder``; returns their paths and warnings."""
    require_matplotlib()  # fail before writing anything when matplotlib is absent
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curves, skipped = plot_valid_gauc(table, folder / FILES[0])
    bars = plot_relaimpr(table, folder / FILES[1])
    warnings = [f"no history.csv for {', '.join(skipped)}: left out of {FILES[0]}"] if skipped else []
    return [curves, bars], warnings
