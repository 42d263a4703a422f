"""Rendering a results table (``ctrbench/report/table.py`` builds it): the cells of each row, and
the formats -- a pandas frame (CSV), Markdown, LaTeX (booktabs) and the terminal's rich tables."""

from __future__ import annotations

import math
import re

import pandas as pd

from ctrbench.report import stats


from ctrbench.report.sections import METRIC_NAMES, METRICS, ORACLE_NOTE, TEXT_COLUMNS, Row, Section  # noqa: F401 (re-exported)


def frame(sections: list[Section]) -> pd.DataFrame:
    recs = []
    for s in sections:
        for r in s.rows:
            recs.append(_frame_record(s, r))
    return pd.DataFrame.from_records(recs)


def markdown(sections: list[Section], headed: bool) -> str:
    parts = []
    for s in sections:
        header, cells = _header(s), [_cells(s, r) for r in s.rows]
        lines = [f"### {s.title}", ""] if headed else []
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in cells]
        if s.notes:
            lines += [""] + [f"- {n}" for n in s.notes]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def latex(sections: list[Section]) -> str:
    """Each section as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the notes as comments."""
    parts = []
    for s in sections:
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


def html(sections: list[Section], headed: bool, level: int = 2) -> str:
    """Each section as an HTML ``<table class="results">`` with the same header and cells as the
    Markdown, LaTeX and CSV renderings (escaped), its title as an ``<h{level}>`` when ``headed`` and
    its notes as a list. Rows carry classes (oracle, baseline, no-runs, failed) and the best mean
    of the section's metric is bold, as in the terminal; ``ctrbench report`` builds its page around it."""
    from html import escape

    parts = []
    for s in sections:
        header, cells = _header(s), [_cells(s, r) for r in s.rows]
        metric_col = header.index(METRIC_NAMES[s.metric])
        best = max((r.mean.get(s.metric) for r in s.rows if not r.is_oracle and is_num(r.mean.get(s.metric))), default=None)
        out = [f"<h{level}>{escape(s.title)}</h{level}>"] if headed else []
        out.append('<table class="results">')
        out.append("<thead><tr>" + "".join(f'<th class="{"text" if h in TEXT_COLUMNS else "num"}">{escape(h)}</th>' for h in header)
                   + "</tr></thead>")
        out.append("<tbody>")
        for r, row in zip(s.rows, cells):
            classes = [c for c, on in (("oracle", r.is_oracle), ("baseline", r.is_baseline), ("no-runs", r.no_runs),
                                       ("failed", bool(r.n_failed or r.n_missing))) if on]
            tds = []
            for i, (h, c) in enumerate(zip(header, row)):
                text = escape(c)
                if i == metric_col and best is not None and not r.is_oracle and r.mean.get(s.metric) == best:
                    text = f"<strong>{text}</strong>"
                tds.append(f'<td class="{"text" if h in TEXT_COLUMNS else "num"}">{text}</td>')
            cls = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        if s.notes:
            out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in s.notes) + "</ul>")
        parts.append("\n".join(out))
    return "\n".join(parts)


def rich(sections: list[Section], headed: bool, notes: bool = False, width: int | None = None):
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
    for s in sections:
        items.append(_rich_section(s, headed=headed, width=width))
        if notes:
            items += [Text(f"note: {n}", style="dim" if s.is_experiment else None) for n in s.notes]
            if s.is_experiment:
                items.append(Text(""))
    if len(items) == 1:
        return items[0]
    return Group(*items)


# ---- cells ------------------------------------------------------------------------------------
def is_num(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _ms(r: Row, m: str) -> str:
    v = r.mean.get(m)
    if not is_num(v):
        return "–"
    return f"{v:.4f}" if r.is_oracle or r.n_seeds <= 1 else f"{v:.4f} ± {r.std[m]:.4f}"


def _ri(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2f}%"


def published_number(v: float) -> str:
    """A published number as printed: at least 4 decimals, more if the source gives more."""
    text = repr(float(v))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{v:.{max(4, decimals)}f}"


def _pub(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return published_number(mean) if std is None else f"{published_number(mean)} ± {published_number(std)}"


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
        if not r.is_oracle and is_num(g):
            best[r.dataset] = max(best.get(r.dataset, -1.0), g)
    for r, row in zip(s.rows, cells):
        row = [escape(c) for c in row]
        if not r.is_oracle and is_num(r.mean.get(s.metric)) and r.mean.get(s.metric) == best.get(r.dataset):
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
