"""Every command the README shows, run as a user would run it (subprocess, real output).

The commands are read out of README.md itself: each ``ctrbench ...`` line of its bash blocks, and the
full commands it quotes inline (two result sweeps). ``test_the_readme_shows_exactly_these_commands``
fails when the README gains, loses or changes a command that this file does not run, so the README
and this file cannot drift apart. The quick start's own command (``ctrbench train`` on the default
data) is run by ``.ci/run``; here every command runs where a user would type it, with:

- ``+debug=fast`` added to each ``train`` (20 steps, tiny synthetic data), as the README says the
  tests do;
- a sweep over ``seed=`` cut to its first seed (the other lists whole), where the whole sweep
  would be tens of jobs;
- downloads replaced by tiny raw files in the real formats, written here (Amazon 2014 JSON / meta,
  MovieLens ``ratings.csv`` + ``movies.csv``), with ``dataset.raw_dir=`` and
  ``dataset.download=false``;
- placeholders (``outputs/<date>/<time>``, ``outputs/multirun/<date_time>``, ``requests.parquet``,
  ``clicks.csv``, the guide's ``mydin``) filled with what the earlier commands wrote.

The torchrun (DDP) command is run by tests/test_ddp.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import ctrbench
from test_extending import guide_files
from test_source_amazon import meta2014, review, write_lines, write_reviews

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["+debug=fast"]
RUN = "outputs/<date>/<time>"
SWEEP = "outputs/multirun/<date_time>"


def _strip(line: str) -> str:
    """A command without its trailing ``# comment``, its spaces collapsed."""
    return " ".join(shlex.split(line, comments=True))


def readme_commands() -> set[str]:
    """The README's commands: every ``ctrbench ...`` line of its bash blocks, and each inline
    ``ctrbench train -m ...`` it quotes in full."""
    text = README.read_text(encoding="utf-8")
    found = set()
    for body in re.findall(r"(?ms)^```bash\n(.*?)^```", text):
        found |= {_strip(line) for line in body.splitlines() if line.startswith(("ctrbench", "python -m ctrbench"))}
    found |= {_strip(m) for m in re.findall(r"`(ctrbench train -m [^`]+)`", text)}
    return found


# README command -> the test below that runs it
COVERED = {
    "ctrbench": "test_single_command",
    "ctrbench --version": "test_single_command",
    "ctrbench train --help": "test_single_command",
    "ctrbench train --cfg job": "test_single_command",
    "ctrbench prepare": "test_single_command",
    "ctrbench train +debug=fast": "test_single_command",
    "ctrbench train model=din reg=mba act=dice": "test_single_command",
    "ctrbench train model=base": "test_single_command",
    "ctrbench train model=din model.attention_softmax=true trainer.max_epochs=5": "test_single_command",
    "ctrbench train -m model=din,bst seed=1,2,3": "test_single_command",
    "ctrbench train -m seed=1,2 tracking=mlflow tracking.uri=sqlite:///mlruns.db": "test_single_command",
    "ctrbench train -m seed=1,2 tracking=tensorboard": "test_single_command",
    "ctrbench train -m +experiment=din_table3 seed=1,2,3": "test_single_command",
    "ctrbench train -m model=dien,lr,base,wdl,pnn,deepfm,din seed=1,2,3 device.threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2": "test_single_command",
    "ctrbench train -m model=base,din reg=none,l2,mba,dropout,filter,difacto act=prelu,dice seed=1,2,3 trainer.max_epochs=1": "test_single_command",
    "ctrbench prepare dataset=movielens_20m": "test_movielens_20m_from_its_files",
    "ctrbench prepare dataset=interactions dataset.path=clicks.csv dataset.columns.user=uid": "test_your_own_log",
    "ctrbench train model=mydin --config-dir conf": "test_your_own_model",
    "ctrbench train -m +experiment=din_table3 dataset=amazon_electronics": "test_a_published_sweep_on_amazon_files",
    "ctrbench train -m model=lr,base,din seed=1,2,3": "test_a_sweep_then_its_table_and_report",
    f"ctrbench table {SWEEP}": "test_a_sweep_then_its_table_and_report",
    f"ctrbench table {SWEEP} format=markdown": "test_a_sweep_then_its_table_and_report",
    f"ctrbench table {SWEEP} format=csv output=-": "test_a_sweep_then_its_table_and_report",
    f"ctrbench table {SWEEP} plot=true": "test_a_sweep_then_its_table_and_report",
    f"ctrbench report {SWEEP}": "test_a_sweep_then_its_table_and_report",
    f"ctrbench evaluate {RUN} split=test": "test_a_run_then_evaluate_predict_export",
    f"ctrbench predict {RUN} input=requests.parquet output=scores.parquet": "test_a_run_then_evaluate_predict_export",
    f"ctrbench export {RUN} format=torchscript": "test_a_run_then_evaluate_predict_export",
    f"ctrbench train model=din trainer.resume={RUN}": "test_resume_a_killed_run",
    "ctrbench train model=din trainer.resume=auto": "test_resume_a_killed_run",
}


