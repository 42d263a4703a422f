"""A sweep fills the machine (issue 21): ``ctrbench train -m`` runs its jobs side by side on CPU
(joblib, the cores split between them) or one per GPU, with the results of running them one at a
time; ``device.threads=0`` picks the threads from the idle cores; the sweep says where it stands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrbench import cores, sweep_plan
from ctrbench.sweep import JobState, estimate_left, format_duration, progress_line, scan_jobs
from ctrbench.sweep_plan import count_jobs, job_gpu, make_plan
from test_cli import ctrbench

TINY = ["+debug=fast", "trainer.max_steps=4"]


# ---- the plan --------------------------------------------------------------------------------
def plan(*args: str, cores: int = 2, gpus: int = 0):
    p = make_plan(["-m", *args], cores=cores, cuda_devices=lambda: gpus)
    assert p is not None
    return p


def test_plan_counts_the_experiment_sweep_and_the_command_line_wins_per_key():
    p = plan("+experiment=din_table3")  # 7 rows x 5 seeds, from hydra.sweeper.params
    assert (p.jobs, p.side_by_side, p.threads) == (35, 2, 1)
    assert p.overrides == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "device.threads=1", "trainer.progress=false"]
    assert p.describe() == "sweep of 35 jobs, 2 side by side with 1 thread each (hydra/launcher=basic runs them one at a time)"
    assert plan("+experiment=din_table3", "seed=1,2").jobs == 14  # the command line's seeds replace the 5
    assert plan("+experiment=din_table3", "+row=din_table3/base,din_table3/din", "seed=1,2", "trainer.max_steps=3").jobs == 4
    assert plan("model=lr,base,din", "seed=range(1,4)").jobs == 9


def test_count_jobs_is_basic_sweepers_product():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    params = {"+row": "a,b,c", "seed": "1,2,3,4,5"}
    for cli in (["seed=1,2"], ["model=lr,base", "x=1"], [], ["+row=a"]):
        lines = [f"{k}={v}" for k, v in params.items()] + cli
        expected = len(BasicSweeper.split_arguments(parser.parse_overrides(lines), None)[0])
        assert count_jobs(params, cli, parser) == expected


def test_plan_splits_the_cores_between_the_jobs():
    p = plan("model=lr,base", "seed=1,2,3", cores=16)  # 6 jobs on 16 cores: all side by side, 2 threads each
    assert (p.jobs, p.side_by_side, p.threads) == (6, 6, 2)
    p = plan("model=lr,base", "seed=1,2,3", cores=4)
    assert (p.side_by_side, p.threads) == (4, 1)
    p = plan("model=lr,base,din", cores=1)  # one core: one at a time, the launcher left alone
    assert (p.side_by_side, p.overrides) == (1, []) and p.describe() == "sweep of 3 jobs, one at a time (1 usable core)"
    p = plan("model=lr")  # one job
    assert (p.jobs, p.side_by_side, p.overrides) == (1, 1, []) and p.describe() == "sweep of 1 job"


def test_plan_keeps_the_users_launcher_and_threads():
    p = plan("model=lr,base", "hydra/launcher=basic")
    assert (p.side_by_side, p.overrides) == (1, [])
    assert p.describe() == "sweep of 2 jobs, one at a time (hydra/launcher=basic)"
    p = plan("model=lr,base", "seed=1,2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cores=8)
    assert (p.side_by_side, p.threads, p.overrides) == (2, 4, ["device.threads=4", "trainer.progress=false"])  # their launcher, our thread split
    assert p.describe().endswith("2 side by side with 4 threads each (hydra/launcher=joblib)")
    p = plan("model=lr,base", "seed=1,2", "device.threads=3", "trainer.progress=true", cores=8)
    assert (p.side_by_side, p.threads, p.overrides) == (4, None, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"])
    p = plan("model=lr,base", "device.threads=1,2", cores=8)  # a sweep over the threads: the user's
    assert p.threads is None and not any(o.startswith("device.threads") for o in p.overrides)
    p = plan("model=lr,base", "seed=1,2,3", "hydra.launcher.n_jobs=3", cores=8)  # n_jobs alone caps the jobs side by side
    assert (p.side_by_side, p.threads, p.overrides) == (3, 2, ["hydra/launcher=joblib", "device.threads=2", "trainer.progress=false"])
    assert make_plan(["-m", "model=lr,base", "--cfg", "job"], cores=2) is None  # Hydra prints, nothing runs


def test_plan_on_gpus_runs_one_job_per_gpu():
    p = plan("+experiment=din_table3", "device=cuda", cores=16, gpus=4)
    assert (p.side_by_side, p.gpus, p.threads) == (4, 4, 4)
    assert p.overrides == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "device.threads=4", "trainer.progress=false"]
    assert "4 side by side, one per GPU, 4 CPU threads each" in p.describe()
    assert plan("model=lr,base,din", cores=16, gpus=2).gpus == 2  # device=auto with GPUs
    p = plan("model=lr,base,din", cores=16, gpus=1)
    assert (p.side_by_side, p.overrides) == (1, []) and p.describe().endswith("one at a time (1 GPU)")
    p = plan("model=lr,base", "device=cpu", cores=16, gpus=4)  # device=cpu: the cores, not the GPUs
    assert (p.side_by_side, p.gpus, p.threads) == (2, 0, 8)


def test_plan_of_an_optuna_search_follows_its_batches():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    p = plan("+hparams_search=din_optuna")  # the preset asks one trial at a time
    assert (p.jobs, p.side_by_side, p.overrides) == (20, 1, [])
    p = plan("+hparams_search=din_optuna", "hydra.sweeper.n_jobs=4", cores=2)
    assert (p.side_by_side, p.threads) == (2, 1) and p.describe().startswith("Optuna search of 20 trials, 2 side by side")


def test_each_worker_claims_its_own_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_plan, "_claimed", None)
    job = {"gpus": 2, "gpu_slots": str(tmp_path)}
    assert job_gpu(job, job_num=5) == 0 and job_gpu(job, job_num=6) == 0  # this process keeps its GPU
    code = "from ctrbench.sweep_plan import job_gpu; print(job_gpu(%r, job_num=0))" % job
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "1"  # while this process holds GPU 0
    assert job_gpu({"gpus": 3}, job_num=7) == 1  # no slot folder: the job number modulo the GPUs
    assert job_gpu({}, job_num=3) is None


def test_the_plan_reaches_the_jobs_through_hydras_job_environment(monkeypatch):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ctrbench import sweep

    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    monkeypatch.setattr(sweep_plan, "_cuda_devices", lambda: 2)
    with sweep_plan.planned_sweep(["-m", "model=lr,base,din"]) as args:
        assert sweep.PLAN is not None and sweep.PLAN.gpus == 2
        env = [a for a in args if a.startswith("++hydra.job.env_set.CTRBENCH_SWEEP_PLAN=")]
        assert len(env) == 1 and args[-len(sweep.PLAN.overrides) - 1:-1] == sweep.PLAN.overrides
        job = json.loads(OverridesParser.create().parse_override(env[0]).value())
        assert job == {"side_by_side": 2, "threads": 4, "cores": 8, "gpus": 2, "gpu_slots": job["gpu_slots"]}
        assert Path(job["gpu_slots"]).is_dir()
    assert sweep.PLAN is None and not Path(job["gpu_slots"]).exists()  # the slot folder goes with the sweep
    assert sweep_plan.ENV not in os.environ


# ---- threads ---------------------------------------------------------------------------------
def stat(*cpus: tuple[int, int]) -> str:
    """/proc/stat text with each cpu's (busy, idle) ticks."""
    lines = [f"cpu  {sum(b for b, _ in cpus)} 0 0 {sum(i for _, i in cpus)} 0 0 0 0 0 0"]
    lines += [f"cpu{n} {b} 0 0 {i} 0 0 0 0 0 0" for n, (b, i) in enumerate(cpus)]
    return "\n".join(lines) + "\nintr 1 2 3\n"


