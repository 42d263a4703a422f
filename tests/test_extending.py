"""docs/extending.md, run as written: its files (each code block whose first line is ``# <path>``)
are written into a folder outside the package, and its commands (each ``ctrbench ...`` line of its
bash blocks) run there through the installed CLI, with a tiny dataset and few steps added
(``+debug=fast``, one seed). A change that breaks the guide's code or commands fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
# the guide's sections this test runs (the others have their own tests)
SECTIONS = ("## Your model", "## What a model gets and returns")
FAST = ["+debug=fast"]


def guide_text() -> str:
    """The sections of the guide this test covers."""
    text = GUIDE.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=## )", text)
    return "".join(p for p in parts if p.startswith(SECTIONS))


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"(?ms)^```(\w*)[^\n]*\n(.*?)^```", text)]


def guide_files() -> dict[str, str]:
    """The files the guide shows: ``# <relative path>`` as a block's first line names it (its second
    line, after a ``# @package`` header, which Hydra reads on a file's first lines only)."""
    files = {}
    for lang, body in code_blocks(guide_text()):
        lines = body.splitlines()
        if lines and lines[0].startswith("# @package"):
            lines = lines[1:]
        m = re.fullmatch(r"# (\S+\.(?:py|yaml))", lines[0].strip()) if lines else None
        if lang in ("python", "yaml") and m:
            files[m.group(1)] = body
    return files


def guide_commands() -> list[list[str]]:
    """Every ``ctrbench ...`` command of the guide's bash blocks, in order, as argument lists."""
    out = []
    for lang, body in code_blocks(guide_text()):
        if lang == "bash":
            out += [shlex.split(line)[1:] for line in body.splitlines() if line.startswith("ctrbench ")]
    return out


