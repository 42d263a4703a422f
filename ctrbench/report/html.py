"""``ctrbench report``: one self-contained HTML page over a sweep (or any run folders) that can be
e-mailed or published as it is: inline CSS and inline SVG charts, no script, nothing fetched (a
Content-Security-Policy forbids it), links only to the run folders, relative to the page.

What the page holds, in order:

* for each table (``build_table``'s sections): the table with exactly the header, cells and notes of
  ``ctrbench table`` (``render.html``: the same ``_header`` / ``_cells`` as Markdown, LaTeX and CSV);
  the validation-GAUC curves of its rows (mean over seeds, a band of ± one standard deviation, from
  each run's ``history.csv``, as ``plots.history_curve``); RelaImpr of each row beside the published
  RelaImpr of the paper's columns (as ``plots.py``: the bar is the RelaImpr of the mean, the error bar
  the standard deviation of each seed's RelaImpr against the baseline's mean); what differs between
  the rows' resolved configs (each run's ``config.yaml``) and what all runs share; each run with its
  seed, status, times, samples/s, memory and a link to its folder;
* the statistics of each processed dataset the runs read (its ``manifest.json``, found under the
  run's ``paths.data_dir``), beside the paper's figures (DIN Table 2 / DIEN Table 1) where the
  dataset config has them (``report.dataset_stats``, as ``ctrbench prepare`` prints them);
* the command that regenerates the page, the ctrbench version and commit.

The charts are drawn as SVG by ``report/charts.py`` rather than by matplotlib, which is an optional
extra (``ctrbench[plot]``): the report works on a plain install.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import urllib.request
from html import escape
from pathlib import Path

from ctrbench.atomic import atomic_write_text
from ctrbench.errors import ConfigError
from ctrbench.report import charts, render, stats
from ctrbench.report.collect import RunRecord
from ctrbench.report.dataset_stats import WARNING, dataset_header, dataset_rows
from ctrbench.report.plots import _panels, history_curve
from ctrbench.report.sections import METRIC_NAMES, Row, Section
from ctrbench.report.table import ResultTable
from ctrbench.train.resume import flatten_config

# config keys left out of "what differs": the seed (a column of its own), the row's own name (its
# label), where files are, and settings of how a job ran that never change its result
SKIP_KEYS = ("seed", "row_name", "paths.", "trainer.progress", "trainer.resume", "trainer.runs_dir", "device.threads")

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 16px 28px 48px; max-width: 1280px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-top: 12px; border-top: 2px solid #d0d7de; }
h3 { font-size: 15px; margin: 22px 0 6px; }
p.meta, .meta { color: #555; margin: 2px 0; }
nav ul { margin: 6px 0; padding-left: 20px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
table.results, table.runs { display: block; max-width: 100%; overflow-x: auto; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 4px 9px; vertical-align: top; }
th { background: #f3f5f7; text-align: left; font-weight: 600; vertical-align: bottom; }
td.num, th.num { text-align: right; }
td.num, td.link { white-space: nowrap; }
table.results tr.oracle td { color: #666; font-style: italic; border-top: 1px dashed #aaa; }
table.results tr.baseline td { background: #f6f8fa; }
table.results tr.no-runs td { color: #a40000; }
table.results tr.failed td:last-child { color: #a40000; font-weight: 600; }
ul.notes { color: #444; font-size: 13px; margin: 4px 0 12px; padding-left: 20px; }
ul.notes li { margin: 1px 0; }
figure { margin: 10px 0 16px; overflow-x: auto; }
figcaption { color: #555; font-size: 12.5px; max-width: 980px; }
svg.chart { display: block; max-width: 100%; height: auto; }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; padding: 8px 10px; border: 1px solid #e1e4e8; overflow-x: auto; white-space: pre-wrap; }
td code { background: #f3f5f7; padding: 0 3px; margin: 0 2px 2px 0; display: inline-block; }
details summary { cursor: pointer; color: #333; }
.bad { color: #a40000; }
footer { margin-top: 40px; }
@media print { h2 { break-before: page; } figure, table { break-inside: avoid; } }
"""

# nothing may be fetched: no script, no remote style, image or font; inline styles and data: images only
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(text) -> str:
    return escape(str(text), quote=True)


