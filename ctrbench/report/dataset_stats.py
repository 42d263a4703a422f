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


def dataset_table(m: dict, path, built: bool, paper: dict | None) -> Table:
    """A rich table of a processed dataset's manifest ``m``; ``paper`` is the dataset config's
    published figures for this protocol (or None)."""
    info = m.get("protocol", {})
    t = Table(title=f"dataset {m['name']} · protocol {info.get('protocol', '?')} ({'built now' if built else 'cached'}): {path}")
    t.add_column("what")
    t.add_column("ours", justify="right")
    if paper:
        t.add_column(f"published ({paper.get('source', 'paper')})", justify="right")
        t.add_column("difference", justify="right")
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
        t.add_row(*row)
    extra = [""] * (2 if paper else 0)
    t.add_row("behaviours", _n(m["rows"]["behaviours"]), *extra)
    for s in ("train", "valid", "test"):
        t.add_row(f"{s} samples", _n(m["rows"][s]), *extra)
    if "users_dropped_too_few_behaviours" in info:
        t.add_row("users dropped (too few behaviours)", _n(info["users_dropped_too_few_behaviours"]), *extra)
    if enc.get("items_without_category") is not None:
        t.add_row("items without category (unknown id 0)", _n(enc["items_without_category"]), *extra)
    bad = sum(int(r.get("bad_lines_skipped", 0)) for r in (info.get("source", {}).get("bad_lines") or {}).values())
    if info.get("source"):
        t.add_row("malformed lines skipped", _n(bad), *extra)
    for warning in info.get("source", {}).get("warnings") or []:  # what the source found suspicious
        t.add_row("[bold yellow]warning[/]", Text(warning, style="yellow", justify="left"), *extra)
    st = m.get("stats", {})
    if st:
        b = st["behaviours_per_user"]
        t.add_row("behaviours per user p50 / p90 / max", f"{b['p50']:.0f} / {b['p90']:.0f} / {b['max']:.0f}", *extra)
        h = st.get("train_history_length")
        if h:
            t.add_row("train history length p10 / p50 / p90 / max", f"{h['p10']:.0f} / {h['p50']:.0f} / {h['p90']:.0f} / {h['max']:.0f}", *extra)
        t.add_row(
            "positive rate train / valid / test",
            " / ".join("–" if st["positive_rate"][s] is None else f"{st['positive_rate'][s]:.4f}" for s in ("train", "valid", "test")),
            *extra,
        )
    if m.get("oracle"):
        for s in ("valid", "test"):
            o = m["oracle"].get(s)
            if o:
                t.add_row(f"oracle {s} AUC / GAUC", f"{o['auc']:.4f} / {o['gauc']:.4f}", *extra)
    if m.get("build_seconds") is not None:
        t.add_row("build seconds", f"{m['build_seconds']:.1f}", *extra)
    return t