def test_the_readme_shows_exactly_these_commands():
    shown = readme_commands()
    assert shown == set(COVERED), (f"README commands no test runs: {sorted(shown - set(COVERED))}; "
                                   f"commands run here the README no longer shows: {sorted(set(COVERED) - shown)}")


def args_of(command: str, **fill: str) -> list[str]:
    """The README ``command`` (checked to be one) as CLI arguments, its placeholders filled."""
    assert command in COVERED, command
    for placeholder, value in fill.items():
        command = command.replace(placeholder, value)
    return shlex.split(command)[1:]


# sweeps of more than 9 jobs: their seeds cut to the first
LONG_SWEEPS = ("+experiment=din_table3", "model=dien,lr,base,wdl,pnn,deepfm,din", "reg=none,l2,mba,dropout,filter,difacto")


def train_fast(args: list[str]) -> list[str]:
    """``+debug=fast`` added to a train command; a long sweep's seeds cut to the first."""
    if not args or args[0] != "train":
        return args
    if any(a in LONG_SWEEPS for a in args):
        args = [re.sub(r"^seed=(\d+),[\d,]+$", r"seed=\1", a) for a in args]
    return [*args, *(a for a in FAST if a not in args)]


def metrics_under(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("metrics.json"))]


# ---- commands that stand alone --------------------------------------------------------------------

SINGLE = [c for c, test in COVERED.items() if test == "test_single_command"]