# ---- provenance -----------------------------------------------------------------------------------
def ctrbench_version() -> str:
    """``0.1.0`` and, when ctrbench runs from a git checkout, its commit (``+ local changes`` when
    tracked files differ from it): ``0.1.0 (commit 013ec67, + local changes)``."""
    import ctrbench

    version = ctrbench.__version__
    root = Path(ctrbench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (commit {commit}{', + local changes' if dirty else ''})" if commit else version


# ---- the runs' files ------------------------------------------------------------------------------
def _flatten(d) -> dict[str, str]:
    """A run's config as ``dotted.key -> text`` (strings as they are, other values as JSON)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flatten_config(d).items()}


def run_config(run: Path) -> dict[str, str] | None:
    """The run's resolved config (``config.yaml``, else Hydra's ``.hydra/config.yaml``) as dotted keys."""
    from omegaconf import OmegaConf

    for path in (run / "config.yaml", run / ".hydra" / "config.yaml"):
        if not path.is_file():
            continue
        try:
            cfg = OmegaConf.load(path)
            try:
                data = OmegaConf.to_container(cfg, resolve=True)
            except Exception:  # noqa: BLE001 - an interpolation that does not resolve outside its run
                data = OmegaConf.to_container(cfg, resolve=False)
        except Exception:  # noqa: BLE001 - an unreadable config: no differences shown for this run
            return None
        return {k: v for k, v in _flatten(data).items() if not k.startswith(SKIP_KEYS) and k not in SKIP_KEYS}
    return None


def _status(run: RunRecord) -> str:
    """``completed``, ``failed: <reason>``, ``interrupted (no metrics.json)``...: metrics.json's status,
    and for a run that did not complete what its status.json says."""
    try:
        s = json.loads((run.path / "status.json").read_text())
        s = s if isinstance(s, dict) else {}
    except (OSError, ValueError):
        s = {}
    if run.status == "completed":
        return "completed"
    state = run.status if run.status != "missing" else str(s.get("status") or "unfinished")
    if state == "running":
        state = "unfinished (running, or killed)"
    text = state + (" (no metrics.json)" if run.status == "missing" else "")
    return f"{text}: {s['reason']}" if s.get("reason") else text


def _href(target: Path, page_dir: Path, folder: bool = True) -> str:
    """A link from the page to ``target``: relative (the page and the runs move together), else file:."""
    try:
        rel = os.path.relpath(target.resolve(), page_dir.resolve())
    except ValueError:  # another drive (Windows)
        return target.resolve().as_uri()
    url = urllib.request.pathname2url(rel)
    return url + "/" if folder and not url.endswith("/") else url


# ---- charts ---------------------------------------------------------------------------------------
def _curves(rows: list[Row]) -> tuple[list[charts.Curve], list[str]]:
    curves, without = [], []
    for r in rows:
        if r.is_oracle:
            continue
        c = history_curve(r)
        if c is None:
            if r.n_seeds:
                without.append(r.label)
            continue
        steps, means, stds, ns = list(c["step"]), list(c["mean"]), list(c["std"]), list(c["n"])
        lo = [m - s if n >= 2 and math.isfinite(s) else None for m, s, n in zip(means, stds, ns)]
        hi = [m + s if n >= 2 and math.isfinite(s) else None for m, s, n in zip(means, stds, ns)]
        tips = [f"{r.label}: step {int(st):,}, validation GAUC {m:.4f}" + (f" ± {s:.4f}" if n >= 2 and math.isfinite(s) else "")
                + f" ({n} seed{'s' if n != 1 else ''})" for st, m, s, n in zip(steps, means, stds, ns)]
        curves.append(charts.Curve(f"{r.label} ({r.n_seeds} seed{'s' if r.n_seeds != 1 else ''})",
                                   [float(s) for s in steps], [float(m) for m in means], lo, hi, tips))
    return curves, without


def _published_rela_impr(section: Section, column, row: Row) -> float | None:
    baseline = section.spec.baseline if section.spec else None
    if baseline is None or row.row_key is None:
        return None
    return stats.rela_impr(column.mean(row.row_key, section.metric), column.mean(baseline, section.metric))


def _relaimpr_chart(section: Section, rows: list[Row], title: str, key: str) -> str | None:
    shown = [r for r in rows if not r.is_oracle]
    metric = METRIC_NAMES[section.metric]
    ours = charts.Bars(
        f"ours: RelaImpr of the mean {metric}",
        [r.rela_impr for r in shown],
        [stats.mean_std(r.rela_impr_seeds)[1] if len(r.rela_impr_seeds) > 1 else None for r in shown],
        [f"{r.label}: RelaImpr {r.rela_impr:+.2f}%" + (f" ± {stats.mean_std(r.rela_impr_seeds)[1]:.2f} over {len(r.rela_impr_seeds)} seeds"
                                                       if len(r.rela_impr_seeds) > 1 else "") if r.rela_impr is not None else r.label
         for r in shown],
    )
    series = [ours]
    if section.is_experiment:
        for c in section.columns:
            values = [_published_rela_impr(section, c, r) for r in shown]
            if not any(v is not None for v in values):
                continue
            where = "" if section.comparable else f", on {c.dataset}: other data"
            series.append(charts.Bars(f"published '{c.label}'{where}", values, [],
                                      [f"{r.label}: published RelaImpr {v:+.2f}% ({c.label})" if v is not None else r.label
                                       for r, v in zip(shown, values)], hatched=True))
    if not any(v is not None for s in series for v in s.values):
        return None
    oracle = next((r for r in rows if r.is_oracle and r.rela_impr is not None), None)
    hline = (oracle.rela_impr, "oracle (Bayes-optimal)") if oracle is not None else None
    empty = ["missing" if r.no_runs or not r.n_seeds else "–" for r in shown]
    return charts.bar_chart([r.label for r in shown], series, title, f"RelaImpr on {metric} (%)", hline=hline, empty_text=empty, key=key,
                            unit="%")


def _figures(table: ResultTable, section: Section, index: int) -> str:
    out = []
    panels = [(t, rows) for t, s, rows in _panels(table) if s is section]
    for j, (title, rows) in enumerate(panels):
        curves, without = _curves(rows)
        svg = charts.line_chart(curves, f"validation GAUC · {title}", "training step", "validation GAUC (mean over seeds)",
                                empty="no history.csv in these runs")
        caption = ("Validation GAUC during training: the mean over each row's seeds at each evaluation step, the band ± one "
                   "standard deviation where at least two seeds reached that step (each run's history.csv).")
        if without:
            caption += f" No history.csv for: {', '.join(without)}."
        out.append(f'<figure class="curves">{svg}<figcaption>{_e(caption)}</figcaption></figure>')
        bars = _relaimpr_chart(section, rows, f"RelaImpr · {title}", key=f"{index}-{j}")
        if bars is None:
            out.append(f'<p class="meta">No RelaImpr chart for {_e(title)}: no completed '
                       f'{_e(section.baseline_name)} run to measure against.</p>')
            continue
        caption = (f"RelaImpr (DIN paper Eq. 11) on {METRIC_NAMES[section.metric]} against {section.baseline_name!r}: the bar is the "
                   "RelaImpr of the row's mean, the error bar the standard deviation over seeds of each seed's RelaImpr against the "
                   "baseline's mean.")
        if section.is_experiment and section.columns:
            caption += (" Hatched: the RelaImpr of the published means" + ("" if section.comparable else
                                                                           ", on other data (orientation only)") + ".")
        out.append(f'<figure class="relaimpr">{bars}<figcaption>{_e(caption)}</figcaption></figure>')
    return "\n".join(out)


# ---- per row: configs and runs --------------------------------------------------------------------
def _config_html(section: Section) -> str:
    runs = [(row, run, run_config(run.path)) for row in section.rows if not row.is_oracle for run in row.runs]
    configs = [c for _, _, c in runs if c is not None]
    if not configs:
        return '<p class="meta">No config.yaml in these runs: no configs to compare.</p>'
    keys = sorted(set().union(*configs))
    shared = {k: configs[0][k] for k in keys if all(k in c and c[k] == configs[0][k] for c in configs)}
    out = ['<h3>Configuration</h3>',
           '<p class="meta">What differs between the rows\' resolved configs (each run\'s config.yaml; the seed, paths and '
           'progress settings left out); the settings every run shares are below.</p>',
           '<table class="config"><thead><tr><th>row</th><th>differences from the settings all runs share</th></tr></thead><tbody>']
    for row in section.rows:
        if row.is_oracle:
            continue
        mine = [c for r, _, c in runs if r is row and c is not None]
        if not mine:
            cell = '<span class="meta">no runs</span>' if row.no_runs else '<span class="meta">no config.yaml</span>'
        else:
            diffs = []
            for k in sorted(set().union(*mine)):
                if k in shared:
                    continue
                values = sorted({c.get(k, "(not set)") for c in mine})
                text = values[0] if len(values) == 1 else "mixed: " + " | ".join(values)
                diffs.append(f"<code>{_e(k)}={_e(text)}</code>")
            cell = " ".join(diffs) if diffs else '<span class="meta">none (the shared settings)</span>'
        out.append(f"<tr><td>{_e(row.label)}</td><td>{cell}</td></tr>")
    out.append("</tbody></table>")
    lines = "\n".join(f"{k}: {v}" for k, v in shared.items())
    out.append(f"<details><summary>the {len(shared)} settings all runs of this table share</summary><pre>{_e(lines)}</pre></details>")
    return "\n".join(out)


def _num(v, fmt: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _runs_html(section: Section, page_dir: Path) -> str:
    M = METRIC_NAMES[section.metric]
    head = ["row", "run folder", "seed", "status", f"test {M}", f"best valid {M} (step)", "steps", "train s",
            "train samples/s", "eval samples/s", "peak MB", "ctrbench"]
    out = ["<h3>Runs</h3>", '<table class="runs"><thead><tr>' + "".join(
        f'<th class="{"num" if h in ("seed", "steps", "train s", "train samples/s", "eval samples/s", "peak MB") else "text"}">{_e(h)}</th>'
        for h in head) + "</tr></thead><tbody>"]
    for row in section.rows:
        if row.is_oracle:
            continue
        runs = sorted(row.runs, key=lambda r: (r.seed is None, r.seed if isinstance(r.seed, int) else 0, str(r.path)))
        if not runs:
            out.append(f'<tr class="no-runs"><td>{_e(row.label)}</td><td colspan="{len(head) - 1}" class="bad">no runs</td></tr>')
            continue
        for i, run in enumerate(runs):
            m = run.raw or {}
            vb = m.get("valid_best") or {}
            status = _status(run)
            link = (f'<a href="{_e(_href(run.path, page_dir))}">{_e(_short(run.path))}</a>'
                    + (f' · <a href="{_e(_href(run.path / "metrics.json", page_dir, folder=False))}">metrics.json</a>'
                       if (run.path / "metrics.json").is_file() else ""))
            step = vb.get("step")
            step = f" ({step:,})" if isinstance(step, int) else ""
            cells = [
                f'<td rowspan="{len(runs)}">{_e(row.label)}</td>' if i == 0 else "",
                f'<td class="link">{link}</td>',
                f'<td class="num">{_e(run.seed if run.seed is not None else "–")}</td>',
                f'<td class="{"text" if run.status == "completed" else "text bad"}">{_e(status)}</td>',
                f'<td class="num">{_num((run.test or {}).get(section.metric), ".4f")}</td>',
                f'<td class="num">{_num(vb.get(section.metric), ".4f")}{_e(step)}</td>',
                f'<td class="num">{_num(m.get("steps"), ",")}</td>',
                f'<td class="num">{_num(m.get("train_seconds"), ",.1f")}</td>',
                f'<td class="num">{_num(m.get("train_samples_per_s"), ",.0f")}</td>',
                f'<td class="num">{_num(m.get("eval_samples_per_s"), ",.0f")}</td>',
                f'<td class="num">{_num(m.get("peak_memory_mb"), ",.0f")}</td>',
                f'<td>{_e((m.get("versions") or {}).get("ctrbench", "–"))}</td>',
            ]
            out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _short(path: Path) -> str:
    parts = path.parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else str(path)


# ---- datasets -------------------------------------------------------------------------------------
def _manifest_for(run: RunRecord, data_dirs: list[Path]) -> tuple[dict | None, Path | None, list[Path]]:
    """The manifest of the processed dataset a run read: under the run's own ``paths.data_dir``
    (as given: relative to where the report runs, then to each folder above the run), then under
    ``data_dirs``."""
    name = (run.raw or {}).get("dataset_dir")
    if not name:
        return None, None, []
    own = None
    try:
        from omegaconf import OmegaConf

        for path in (run.path / "config.yaml", run.path / ".hydra" / "config.yaml"):
            if path.is_file():
                own = OmegaConf.select(OmegaConf.load(path), "paths.data_dir", default=None)
                break
    except Exception:  # noqa: BLE001 - an unresolvable data_dir: the other places still count
        own = None
    candidates: list[Path] = []
    if own:
        own = Path(str(own)).expanduser()
        candidates.append(own)
        if not own.is_absolute():
            candidates += [p / own for p in run.path.resolve().parents]
    candidates += data_dirs
    tried = []
    for d in candidates:
        folder = d / "processed" / str(name)
        tried.append(folder)
        try:
            m = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and "vocab" in m and "rows" in m:
            return m, folder, tried
    return None, None, tried


def _paper_figures(run: RunRecord, protocol: str | None) -> dict | None:
    from omegaconf import OmegaConf

    for path in (run.path / "config.yaml", run.path / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                paper = OmegaConf.select(OmegaConf.load(path), "dataset.paper", default=None)
                paper = OmegaConf.to_container(paper, resolve=True) if paper is not None else None
            except Exception:  # noqa: BLE001
                return None
            return paper.get(protocol) if isinstance(paper, dict) and protocol else None
    return None


def _datasets_html(records: list[RunRecord], data_dirs: list[Path]) -> str:
    out = ['<h2 id="datasets">Datasets</h2>',
           '<p class="meta">The processed datasets the runs read (each one\'s manifest.json), beside the paper\'s figures '
           '(DIN paper Table 2, DIEN paper Table 1) where the dataset config has them; as <code>ctrbench prepare</code> '
           'prints them.</p>']
    seen: dict[str, RunRecord] = {}
    for r in records:
        key = (r.raw or {}).get("dataset_dir")
        if r.status == "completed" and key and key not in seen:
            seen[key] = r
    if not seen:
        out.append('<p class="meta">No completed run records its processed dataset (metrics.json dataset_dir).</p>')
    for key, run in sorted(seen.items()):
        m, folder, tried = _manifest_for(run, data_dirs)
        if m is None:
            out.append(f"<h3>{_e(key)}</h3><p class=\"meta\">Its manifest.json was not found (looked in "
                       f"{_e(', '.join(str(t) for t in tried[:4]) or 'nowhere: no paths.data_dir')}"
                       f"{' …' if len(tried) > 4 else ''}); give data_dir=&lt;folder&gt; to look there.</p>")
            continue
        protocol = (m.get("protocol") or {}).get("protocol")
        paper = _paper_figures(run, protocol)
        header = dataset_header(paper)
        out.append(f"<h3>{_e(m.get('name', key))} · protocol {_e(protocol or '?')}</h3>")
        out.append(f'<p class="meta">{_e(folder)}</p>')
        out.append('<table class="dataset"><thead><tr>' + "".join(
            f'<th class="{"text" if i == 0 else "num"}">{_e(h)}</th>' for i, h in enumerate(header)) + "</tr></thead><tbody>")
        for label, value, *extra in dataset_rows(m, paper):
            cls = ' class="bad"' if label == WARNING else ""
            out.append(f"<tr{cls}><td>{_e(label)}</td>" + "".join(f'<td class="num">{_e(v)}</td>' for v in (value, *extra)) + "</tr>")
        out.append("</tbody></table>")
    return "\n".join(out)


# ---- the page -------------------------------------------------------------------------------------
def report_html(table: ResultTable, records: list[RunRecord], *, sources: list[str], page_dir: Path, command: str,
                title: str | None = None, data_dirs: list[Path] | None = None, now: _dt.datetime | None = None) -> str:
    """The page over ``table`` (``build_table(records)``); ``page_dir`` is the folder the page is
    written in (the run links are relative to it); ``command`` the line that regenerates it."""
    now = now or _dt.datetime.now().astimezone()
    version = ctrbench_version()
    n = {s: sum(r.status == s for r in records) for s in ("completed", "failed", "missing")}
    title = title or "ctrbench report · " + ", ".join(dict.fromkeys(s.title if s.is_experiment else "runs outside a published table"
                                                                     for s in table.sections))
    links = ", ".join(f'<a href="{_e(_href(Path(p), page_dir))}">{_e(p)}</a>' for p in sources)
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="meta">{len(records)} runs ({n["completed"]} completed, {n["failed"]} failed, {n["missing"]} unfinished) '
            f"from {links} · "
            f"generated {_e(now.strftime('%Y-%m-%d %H:%M %Z').strip())} by ctrbench {_e(version)}</p>",
            "<nav><ul>"]
    for i, s in enumerate(table.sections):
        body.append(f'<li><a href="#t{i}">{_e(s.title)}</a> ({sum(not r.is_oracle for r in s.rows)} rows)</li>')
    body.append('<li><a href="#datasets">datasets</a></li><li><a href="#regenerate">how to regenerate this page</a></li></ul></nav>')
    for i, s in enumerate(table.sections):
        body.append(f'<section id="t{i}">')
        body.append(render.html([s], headed=True, level=2))
        body.append(_figures(table, s, i))
        body.append(_config_html(s))
        body.append(_runs_html(s, page_dir))
        body.append("</section>")
    body.append(_datasets_html(records, list(data_dirs or [])))
    body.append(f'<footer><h2 id="regenerate">How to regenerate this page</h2><pre>{_e(command)}</pre>'
                f'<p class="meta">ctrbench {_e(version)} · Python {_e(platform.python_version())} · the tables are those of '
                f"<code>ctrbench table</code> (also <code>format=markdown|csv|latex</code>).</p></footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="ctrbench {_e(version)}">'
            '<link rel="icon" href="data:,">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(path: str | Path, table: ResultTable, records: list[RunRecord], **kw) -> Path:
    """Write the page atomically (temporary file, then rename); links are relative to its folder."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"output={path}: expected a .html file")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report_html(table, records, page_dir=path.parent, **kw))
    return path

