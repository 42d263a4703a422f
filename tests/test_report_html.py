"""`ctrbench report`: one self-contained HTML page over a sweep. Its tables are those of
`ctrbench table` cell for cell; nothing in it is fetched from anywhere; its charts, config
differences, runs and dataset statistics are there; and it renders in a real browser (headless
Chromium through Selenium: no console errors, the table's rows, visible images, a screenshot)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from ctrbench.report import charts, render
from ctrbench.report.collect import find_runs
from ctrbench.report.html import report_html, write_report
from ctrbench.report.table import build_table

ROW_CONFIG = {"base": ("base", "prelu", "none"), "din": ("din", "prelu", "none"), "din_dice": ("din", "dice", "none"),
              "mydin": ("din", "prelu", "l2")}
MODEL_KEYS = {"base": {"pooling": "sum"}, "din": {"attention_hidden": [80, 40], "attention_softmax": False}}
PAPER_FIGURES = {"din": {"source": "DIN paper Table 2", "users": 192403, "items": 63001, "categories": 801, "samples": 1689188,
                         "samples_are": "behaviours"}}
DATASET_DIR = "amazon_electronics-0123456789ab"


def write_job(folder: Path, row: str, seed: int, gauc: float | None, data_dir: Path, status: str = "completed",
              experiment: str | None = "din_table3", reason: str | None = None) -> None:
    """A run folder as `ctrbench train -m` writes it: .hydra/config.yaml, config.yaml, metrics.json,
    history.csv, status.json (``gauc=None``: a job that never finished, no metrics.json)."""
    model, act, reg = ROW_CONFIG[row]
    cfg = {
        "dataset": {"name": "amazon_electronics", "max_len": 100, "paper": PAPER_FIGURES},
        "model": {"name": model, "embedding_dim": 18, "mlp": [200, 80], **MODEL_KEYS[model]},
        "act": {"name": act, "in_attention": True}, "reg": {"name": reg, **({"lambda": 0.01} if reg == "l2" else {})},
        "optim": {"name": "sgd", "lr": 1.0}, "seed": seed, "experiment_name": experiment, "row_name": row if experiment else None,
        "paths": {"data_dir": str(data_dir)}, "trainer": {"batch_size": 32, "progress": False},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".hydra").mkdir(exist_ok=True)
    from omegaconf import OmegaConf

    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    (folder / "status.json").write_text(json.dumps({"status": status if gauc is not None else "failed", "step": 300,
                                                    **({"reason": reason} if reason else {})}))
    if gauc is None:
        return
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    m = {
        "status": status, "dataset": "amazon_electronics", "model": model, "act": act, "reg": reg, "seed": seed,
        "experiment": experiment, "row": row if experiment else None, "protocol": "din",
        "test": {"auc": gauc - 0.05, "gauc": gauc, "logloss": 1 - gauc, "gauc_weighting": "impressions"},
        "valid_best": {"gauc": gauc + 0.01, "auc": gauc - 0.04, "logloss": 0.9 - gauc, "step": 200, "epoch": 1},
        "oracle": None, "selection": "valid", "train_samples_per_s": 12345.6, "eval_samples_per_s": 98765.4,
        "peak_memory_mb": 512.0, "train_seconds": 61.5, "steps": 300, "epochs": 3,
        "variant": {"activation": {"name": act, "init": 0.1}, "regularizer": {"name": reg}, "gauc_weighting": "impressions",
                    "training": {"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "grad_clip": 5.0, "bucket": 0,
                                 "schedule": {"type": "exponential", "gamma": 0.1, "every_epochs": 4}}},
        "dataset_dir": DATASET_DIR, "versions": {"ctrbench": "0.1.0"},
    }
    (folder / "metrics.json").write_text(json.dumps(m))
    pd.DataFrame({"step": [100, 200, 300], "epoch": [0, 1, 2], "valid_gauc": [gauc - 0.02, gauc + 0.01, gauc]}).to_csv(
        folder / "history.csv", index=False)


def write_manifest(data_dir: Path) -> None:
    folder = data_dir / "processed" / DATASET_DIR
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "name": "amazon_electronics", "vocab": {"n_users": 192404, "n_items": 63002, "n_cates": 802},
        "rows": {"behaviours": 1689188, "train": 2608764, "valid": 192403, "test": 192403},
        "protocol": {"protocol": "din", "users_kept": 192403, "source": {"encoded": {"users": 192403, "items": 63001, "categories": 801}}},
        "stats": {"behaviours_per_user": {"p50": 6, "p90": 15, "max": 431},
                  "positive_rate": {"train": 0.5, "valid": 0.5, "test": 0.5}},
    }))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """din_table3 on amazon_electronics: BaseModel and DIN × 3 seeds, DIN with Dice with one run
    that failed and one that never finished, a row of the user's own, and runs outside the table."""
    data = tmp_path / "data"
    write_manifest(data)
    root = tmp_path / "multirun"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for row, values in {"base": [0.860, 0.865, 0.870], "din": [0.880, 0.884, 0.889], "mydin": [0.882, 0.886]}.items():
        for seed, g in enumerate(values, start=1):
            write_job(root / str(job), row, seed, g, data)
            job += 1
    write_job(root / str(job), "din_dice", 1, 0.5, data, status="failed")
    write_job(root / str(job + 1), "din_dice", 2, None, data, reason="the loss became NaN at step 57")
    own = tmp_path / "mine"
    for seed, g in ((1, 0.70), (2, 0.72)):
        write_job(own / str(seed), "din", seed, g, data, experiment=None)
    return tmp_path


