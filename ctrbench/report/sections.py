"""What a result table holds, before any rendering: its sections (a published table on one
dataset, or the plain runs) and their rows (one per model/act/reg or per paper row, aggregated over
seeds). Built by ``report.table``, drawn by ``report.render`` and ``report.plots``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ctrbench.report import published as pub
from ctrbench.report import stats

METRICS = ("auc", "gauc", "logloss")
ORACLE_NOTE = "oracle: the Bayes-optimal score (the data's known click probability), a ceiling no model beats in expectation"
METRIC_NAMES = {"auc": "AUC", "gauc": "GAUC", "logloss": "logloss"}
TEXT_COLUMNS = ("dataset", "model", "act", "reg", "row", "failed/missing")
ORACLE = "oracle (Bayes-optimal)"


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
    # the dataset's name when ``dataset`` is a processed dataset's folder name (runs of one dataset
    # name on several processed datasets, see report.table); the published numbers are looked up by it
    dataset_name: str | None = None
    baseline: str | None = None  # the row key RelaImpr is measured against (an experiment of your own: its baseline_row)

    @property
    def is_experiment(self) -> bool:
        return self.experiment is not None

    @property
    def title(self) -> str:
        if not self.is_experiment:
            return "runs outside a published table" + (f" · {self.dataset}" if self.dataset else "")
        what = f"{self.spec.paper} {self.spec.table}" if self.spec else "your table (not a published one)"
        return f"{self.experiment} · {what} · {self.dataset} · metric {METRIC_NAMES[self.metric]}"

    @property
    def baseline_name(self) -> str:
        if self.spec:
            return self.spec.row_name(self.spec.baseline)
        return self.baseline or "base"

    @property
    def columns(self) -> list[pub.PublishedColumn]:
        return list(self.lookup.columns) if self.lookup else []

    @property
    def comparable(self) -> bool:
        return bool(self.lookup and self.lookup.comparable)