def fake_idle(before: str | None, after: str | None, own: tuple[float, float] = (0.0, 0.0)):
    readings, owns, clock = iter([before, after]), iter(own), iter([0.0, 0.2])
    return lambda: cores.idle_cores(reader=lambda: next(readings), sleep=lambda s: None, own_cpu=lambda: next(owns),
                                    clock=lambda: next(clock))


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


@pytest.mark.parametrize("ticks, threads, idle", [
    (((0, 20), (2, 18)), 2, "1.9"),   # a quiet machine: both cores
    (((20, 0), (20, 0)), 1, "0.0"),   # two busy processes: one thread, never two on shared cores
    (((20, 0), (0, 20)), 1, "1.0"),   # one busy process: the free core
    (((6, 14), (0, 20)), 1, "1.7"),   # a core 30% busy is not free
    (((3, 17), (1, 19)), 2, "1.8"),   # ... 15% busy is (sampling noise, background work)
])
def test_auto_threads_take_the_idle_cores(two_cores, ticks, threads, idle):
    before = stat((100, 100), (100, 100))
    after = stat(*((100 + b, 100 + i) for b, i in ticks))
    assert cores.choose_threads(0, default=2, idle=fake_idle(before, after)) == (threads, f"auto: {idle} of 2 cores idle")