class Page(HTMLParser):
    """The parts of the page the tests read: tables (header and cell texts, by class), links,
    images and every attribute value."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self.hrefs: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.notes: list[list[str]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_notes = False
        self._open: list[str] = []
        self.unbalanced: list[str] = []
        self.feed(text)
        self.close()
        self.unbalanced += self._open

    VOID = {"meta", "link", "br", "hr", "img", "input", "wbr"}

    def handle_startendtag(self, tag, attrs):  # <line ... />: complete in itself
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag not in self.VOID:
            self._open.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "header": [], "rows": []})
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "ul" and a.get("class") == "notes":
            self._in_notes = True
            self.notes.append([])
        elif tag == "li" and self._in_notes:
            self._cell = []

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()
        else:
            self.unbalanced.append(f"</{tag}> with {self._open[-3:]} open")
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            t = self.tables[-1]
            if not t["header"]:  # the first row is the header
                t["header"] = self._row
            else:
                t["rows"].append(self._row)
            self._row = None
        elif tag == "li" and self._in_notes and self._cell is not None:
            self.notes[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "ul" and self._in_notes:
            self._in_notes = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def of(self, cls: str) -> list[dict]:
        return [t for t in self.tables if cls in t["class"].split()]


def make_report(root: Path, out: Path | None = None) -> tuple[str, object, list]:
    records = find_runs([root / "multirun", root / "mine"])
    table = build_table(records)
    out = out or root / "report.html"
    write_report(out, table, records, sources=[str(root / "multirun"), str(root / "mine")], command="ctrbench report multirun mine")
    return out.read_text(), table, records


def test_the_tables_are_exactly_those_of_ctrbench_table(sweep):
    text, table, _ = make_report(sweep)
    page = Page(text)
    results = page.of("results")
    assert len(results) == len(table.sections) == 2
    assert sum(len(t["rows"]) for t in results) == len(table.rows)
    for t, s in zip(results, table.sections):
        assert t["header"] == render._header(s)
        assert t["rows"] == [render._cells(s, r) for r in s.rows]  # the Markdown / LaTeX / CSV cells
    assert page.notes == [s.notes for s in table.sections]
    md = table.to_markdown()
    for s in table.sections:
        assert f"### {s.title}" in md and f"<h2>{s.title.replace('&', '&amp;')}</h2>" in text
    first = dict((r[0], r) for r in results[0]["rows"])
    assert first["DIN with Dice"][-1] == "1/1" and first["LR"][-1] == "missing (no runs)"
    assert any(label.startswith("mydin") for label in first)  # the user's own row, after the paper's
    assert "Δ paper" in results[0]["header"] and first["BaseModel"][results[0]["header"].index("p")] == "ref"
    # the training setup and the failed/missing rows are in the notes, as in every format
    notes = " ".join(page.notes[0])
    assert "training: sgd lr=1.0, batch 32" in notes and "failed/missing" in notes and "rows of the paper with no runs" in notes


def test_nothing_is_fetched_and_every_link_is_a_run_or_an_anchor(sweep):
    text, table, records = make_report(sweep)
    page = Page(text)
    assert not page.unbalanced, page.unbalanced[:5]  # every element closed, in order
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert "script" not in page.tags and "iframe" not in page.tags and "img" not in page.tags
    assert not re.search(r"https?://", text), re.findall(r".{40}https?://.{40}", text)
    assert "url(" not in text.replace("url(#hatch-", "")  # only the charts' own patterns
    for tag, key, value in page.attrs:
        if key in ("src", "srcset", "data", "poster", "xlink:href"):
            raise AssertionError(f"{tag} {key}={value}: the page must not load anything")
        if tag == "link":
            assert key != "href" or value.startswith("data:"), (tag, key, value)
    assert "default-src 'none'" in text  # the Content-Security-Policy: nothing can be fetched
    runs_linked = set()
    for href in page.hrefs:
        if href.startswith("#"):
            assert f'id="{href[1:]}"' in text, href
            continue
        assert not urlparse(href).scheme, href  # relative: the page and the runs move together
        target = (sweep / unquote(href)).resolve()
        assert target.exists(), href
        runs_linked.add(target)
    assert {r.path.resolve() for r in records} <= runs_linked  # every run folder, the unfinished one too


def test_charts_configs_runs_datasets_and_the_command(sweep):
    text, table, records = make_report(sweep)
    page = Page(text)
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", text, flags=re.S)
    assert len(svgs) == 3  # curves and RelaImpr for the published table, curves for the runs outside it (no base run:
    assert "No RelaImpr chart for amazon_electronics" in text  # no RelaImpr, said instead of an empty chart)
    assert "validation GAUC · din_table3" in svgs[0] and "DIN (3 seeds)" in svgs[0] and "<polygon" in svgs[0]  # the band
    assert "published &#x27;paper&#x27;" in svgs[1] and "RelaImpr on GAUC (%)" in svgs[1]
    din = next(r for r in table.rows if r.row_key == "din")
    assert f"DIN: RelaImpr {din.rela_impr:+.2f}%" in svgs[1]
    # what differs between the rows, and what every run shares
    config = page.of("config")[0]["rows"]
    by_row = {r[0]: r[1] for r in config}
    assert "model.name=base" in by_row["BaseModel"] and "model.pooling=sum" in by_row["BaseModel"]
    assert "model.attention_hidden=[80, 40]" in by_row["DIN"] and "model.name" not in by_row["LR"]
    assert "optim.lr" not in " ".join(by_row.values()) and "seed=" not in " ".join(by_row.values())
    mine = next(v for k, v in by_row.items() if k.startswith("mydin"))
    assert "reg.name=l2" in mine and "reg.lambda=0.01" in mine
    assert "optim.lr: 1.0" in text  # in the shared settings
    # each run: seed, status (with the failure's reason), times, samples/s
    runs = page.of("runs")[0]
    assert runs["header"][:4] == ["row", "run folder", "seed", "status"]
    flat = [" | ".join(r) for r in runs["rows"]]
    assert sum("completed" in r for r in flat) == 8 and any("failed" in r for r in flat)
    assert any("the loss became NaN at step 57" in r for r in flat)
    assert any("12,346" in r and "98,765" in r and "61.5" in r and "0.8840" in r for r in flat)
    # the dataset beside the paper's Table 2
    stats = page.of("dataset")[0]
    assert stats["header"] == ["what", "ours", "published (DIN paper Table 2)", "difference"]
    assert ["users", "192,403", "192,403", "+0"] in stats["rows"]
    assert "ctrbench report multirun mine" in text and "ctrbench 0.1.0" in text


def test_a_plain_sweep_and_missing_manifests(tmp_path):
    """Any sweep, not only a published table's: runs without an experiment, no dataset manifest."""
    for seed, (row, g) in enumerate((("base", 0.8), ("din", 0.85), ("base", 0.81), ("din", 0.86)), start=1):
        write_job(tmp_path / "sw" / str(seed), row, seed, g, tmp_path / "nodata", experiment=None)
    records = find_runs([tmp_path / "sw"])
    table = build_table(records)
    text = report_html(table, records, sources=["sw"], page_dir=tmp_path, command="ctrbench report sw")
    page = Page(text)
    assert [len(t["rows"]) for t in page.of("results")] == [len(s.rows) for s in table.sections]
    assert text.count('<svg class="chart"') == 2
    assert "manifest.json was not found" in text