@pytest.mark.parametrize("command", SINGLE)
def test_single_command(command, tmp_path):
    args = train_fast(args_of(command))
    proc = ctrbench(*args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    if args[:1] == ["train"] and "--help" not in args and "--cfg" not in args:
        runs = metrics_under(tmp_path / "outputs")
        assert runs and all(m["status"] == "completed" and m["steps"] == 20 for m in runs), runs
        if "-m" in args:  # a sweep: one line per job and the table command at the end
            assert re.search(rf"sweep: {len(runs)} jobs? done \(0 failed\)", out) and "results: ctrbench table" in out, out[-2000:]
        if "tracking=mlflow" in args:
            assert (tmp_path / "mlruns.db").stat().st_size > 0
        if "tracking=tensorboard" in args:
            assert all(list(p.parent.glob("tb/events.out.tfevents.*")) or list(p.parent.rglob("events.out.tfevents.*"))
                       for p in (tmp_path / "outputs").rglob("metrics.json"))
        expected_jobs = {"model=din,bst": 6, "+experiment=din_table3": 7, "model=dien,lr": 7, "reg=none,l2": 24, "seed=1,2,3": 6, "seed=1,2": 2}
        for marker, jobs in expected_jobs.items():
            if any(a.startswith(marker) for a in args):
                assert len(runs) == jobs, (marker, len(runs))
                break
        if "model=din" in args and "reg=mba" in args:
            assert runs[0]["model"] == "din" and runs[0]["reg"] == "mba" and runs[0]["act"] == "dice"
    elif args == []:
        assert "train" in out and "table" in out and "predict" in out
    elif args == ["--version"]:
        assert re.search(r"ctrbench \d+\.\d+", out), out
    elif args == ["train", "--help"]:
        assert "model" in out and "din" in out
    elif args == ["train", "--cfg", "job"]:
        assert "trainer:" in out and "model:" in out
        assert not (tmp_path / "outputs").exists()
    elif args == ["prepare"]:
        assert "oracle" in out.lower() and (tmp_path / "data").is_dir()


# ---- commands that read files of the user's -------------------------------------------------------


def test_movielens_20m_from_its_files(tmp_path):
    """`prepare dataset=movielens_20m` on a tiny ratings.csv + movies.csv in the 20M layout (the
    real files need a download)."""
    raw = tmp_path / "ml-20m"
    raw.mkdir()
    rows = ["userId,movieId,rating,timestamp"]
    rows += [f"{u},{(u * 7 + k) % 40 + 1},{1 + (u + k) % 5}.0,{1000000 + 100 * k + u}" for u in range(1, 31) for k in range(12)]
    (raw / "ratings.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    genres = ["Drama", "Comedy", "Action|Thriller", "(no genres listed)"]
    movies = ["movieId,title,genres"] + [f'{m},"Movie {m}, The (1999)",{genres[m % 4]}' for m in range(1, 41)]
    (raw / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    args = args_of("ctrbench prepare dataset=movielens_20m")
    proc = ctrbench(*args, f"dataset.raw_dir={raw}", "dataset.download=false", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "movielens_20m" in out and "360" in out.replace(",", ""), out[-2000:]  # 30 users x 12 ratings
    assert list((tmp_path / "data" / "processed").glob("movielens_20m-*"))


def test_your_own_log(tmp_path):
    """`prepare dataset=interactions dataset.path=clicks.csv dataset.columns.user=uid` on a clicks.csv
    whose user column is called uid."""
    rows = ["uid,item,time"] + [f"u{u},i{(u * 3 + k) % 25},{1000 + 10 * k + u}" for u in range(40) for k in range(8)]
    (tmp_path / "clicks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    proc = ctrbench(*args_of("ctrbench prepare dataset=interactions dataset.path=clicks.csv dataset.columns.user=uid"), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "interactions" in out and "320" in out.replace(",", ""), out[-2000:]  # 40 users x 8 clicks read
    assert list((tmp_path / "data" / "processed").glob("interactions-*"))


def test_your_own_model(tmp_path):
    """`train model=mydin --config-dir conf` with the model file and config of docs/extending.md."""
    for rel, body in guide_files().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body, encoding="utf-8")
    ctrbench(*train_fast(args_of("ctrbench train model=mydin --config-dir conf")), cwd=tmp_path)
    (m,) = metrics_under(tmp_path / "outputs")
    assert m["model"] == "mydin" and m["status"] == "completed"


def amazon_2014_files(raw: Path) -> Path:
    """A tiny Electronics pair in the 2014 formats: 40 users, 30 items in 5 categories."""
    raw.mkdir()
    items = [f"B{i:04d}" for i in range(30)]
    reviews = [review(f"A{u:03d}", items[(u * 7 + k * 3) % 30], 1_300_000_000 + 86_400 * k + u) for u in range(40) for k in range(7)]
    write_reviews(raw / "reviews_Electronics_5.json.gz", reviews)
    write_lines(raw / "meta_Electronics.json.gz", [meta2014(item, f"Cat {i % 5}") for i, item in enumerate(items)])
    return raw


def test_a_published_sweep_on_amazon_files(tmp_path):
    """`train -m +experiment=din_table3 dataset=amazon_electronics` (Table 3's 7 rows, one seed) on
    tiny files in the exact 2014 formats, then its table."""
    raw = amazon_2014_files(tmp_path / "amazon")
    args = train_fast(args_of("ctrbench train -m +experiment=din_table3 dataset=amazon_electronics"))
    proc = ctrbench(*args, f"dataset.raw_dir={raw}", "dataset.download=false", "seed=1", cwd=tmp_path)
    runs = metrics_under(tmp_path / "outputs")
    assert len(runs) == 7 and {m["dataset"] for m in runs} == {"amazon_electronics"}, runs
    sweep = next((tmp_path / "outputs" / "multirun").iterdir())
    table = ctrbench(*args_of(f"ctrbench table {SWEEP}", **{SWEEP: str(sweep)}), cwd=tmp_path).stdout
    assert "RelaImpr" in table and "DIN" in table, table
    assert "sweep: 7 jobs done (0 failed)" in proc.stdout + proc.stderr


# ---- commands that read what an earlier one wrote -------------------------------------------------


def test_a_sweep_then_its_table_and_report(tmp_path):
    ctrbench(*train_fast(args_of("ctrbench train -m model=lr,base,din seed=1,2,3")), cwd=tmp_path)
    assert len(metrics_under(tmp_path / "outputs")) == 9
    (sweep,) = (tmp_path / "outputs" / "multirun").iterdir()
    fill = {SWEEP: str(sweep)}
    table = ctrbench(*args_of(f"ctrbench table {SWEEP}", **fill), cwd=tmp_path).stdout
    assert "RelaImpr" in table and "din" in table and "oracle" in table and "±" in table, table
    proc = ctrbench(*args_of(f"ctrbench table {SWEEP} format=markdown", **fill), cwd=tmp_path)
    assert (sweep / "results.md").read_text().startswith("|") and str(sweep / "results.md") in proc.stdout + proc.stderr
    csv = ctrbench(*args_of(f"ctrbench table {SWEEP} format=csv output=-", **fill), cwd=tmp_path).stdout
    assert csv.splitlines()[0].count(",") >= 4 and not (tmp_path / "-").exists(), csv
    ctrbench(*args_of(f"ctrbench table {SWEEP} plot=true", **fill), cwd=tmp_path)
    assert (sweep / "valid_gauc.png").stat().st_size > 0 and (sweep / "relaimpr.png").stat().st_size > 0
    ctrbench(*args_of(f"ctrbench report {SWEEP}", **fill), cwd=tmp_path)
    (page,) = sweep.glob("*.html")
    assert "<html" in page.read_text(encoding="utf-8").lower()


def test_a_run_then_evaluate_predict_export(tmp_path):
    ctrbench(*args_of("ctrbench train +debug=fast"), cwd=tmp_path)
    (run,) = [p.parent for p in (tmp_path / "outputs").rglob("metrics.json")]
    fill = {RUN: str(run)}
    proc = ctrbench(*args_of(f"ctrbench evaluate {RUN} split=test", **fill), cwd=tmp_path)
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert f"{test['gauc']:.4f}" in proc.stdout + proc.stderr
    # requests in the synthetic dataset's raw ids (which are its ids): user, candidate, history
    requests = pa.table({"user": [1, 2, 3], "item": [5, 6, 7], "hist_item": [[1, 2, 3], [], [9]]})
    pq.write_table(requests, tmp_path / "requests.parquet")
    ctrbench(*args_of(f"ctrbench predict {RUN} input=requests.parquet output=scores.parquet", **fill), cwd=tmp_path)
    scores = pq.read_table(tmp_path / "scores.parquet").to_pydict()
    assert scores["item"] == [5, 6, 7] and all(0.0 < s < 1.0 for s in scores["score"])
    ctrbench(*args_of(f"ctrbench export {RUN} format=torchscript", **fill), cwd=tmp_path)
    assert (run / "export" / "model.torchscript.pt").stat().st_size > 0
    assert json.loads((run / "export" / "model.torchscript.pt.json").read_text())["format"] == "torchscript"


def test_resume_a_killed_run(tmp_path):
    """An interrupted DIN run (a fault injected at step 8) continued by its folder, a second one by
    ``trainer.resume=auto``."""
    interrupt = ["trainer.fault_injection.interrupt_at_step=8", *FAST]
    first = ctrbench("train", "model=din", *interrupt, cwd=tmp_path, check=False)
    assert first.returncode == 130, first.stderr
    (run,) = [p.parent for p in (tmp_path / "outputs").rglob("metrics.json")]
    proc = ctrbench(*train_fast(args_of(f"ctrbench train model=din trainer.resume={RUN}", **{RUN: str(run)})), cwd=tmp_path)
    assert "resuming" in proc.stdout + proc.stderr and json.loads((run / "metrics.json").read_text())["status"] == "completed"
    second = ctrbench("train", "model=din", *interrupt, cwd=tmp_path, check=False)
    assert second.returncode == 130, second.stderr
    proc = ctrbench(*train_fast(args_of("ctrbench train model=din trainer.resume=auto")), cwd=tmp_path)
    assert "resuming" in proc.stdout + proc.stderr
    assert sorted(m["status"] for m in metrics_under(tmp_path / "outputs")) == ["completed", "completed"]
