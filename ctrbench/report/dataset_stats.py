"""The statistics table ``ctrbench prepare`` prints: users, items, categories, samples per split,
history lengths, label balance, the oracle (synthetic data), how the source was read (bad lines,
items without category), and the paper's published figures beside ours where they exist."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def _n(v) -> str:
    return "–" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.4f}" if isinstance(v, float) else str(v)


def _ours_for(samples_are: str, m: dict) -> int | None:
    rows, info = m["rows"], m.get("protocol", {})
    if samples_are == "behaviours":
        return rows["behaviours"]
    if samples_are == "users":
        return info.get("users_kept")
    if samples_are == "rows":
        return rows["train"] + rows["valid"] + rows["test"]
    return None


WARNING = "warning"  # the label of a row that holds a source's warning


def dataset_title(m: dict, path, built: bool) -> str:
    info = m.get("protocol", {})
    return f"dataset {m['name']} · protocol {info.get('protocol', '?')} ({'built now' if built else 'cached'}): {path}"


def dataset_header(paper: dict | None) -> list[str]:
    return ["what", "ours"] + ([f"published ({paper.get('source', 'paper')})", "difference"] if paper else [])


def dataset_rows(m: dict, paper: dict | None) -> list[list[str]]:
    """The statistics of a processed dataset's manifest ``m`` as rows of plain text (the columns of
    ``dataset_header``): what ``ctrbench prepare`` prints and ``ctrbench report`` shows. ``paper``
    is the dataset config's published figures for this protocol (or None); a row labelled
    ``WARNING`` holds what the source found suspicious."""
    info = m.get("protocol", {})
    rows: list[list[str]] = []
    v = m["vocab"]
    enc = info.get("source", {}).get("encoded", {})
    ours = {
        "users": enc.get("users", v["n_users"] - 1),
        "items": enc.get("items", v["n_items"] - 1),
        "categories": enc.get("categories", v["n_cates"] - 1),
    }
    if paper:
        ours["samples"] = _ours_for(paper.get("samples_are", ""), m)
    for key, ours_v in ours.items():
        label = key if key != "samples" else f"samples ({paper.get('samples_are')})"
        row = [label, _n(ours_v)]
        if paper:
            pub = paper.get(key)
            diff = None if pub is None or ours_v is None else ours_v - pub
            row += [_n(pub), "–" if diff is None else f"{diff:+,}"]
        rows.append(row)
    extra = [""] * (2 if paper else 0)
    rows.append(["behaviours", _n(m["rows"]["behaviours"]), *extra])
    for s in ("train", "valid", "test"):
        rows.append([f"{s} samples", _n(m["rows"][s]), *extra])
    if "users_dropped_too_few_behaviours" in info:
        rows.append(["users dropped (too few behaviours)", _n(info["users_dropped_too_few_behaviours"]), *extra])
    if enc.get("items_without_category") is not None:
        rows.append(["items without category (unknown id 0)", _n(enc["items_without_category"]), *extra])
    bad = sum(int(r.get("bad_lines_skipped", 0)) for r in (info.get("source", {}).get("bad_lines") or {}).values())
    if info.get("source"):
        rows.append(["malformed lines skipped", _n(bad), *extra])
    for warning in info.get("source", {}).get("warnings") or []:  # what the source found suspicious
        rows.append([WARNING, str(warning), *extra])
    for note in info.get("source", {}).get("notes") or []:  # a choice the source made that the numbers do not show
        rows.append(["note", str(note), *extra])
    st = m.get("stats", {})
    if st:
        b = st["behaviours_per_user"]
        rows.append(["behaviours per user p50 / p90 / max", f"{b['p50']:.0f} / {b['p90']:.0f} / {b['max']:.0f}", *extra])
        h = st.get("train_history_length")
        if h:
            rows.append(["train history length p10 / p50 / p90 / max", f"{h['p10']:.0f} / {h['p50']:.0f} / {h['p90']:.0f} / {h['max']:.0f}", *extra])
        rows.append([
            "positive rate train / valid / test",
            " / ".join("–" if st["positive_rate"][s] is None else f"{st['positive_rate'][s]:.4f}" for s in ("train", "valid", "test")),
            *extra,
        ])
    if m.get("oracle"):
        for s in ("valid", "test"):
            o = m["oracle"].get(s)
            if o:
                rows.append([f"oracle {s} AUC / GAUC", f"{o['auc']:.4f} / {o['gauc']:.4f}", *extra])
    if m.get("build_seconds") is not None:
        rows.append(["build seconds", f"{m['build_seconds']:.1f}", *extra])
    return rows


def dataset_table(m: dict, path, built: bool, paper: dict | None) -> Table:
    """A rich table of a processed dataset's manifest ``m`` (``dataset_rows``)."""
    from rich.markup import escape

    t = Table(title=escape(dataset_title(m, path, built)))
    for i, h in enumerate(dataset_header(paper)):
        t.add_column(escape(h), justify="left" if i == 0 else "right")
    for label, value, *extra in dataset_rows(m, paper):
        if label == WARNING:
            t.add_row("[bold yellow]warning[/]", Text(value, style="yellow", justify="left"), *extra)
        else:
            t.add_row(escape(label), escape(value), *extra)
    return t
