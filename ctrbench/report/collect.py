"""Collect finished (and unfinished) runs from run and multirun folders (docs/run-folder.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ctrbench.errors import UserError

REQUIRED = ("dataset", "model", "act", "reg", "seed", "test")


@dataclass
class RunRecord:
    path: Path
    dataset: str
    model: str
    act: str
    reg: str
    seed: int | None
    status: str  # completed | failed | missing
    test: dict = field(default_factory=dict)
    valid_best: dict | None = None
    oracle: dict | None = None
    selection: str = "valid"
    train_samples_per_s: float | None = None
    raw: dict = field(default_factory=dict)
    # set by +experiment=<table> / +row=<table>/<row> (null for runs outside a published table)
    experiment: str | None = None
    row: str | None = None
    protocol: str | None = None  # din | dien | movielens | as_is (null: not recorded)
    variant: dict | None = None  # the model's switches, activation and regularizer as trained

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"


def _read(path: Path) -> RunRecord:
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"'{path}' is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(m, dict):
        raise UserError(f"'{path}' does not hold a JSON object")
    for key in REQUIRED:
        if key not in m:
            raise UserError(f"'{path}' has no '{key}': expected a metrics.json written by `ctrbench train`")
    return RunRecord(
        path=path.parent, dataset=str(m["dataset"]), model=str(m["model"]), act=str(m["act"]), reg=str(m["reg"]),
        seed=m["seed"], status=str(m.get("status", "completed")), test=m["test"] or {}, valid_best=m.get("valid_best"),
        oracle=m.get("oracle"), selection=str(m.get("selection", "valid")),
        train_samples_per_s=m.get("train_samples_per_s"), raw=m,
        experiment=_opt_str(m.get("experiment")), row=_opt_str(m.get("row")), protocol=_opt_str(m.get("protocol")),
        variant=m.get("variant") if isinstance(m.get("variant"), dict) else None,
    )


def _opt_str(v) -> str | None:
    return None if v is None else str(v)


def _missing(job_dir: Path) -> RunRecord:
    """A multirun job folder with a composed config but no metrics.json: it did not finish."""
    names = {"dataset": "?", "model": "?", "act": "?", "reg": "?"}
    seed = experiment = row = None
    cfg_path = job_dir / ".hydra" / "config.yaml"
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(cfg_path)
        for k in names:
            names[k] = str(OmegaConf.select(cfg, f"{k}.name", default="?"))
        seed = OmegaConf.select(cfg, "seed", default=None)
        experiment = _opt_str(OmegaConf.select(cfg, "experiment_name", default=None))
        row = _opt_str(OmegaConf.select(cfg, "row_name", default=None))
    except Exception:  # an unreadable config still shows up as a missing run
        pass
    return RunRecord(path=job_dir, seed=seed, status="missing", experiment=experiment, row=row, **names)


def find_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Every run under the given run or multirun folders, unfinished jobs included as 'missing'."""
    records: list[RunRecord] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"run folder '{p}' does not exist")
        if p.is_file():
            raise UserError(f"'{p}' is a file: expected a run folder written by `ctrbench train` (or a multirun folder of them)")
        found = sorted(p.rglob("metrics.json")) if not (p / "metrics.json").exists() else [p / "metrics.json"]
        if not found:
            raise UserError(
                f"no metrics.json under '{p}': expected a run folder written by `ctrbench train` (or a multirun folder of them)"
            )
        records += [_read(f) for f in found]
        done = {f.parent for f in found}
        for hydra_dir in sorted(p.rglob(".hydra")):
            job = hydra_dir.parent
            if job not in done and (hydra_dir / "config.yaml").exists():
                records.append(_missing(job))
    return records
