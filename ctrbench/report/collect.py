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
    # the processed dataset the run read, ``<name>-<config hash>`` (metrics.json ``dataset_dir``): two
    # runs with the same dataset name but different dataset configs (+debug=fast) differ here
    dataset_dir: str | None = None

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
        dataset_dir=_opt_str(m.get("dataset_dir")) or None,
    )


def _opt_str(v) -> str | None:
    return None if v is None else str(v)


def _missing(job_dir: Path) -> RunRecord:
    """A multirun job folder with a composed config but no metrics.json: it did not finish."""
    names = {"dataset": "?", "model": "?", "act": "?", "reg": "?"}
    seed = experiment = row = fingerprint = None
    cfg_path = job_dir / ".hydra" / "config.yaml"
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(cfg_path)
        for k in names:
            names[k] = str(OmegaConf.select(cfg, f"{k}.name", default="?"))
        seed = OmegaConf.select(cfg, "seed", default=None)
        experiment = _opt_str(OmegaConf.select(cfg, "experiment_name", default=None))
        row = _opt_str(OmegaConf.select(cfg, "row_name", default=None))
        fingerprint = config_fingerprint(cfg)
    except Exception:  # an unreadable config still shows up as a missing run
        pass
    rec = RunRecord(path=job_dir, seed=seed, status="missing", experiment=experiment, row=row, **names)
    rec.raw = {"config_fingerprint": fingerprint} if fingerprint else {}
    return rec


def config_fingerprint(cfg) -> str | None:
    """``<name>-<hash of the dataset's content config>`` from a run's composed config: the processed
    dataset's folder name for a dataset whose cache key is its config alone (synthetic data); for
    real data (whose key also covers the raw files) it still tells two dataset configs apart."""
    from omegaconf import OmegaConf

    from ctrbench.data.prepare import content_config
    from ctrbench.data.store import config_hash

    dataset = OmegaConf.select(cfg, "dataset", default=None)
    if dataset is None:
        return None
    try:
        content = content_config(dataset)
    except Exception:  # noqa: BLE001 - an unresolvable or partial config: no fingerprint
        return None
    return f"{content['name']}-{config_hash(content)}"


def _config_fingerprint_of_run(run_dir: Path) -> str | None:
    """The dataset config fingerprint of a finished run (its config.yaml), or None."""
    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                from omegaconf import OmegaConf

                return config_fingerprint(OmegaConf.load(path))
            except Exception:  # noqa: BLE001
                return None
    return None


# what Hydra itself writes in a run folder before ctrbench's code runs
_HYDRA_ONLY = (".hydra",)


def _only_hydra_files(job_dir: Path) -> bool:
    """True when a single run's folder (Hydra's ``mode: RUN``, not a sweep's job) holds nothing but
    what Hydra writes before ctrbench starts (``.hydra/`` and log files): a command rejected before
    it ran (an invalid config), not a run."""
    try:
        entries = list(job_dir.iterdir())
        if not (job_dir / ".hydra").is_dir() or not all(p.name in _HYDRA_ONLY or (p.is_file() and p.suffix == ".log") for p in entries):
            return False
        from omegaconf import OmegaConf

        return str(OmegaConf.select(OmegaConf.load(job_dir / ".hydra" / "hydra.yaml"), "hydra.mode", default="")) == "RUN"
    except Exception:  # noqa: BLE001 - unreadable: counted as a run, as before
        return False


def _missing_fingerprints(records: list[RunRecord]) -> None:
    """Give each unfinished run the processed dataset of the finished runs with the same dataset
    config (a run has no metrics.json to name it until it finishes); None when no finished run
    tells."""
    missing = [r for r in records if r.status == "missing" and r.raw.get("config_fingerprint")]
    if not missing:
        return
    known = {r.dataset_dir for r in records if r.status != "missing" and r.dataset_dir}
    by_config: dict[str, set[str]] = {}
    for r in records:
        if r.status != "missing" and r.dataset_dir:
            fp = _config_fingerprint_of_run(r.path)
            if fp:
                by_config.setdefault(fp, set()).add(r.dataset_dir)
    for r in missing:
        fp = r.raw["config_fingerprint"]
        found = by_config.get(fp, set())
        r.dataset_dir = next(iter(found)) if len(found) == 1 else (fp if fp in known else None)


def find_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Every run under the given run or multirun folders, unfinished jobs included as 'missing'."""
    records: list[RunRecord] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"run folder '{p}' does not exist")
        if p.is_file():
            raise UserError(f"'{p}' is a file: expected a run folder written by `ctrbench train` (or a multirun folder of them)")
        found = sorted(p.rglob("metrics.json")) if not (p / "metrics.json").exists() else [p / "metrics.json"]
        if not found and _only_hydra_files(p):
            raise UserError(f"'{p}' holds no run, only the files Hydra writes before a command starts (.hydra/, a log): "
                            "a command rejected before it ran; expected a run folder written by `ctrbench train`")
        if not found:
            raise UserError(
                f"no metrics.json under '{p}': expected a run folder written by `ctrbench train` (or a multirun folder of them)"
            )
        records += [_read(f) for f in found]
        done = {f.parent for f in found}
        for hydra_dir in sorted(p.rglob(".hydra")):
            job = hydra_dir.parent
            if job in done or not (hydra_dir / "config.yaml").exists():
                continue
            if _only_hydra_files(job):
                continue  # a single run rejected before it started (ctrbench now removes these): not a run
            records.append(_missing(job))
    _missing_fingerprints(records)
    return records