def test_auto_threads_count_this_processes_own_cpu_as_free(two_cores):
    before, after = stat((100, 100), (100, 100)), stat((120, 100), (120, 100))  # both cores busy...
    idle = fake_idle(before, after, own=(10.0, 10.2))()  # ... one of them with this process (0.2 s of CPU in 0.2 s)
    assert idle == pytest.approx(1.0)


def test_auto_threads_only_count_the_usable_cores():
    before, after = stat((100, 100), (100, 100)), stat((120, 100), (100, 120))
    assert cores.idle_between(before, after, cpus={0}) == 0.0 and cores.idle_between(before, after, cpus={1}) == 1.0
    assert cores.idle_between("cpu  1 0 0 1\n", "cpu  1 0 0 21\n", cpus={0, 1}) == 2.0  # only the aggregate line


def test_auto_threads_without_proc_stat_and_with_nothing_to_choose(two_cores):
    assert cores.choose_threads(0, default=2, idle=lambda: None) == (2, "auto: all 2 cores (/proc/stat unreadable)")
    sampled = []
    assert cores.choose_threads(0, default=1, idle=lambda: sampled.append(1))[0] == 1 and not sampled  # OMP_NUM_THREADS=1
    assert cores.choose_threads(0, default=8, idle=lambda: 8.0)[0] == 2  # never more than the usable cores


def test_set_threads_and_the_sweeps_share_are_named():
    assert cores.choose_threads(3, default=2) == (3, "set: device.threads=3")
    share = {"side_by_side": 2, "threads": 1, "cores": 2}
    assert cores.choose_threads(1, default=2, sweep=share) == (1, "sweep: 2 jobs side by side on 2 cores")
    assert cores.choose_threads(2, default=2, sweep=share) == (2, "set: device.threads=2")  # not the plan's


def test_cgroup_quota_caps_the_usable_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cores.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cores.cgroup_cpu_quota(tmp_path) is None


# ---- progress --------------------------------------------------------------------------------
def test_progress_line_and_eta():
    now = 1000.0
    jobs = {Path(str(i)): JobState("done", 0.0, 100.0) for i in range(2)}
    jobs[Path("2")] = JobState("running", 100.0)
    jobs[Path("3")] = JobState("running", 150.0)
    # 2 done in 100 s each; two running (100 s left at most); 6 waiting, 2 side by side: 3 more rounds
    assert estimate_left(jobs, 10, 2, now=150.0) == pytest.approx(400)  # slots free at 50 and 100, then every 100 s
    assert progress_line(jobs, 10, 2, now=150.0) == "sweep: 2/10 done, 0 failed, 8 left (2 running), ETA 6m40s"
    assert progress_line({Path("0"): JobState("running", 0.0)}, 3, 2, now) == "sweep: 0/3 done, 0 failed, 3 left (1 running)"
    jobs[Path("4")] = JobState("failed", 0.0, 1.0)
    assert progress_line(jobs, None, None, now) == "sweep: 2 done, 1 failed, 2 running"
    assert [format_duration(s) for s in (5, 65, 3600 + 12 * 60 + 5)] == ["5s", "1m05s", "1h12m"]