def ctrbench_command() -> list[str]:
    """The installed console script (what a user types). Failing that, ``python -P -m ctrbench``:
    -P keeps the working folder off the import path, as the console script has it, so the CLI's
    own handling of that folder is what makes ``mydin`` importable."""
    script = Path(sys.executable).with_name("ctrbench")
    if script.exists():
        return [str(script)]
    return [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-m", "ctrbench"]


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["CTRBENCH_DATA_DIR"] = str(cwd / "data")
    env["COLUMNS"] = "200"  # the table's every column, on one line each
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([*ctrbench_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctrbench {shlex.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project folder of the user's own, outside the package, holding exactly the guide's files."""
    files = guide_files()
    for rel, body in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return tmp_path


def test_the_guide_shows_every_file_and_command():
    files = guide_files()
    assert set(files) == {"mydin.py", "conf/model/mydin.yaml", "conf/row/mytable/mydin.yaml", "conf/experiment/mytable.yaml"}
    assert len(files["mydin.py"].splitlines()) <= 45  # "a new model in one short file"
    commands = [" ".join(c) for c in guide_commands()]
    assert any(c.startswith("train model=mydin --config-dir conf") for c in commands), commands
    assert any("hydra.searchpath=[file://./conf]" in c for c in commands), commands
    assert sum(c.startswith("train -m") for c in commands) == 2 and sum(c.startswith("table ") for c in commands) == 2, commands


@pytest.mark.slow
def test_the_guides_single_runs(project):
    """``ctrbench train model=mydin --config-dir conf`` and the ``model._target_=`` route, each a
    finished run recorded as mydin with its variant; and the guide's quoted errors."""
    singles = [c for c in guide_commands() if c[0] == "train" and "-m" not in c]
    assert len(singles) == 2, singles
    for args in singles:
        before = set((project / "outputs").rglob("metrics.json")) if (project / "outputs").exists() else set()
        run([*args, *FAST], cwd=project)
        (new,) = set((project / "outputs").rglob("metrics.json")) - before
        m = json.loads(new.read_text())
        assert m["status"] == "completed" and m["model"] == "mydin" and m["variant"]["temperature"] == 1.0, m
        assert 0 < m["test"]["gauc"] < 1
    guide = " ".join(GUIDE.read_text(encoding="utf-8").split())
    # a typo in the model's name: one line naming the user's option; not yet on the search path: a hint
    for args, expected in ((["train", "model=mydni", "--config-dir", "conf"], "unknown model 'mydni'"),
                           (["train", "model=mydin"], "--config-dir DIR")):
        proc = run(args, cwd=project, check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and expected in err and "mydin" in err, err
    assert "unknown model 'mydni'" in guide


def test_the_guides_quoted_check(project, monkeypatch):
    """The _target_ route without removing the key MyDIN does not take: the message the guide quotes."""
    from hydra import compose, initialize_config_dir

    from ctrbench.conf_paths import conf_dir
    from ctrbench.config_checks import check_train
    from ctrbench.errors import ConfigError

    (route,) = [c for c in guide_commands() if any(a.startswith("model._target_=") for a in c)]
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", [a for a in route[1:] if a != "~model.pooling"])
    quoted = "model.pooling is not an argument of mydin.MyDIN (it takes embedding_dim, mlp, temperature, use_user)"
    with pytest.raises(ConfigError) as e:
        check_train(cfg)
    assert str(e.value) == quoted
    assert quoted in " ".join(GUIDE.read_text(encoding="utf-8").split())


@pytest.mark.slow
def test_the_guides_tables(project):
    """The guide's two sweeps (MyDIN in the DIN paper's Table 3 with --config-dir; a table of
    your own with hydra.searchpath), one seed each, and ``ctrbench table`` after each."""
    commands = [c for c in guide_commands() if c[0] == "table" or (c[0] == "train" and "-m" in c)]
    assert [c[0] for c in commands] == ["train", "table", "train", "table"], commands
    outputs, sweep = [], None
    for i, args in enumerate(commands):
        if args[0] == "train":
            sweep = f"outputs/multirun/sweep{i}"
            # the first sweep as a user's runs, its jobs in worker processes that import mydin; the
            # second one job after another in the CLI's process, which is quicker for 3 tiny jobs
            launcher = ["hydra/launcher=basic"] if i else []
            run([*args, "seed=1", *FAST, f"hydra.sweep.dir={sweep}", *launcher], cwd=project)
        else:
            assert args[1] == "outputs/multirun/<date_time>", args
            outputs.append(run([args[0], sweep, *args[2:]], cwd=project).stdout)
    paper, mine = outputs
    # beside the paper's rows, marked; the paper's published numbers beside theirs
    assert "din_table3 · DIN (Zhou et al., KDD 2018) Table 3" in paper, paper
    rows = {line.split("│")[1].strip(): line for line in paper.splitlines() if line.startswith("│")}
    assert {"BaseModel", "DIN", "mydin (not in the paper)"} <= set(rows), rows
    assert "0.8624" in rows["BaseModel"] and "+0.00%" in rows["BaseModel"]  # the published number; the baseline
    assert re.search(r"[+-]\d+\.\d+%", rows["mydin (not in the paper)"]), rows["mydin (not in the paper)"]
    assert "rows not in DIN (Zhou et al., KDD 2018) Table 3, shown after its rows: mydin (not in the paper)" in paper
    # a table of your own: its rows, RelaImpr against its baseline_row
    assert "mytable · your table (not a published one)" in mine, mine
    rows = {line.split("│")[1].strip(): line for line in mine.splitlines() if line.startswith("│")}
    assert {"base", "din", "mydin"} <= set(rows), rows
    assert "+0.00%" in rows["din"] and "ref" in rows["din"], rows["din"]
    assert "RelaImpr against 'din'" in " ".join(mine.split())
    metrics = [json.loads(p.read_text()) for p in (project / "outputs" / "multirun").rglob("metrics.json")]
    assert len(metrics) == 6 and {m["model"] for m in metrics} == {"base", "din", "mydin"}
    assert {m["baseline_row"] for m in metrics if m["experiment"] == "mytable"} == {"din"}


# ---- the parts, in process (fast) -------------------------------------------------------------
def test_config_folders_from_the_command_line(project, monkeypatch):
    from ctrbench.cli import check_group_choices, config_dirs_first
    from ctrbench.conf_paths import searchpath_override, user_search_path
    from ctrbench.errors import UserError

    monkeypatch.chdir(project)
    conf = f"file://{(project / 'conf').resolve()}"
    assert user_search_path(["model=mydin", "-cd", "conf"]) == [conf]
    assert user_search_path(["--config-dir=conf", "hydra.searchpath=[file://./conf,pkg://ctrbench]"]) == [conf, "file://./conf", "pkg://ctrbench"]
    assert searchpath_override(["--config-dir", "conf", "hydra.searchpath=[file://./conf]"]) == f"hydra.searchpath=['{conf}','file://./conf']"
    assert searchpath_override(["model=din"]) is None
    # a flag among the overrides goes first: the CLI adds overrides after the user's
    assert config_dirs_first(["-m", "model=mydin", "--config-dir", "conf", "seed=1,2"]) == ["--config-dir", "conf", "-m", "model=mydin", "seed=1,2"]
    # the user's groups and options join the built-in ones
    for args in (["model=mydin", "+row=mytable/mydin", "+experiment=mytable", "--config-dir", "conf"],
                 ["model=din,mydin", "hydra.searchpath=[file://./conf]"], ["+row=din_table3/din,mytable/mydin", "-cd", "conf"]):
        check_group_choices(args)
    for args, message in ((["model=mydin"], "unknown model 'mydin'"),
                          (["model=mydin", "--config-dir", "nope"], "--config-dir 'nope': no such folder"),
                          (["model=mydin", "hydra.searchpath=[file://./nope]"], "'file://./nope': no such folder"),
                          (["model=mydin", "hydra.searchpath=file://./conf"], "expected a list of config folders"),
                          (["+row=mytable/nope", "-cd", "conf"], "unknown row 'mytable/nope'")):
        with pytest.raises(UserError, match=re.escape(message)):
            check_group_choices(args)


def test_a_config_of_yours_with_a_built_in_name_is_not_used_and_says_so(project, monkeypatch, capsys):
    from ctrbench.cli import check_group_choices

    monkeypatch.chdir(project)
    (project / "conf" / "model" / "din.yaml").write_text("name: din\n_target_: mydin.MyDIN\n")
    check_group_choices(["model=mydin", "--config-dir", "conf"])
    assert capsys.readouterr().err == ""
    check_group_choices(["model=din", "--config-dir", "conf"])
    assert "model/din.yaml is not used" in capsys.readouterr().err


def test_the_checks_take_any_model_class_and_name_what_is_wrong(project, monkeypatch):
    """A model config is checked for what it holds: an importable CTRModel subclass taking its keys."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from ctrbench.conf_paths import conf_dir
    from ctrbench.config_checks import check_train
    from ctrbench.errors import ConfigError

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", ["model=mydin", "hydra.searchpath=[file://./conf]"])
    check_train(cfg)
    cases = [
        ({"_target_": "nowhere.MyDIN"}, "model._target_='nowhere.MyDIN': cannot import it (ModuleNotFoundError: No module named 'nowhere')"),
        ({"_target_": "mydin.Nope"}, "module 'mydin' has no attribute 'Nope'"),
        ({"_target_": "ctrbench.nn.layers.MLP"}, "model._target_='ctrbench.nn.layers.MLP' is not a CTRModel subclass"),
        ({"_target_": "ctrbench.models.base.CTRModel"}, "is not a CTRModel subclass"),
        ({"pooling": "sum"}, "model.pooling is not an argument of mydin.MyDIN"),
        ({"name": None}, "model.name=None is invalid"),
    ]
    for change, message in cases:
        bad = OmegaConf.create(OmegaConf.to_container(cfg))
        with open_dict(bad):
            bad.model.merge_with(change)
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_train(bad)
    (project / "needy.py").write_text("from mydin import MyDIN\n\nclass Needy(MyDIN):\n"
                                      "    def __init__(self, vocab, act, width, **kw):\n        super().__init__(vocab, act, **kw)\n")
    bad = OmegaConf.create(OmegaConf.to_container(cfg))
    bad.model._target_ = "needy.Needy"
    with pytest.raises(ConfigError, match=re.escape("model.width is missing: needy.Needy needs it")):
        check_train(bad)


def _metrics(folder: Path, row: str, model: str, seed: int, gauc: float, experiment: str, baseline_row=None) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "status": "completed", "dataset": "synthetic", "model": model, "act": "prelu", "reg": "none", "seed": seed,
        "experiment": experiment, "row": row, "baseline_row": baseline_row, "protocol": "din",
        "test": {"auc": gauc, "gauc": gauc, "logloss": 0.6, "gauc_weighting": "impressions"}, "valid_best": None,
        "selection": "valid", "variant": {}}))


def test_a_row_of_yours_beside_the_papers_and_a_table_of_your_own(tmp_path):
    from ctrbench.report.collect import find_runs
    from ctrbench.report.table import build_table

    for seed, g in ((1, 0.60), (2, 0.62)):
        _metrics(tmp_path / "paper" / f"b{seed}", "base", "base", seed, g, "din_table3")
        _metrics(tmp_path / "paper" / f"m{seed}", "mydin", "mydin", seed, g + 0.05, "din_table3")
        _metrics(tmp_path / "mine" / f"d{seed}", "din", "din", seed, g, "mytable", "din")
        _metrics(tmp_path / "mine" / f"m{seed}", "mydin", "mydin", seed, g + 0.05, "mytable", "din")
    (paper,) = build_table(find_runs([tmp_path / "paper"])).sections
    mine = {r.row_key: r for r in paper.rows}["mydin"]
    assert mine.label == "mydin (not in the paper)" and mine.published == {} and mine.rela_impr > 0 and mine.welch is not None
    assert paper.rows.index(mine) > max(paper.rows.index(r) for r in paper.rows if r.row_key in paper.spec.row_keys)
    (own,) = build_table(find_runs([tmp_path / "mine"])).sections
    rows = {r.row_key: r for r in own.rows}
    assert own.title.startswith("mytable · your table (not a published one)") and own.baseline_name == "din"
    assert rows["din"].is_baseline and rows["din"].rela_impr == 0 and rows["mydin"].rela_impr > 0
    assert rows["mydin"].label == "mydin" and not own.columns