def test_chart_drawing():
    assert charts.nice_ticks(0.5, 0.9) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert charts.nice_ticks(0, 1000, 4) == [0, 250, 500, 750, 1000]
    empty = charts.line_chart([], "t", "x", "y", empty="nothing here")
    assert "nothing here" in empty and empty.startswith('<svg class="chart"')
    bars = charts.bar_chart(["a", "b"], [charts.Bars("ours", [1.0, None], [0.5, None])], "t", "y", hline=(300.0, "oracle"),
                            empty_text="missing", unit="%")
    assert "oracle: +300.00%, off the scale" in bars and "missing" in bars and "stroke-dasharray" not in bars.split("</defs>")[1].split("<text x")[0]
    near = charts.bar_chart(["a"], [charts.Bars("ours", [1.0])], "t", "y", hline=(1.5, "oracle"))
    assert "off the scale" not in near and 'stroke-dasharray="4 3"><title>oracle' in near


def ctrbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "COLUMNS")}
    env["CTRBENCH_DATA_DIR"] = str(cwd / "data")
    return subprocess.run([sys.executable, "-m", "ctrbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A real fast-mode din_table3 sweep (BaseModel and DIN, one seed each: 2 jobs side by side),
    a job that never started (its composed config only), and `ctrbench report` on it."""
    work = tmp_path_factory.mktemp("report")
    proc = ctrbench("train", "-m", "+experiment=din_table3", "+row=din_table3/base,din_table3/din", "seed=1", "+debug=fast",
                    "hydra.sweep.dir=outputs/t3", cwd=work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sweep = work / "outputs" / "t3"
    shutil.copytree(sweep / "0" / ".hydra", sweep / "9" / ".hydra")
    return work, sweep, ctrbench("report", "outputs/t3", cwd=work)


def test_report_on_a_real_sweep(real_sweep):
    work, sweep, proc = real_sweep
    assert proc.returncode == 0, proc.stderr
    assert "wrote outputs/t3/report.html" in proc.stdout  # beside the sweep by default, as `ctrbench table`'s files
    text = (sweep / "report.html").read_text()
    page = Page(text)
    assert not page.unbalanced, page.unbalanced[:5]
    table = build_table(find_runs([sweep]))
    assert [len(t["rows"]) for t in page.of("results")] == [len(s.rows) for s in table.sections] == [8]  # 7 paper rows + oracle
    assert page.of("results")[0]["rows"] == [render._cells(table.sections[0], r) for r in table.sections[0].rows]
    assert not re.search(r"https?://", text)
    for href in page.hrefs:
        assert href.startswith("#") or (sweep / unquote(href)).exists(), href
    assert '<a href="0/">' in text and '<a href="9/">' in text  # relative to the page; the unfinished job too
    stats = {r[0]: r[1] for r in page.of("dataset")[0]["rows"]}  # the real manifest, found through the run's paths.data_dir
    assert stats["users"] == "300" and "oracle test AUC / GAUC" in stats
    assert f"cd {work}" in text and "ctrbench report outputs/t3</pre>" in text
    assert text.count('<svg class="chart"') == 2


def test_bad_report_arguments_give_one_line(real_sweep):
    work, _, _ = real_sweep
    for args, message in ((["report", "outputs/t3", "output=r.txt"], "output=r.txt: expected a file name ending in .html"),
                          (["report"], "no run folder given")):
        proc = ctrbench(*args, cwd=work)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---- in a real browser ------------------------------------------------------------------------------
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = ("headless Chromium is not installed: on Debian/Ubuntu `apt-get install chromium chromium-driver` "
              "(as .ci/run does) and `pip install selenium` (the dev extra)")


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(NO_BROWSER)
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,900",
              "--hide-scrollbars", "--disable-extensions", "--no-first-run"):
        options.add_argument(a)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # the driver is given: Selenium must not look for one online
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield d
    d.quit()


def render_in_browser(driver, page: Path, n_rows: int, n_charts: int, shot: Path) -> None:
    """Open ``page`` in Chromium, take a full-page screenshot, and check: no console errors or
    warnings, ``n_rows`` rows in the result tables, ``n_charts`` charts with visible shapes."""
    driver.get(page.as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(16000, height + 40))
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("CTRBENCH_SCREENSHOT_DIR"):  # keep it (CI artifacts, or to look at)
        Path(os.environ["CTRBENCH_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["CTRBENCH_SCREENSHOT_DIR"]) / shot.name)
    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]
    assert not errors, errors
    assert driver.title.startswith("ctrbench report")
    assert len(driver.find_elements("css selector", "table.results tbody tr")) == n_rows
    images = driver.find_elements("css selector", "svg.chart")
    assert len(images) == n_charts
    for img in images:
        rect = img.rect
        assert img.is_displayed() and rect["width"] > 300 and rect["height"] > 200, rect
        drawn = img.find_elements("css selector", "svg.chart > polyline, svg.chart > rect")  # lines and bars, not <defs>
        assert drawn and all(d.rect["width"] > 0 and d.rect["height"] > 0 for d in drawn), [d.rect for d in drawn]


def test_a_real_din_table3_sweep_renders_in_chromium(real_sweep, driver, tmp_path):
    _, sweep, _ = real_sweep
    render_in_browser(driver, sweep / "report.html", n_rows=8, n_charts=2, shot=tmp_path / "report_din_table3.png")
    rows = driver.find_elements("css selector", "table.results tbody tr")
    assert [r.find_elements("tag name", "td")[0].text for r in rows][:2] == ["LR", "BaseModel"]
    failed = driver.find_elements("css selector", "table.results tr.failed")
    assert len(failed) == 1 and "0/1" in failed[0].text  # BaseModel's job that never started
    assert len(driver.find_elements("css selector", "table.runs a")) >= 3


def test_every_part_of_the_report_renders_in_chromium(sweep, driver):
    """The hand-made sweep has every part: a published table with failed, unfinished and missing
    rows and a row of the user's own, runs outside a table, the dataset beside the paper's Table 2."""
    text, table, _ = make_report(sweep)
    render_in_browser(driver, sweep / "report.html", n_rows=len(table.rows), n_charts=3, shot=sweep / "report_every_part.png")
    assert driver.find_element("css selector", "table.dataset").is_displayed()
    assert len(driver.find_elements("css selector", "table.results tr.no-runs")) == 4  # LR, Wide&Deep, PNN, DeepFM