def test_scan_reads_the_job_folders_of_this_sweep(tmp_path):
    from ctrbench.train.resume import write_status

    old = tmp_path / "0"
    old.mkdir()
    write_status(old, "completed")  # an earlier sweep's job in the same folder: not this sweep's
    since = time.time() + 1.0
    time.sleep(0.01)
    for n, status in (("1", "running"), ("2", "completed"), ("3", "failed")):
        (tmp_path / n / ".hydra").mkdir(parents=True)
        (tmp_path / n / ".hydra" / "hydra.yaml").write_text("")
        write_status(tmp_path / n, status)
        os.utime(tmp_path / n / ".hydra" / "hydra.yaml", (since + 1, since + 1))
        os.utime(tmp_path / n / "status.json", (since + 5, since + 5))
    jobs = scan_jobs(tmp_path, since)
    assert {k.name: v.state for k, v in jobs.items()} == {"1": "running", "2": "done", "3": "failed"}
    assert jobs[tmp_path / "2"].end - jobs[tmp_path / "2"].start == pytest.approx(4.0)


# ---- end to end ------------------------------------------------------------------------------
def test_a_parallel_sweep_gives_the_sequential_results_and_says_where_it_stands(tmp_path):
    """A 2-job sweep runs side by side by default (2 cores or more), prints its plan, its progress and
    a summary, and each job's results equal those of the same jobs run one at a time."""
    if cores.usable_cores() < 2:
        pytest.skip("one usable core: the sweep runs one job at a time")
    proc = ctrbench("train", "-m", "model=lr,base", *TINY, "hydra.sweep.dir=outputs/p", cwd=tmp_path)
    err = proc.stderr
    assert "ctrbench train: sweep of 2 jobs, 2 side by side with" in err and "-> outputs/p" in err, err
    assert "Joblib" in proc.stdout + err
    assert "sweep: 2/2 done, 0 failed, 0 left" in err
    assert err.rstrip().splitlines()[-1].startswith("sweep: 2 jobs done (0 failed) in ")
    assert err.rstrip().endswith(": outputs/p; results: ctrbench table outputs/p")
    par = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "outputs" / "p").glob("*/metrics.json")}
    assert len(par) == 2
    threads = {m["threads"] for m in par.values()}
    assert len(threads) == 1 and all(m["threads_choice"].startswith("sweep: 2 jobs side by side") for m in par.values())
    assert f"with {threads.pop()} thread" in " ".join((proc.stdout + err).split())  # the line that starts each run (may wrap)

    n = par["0"]["threads"]
    proc = ctrbench("train", "-m", "model=lr,base", *TINY, "hydra/launcher=basic", f"device.threads={n}",
                    "hydra.sweep.dir=outputs/s", cwd=tmp_path)
    assert "sweep of 2 jobs, one at a time (hydra/launcher=basic)" in proc.stderr
    seq = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "outputs" / "s").glob("*/metrics.json")}
    for job in ("0", "1"):
        assert seq[job]["model"] == par[job]["model"] and seq[job]["threads"] == n
        assert seq[job]["test"] == par[job]["test"] and seq[job]["valid_best"] == par[job]["valid_best"]


def test_a_single_run_says_its_threads_and_how_they_were_chosen(tmp_path):
    proc = ctrbench("train", "model=lr", "+debug=fast", "trainer.max_steps=2", cwd=tmp_path)
    m = json.loads(next((tmp_path / "outputs").rglob("metrics.json")).read_text())
    assert m["threads_choice"].startswith("auto: ") and 1 <= m["threads"] <= cores.usable_cores()
    out = " ".join((proc.stdout + proc.stderr).split())  # the log line may wrap
    assert f"on cpu with {m['threads']} thread{'s' if m['threads'] > 1 else ''} (auto: " in out
