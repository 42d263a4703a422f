"""Bad config values, fuzzed (docs/reliability.md, part 6): for every user-facing key that has a
validation (model.*, act.*, reg.*, trainer.*, dataset.source.* of the synthetic source,
dataset.protocol.*, metric.gauc_weighting, device.*, seed, dataset.max_len), random values of
every kind a command line can give (wrong types, negatives, huge numbers, NaN / inf, strings,
lists, null) must either be accepted or give a ``ConfigError`` whose one-line message names the
key; never another exception (which the CLI would print as a traceback).

Each case runs what ``ctrbench train`` runs before it trains, up to model and regularizer
construction: the config checks, the Trainer's own checks, the device, the dataset source and
protocol objects (not the data build), the model (built on PyTorch's meta device: shapes only,
so a huge embedding costs nothing here; see ctrbench/memory_budget.py for the real run), the
regularizer, the optimizer, the learning-rate schedule and the memory budget.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from fuzz_support import count, fuzz_settings, write_report
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ctrbench.cli import conf_dir
from ctrbench.config_checks import check_train
from ctrbench.data.prepare import _construct
from ctrbench.data.schema import Vocab
from ctrbench.errors import ConfigError, UserError
from ctrbench.memory_budget import check_memory_budget
from ctrbench.train import checkpoint, loop
from ctrbench.train.build import act_cfg_without_name, build_model, build_regularizer, lr_lambda
from ctrbench.train.environment import resolve_device, seed_everything
from ctrbench.train.loop import Trainer


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    write_report()


@pytest.fixture(autouse=True)
def _no_thread_changes(monkeypatch):
    """resolve_device sets torch's thread count from device.threads: not inside the tests."""
    monkeypatch.setattr(loop.torch, "set_num_threads", lambda n: None)


VOCAB = Vocab(n_users=50, n_items=80, n_cates=7)
MANIFEST = {"vocab": VOCAB.__dict__, "rows": {"behaviours": 500, "train": 400, "valid": 50, "test": 50},
            "stats": {"behaviours_per_user": {"max": 30}}}

CONF = conf_dir()
with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
    BASE = compose("train", [])


def composed(*overrides: str) -> DictConfig:
    """The default train config with group options swapped in (``model=dien``,
    ``dataset/protocol=dien``), without a Hydra compose per case."""
    cfg = copy.deepcopy(BASE)
    for o in overrides:
        group, option = o.split("=")
        node = OmegaConf.load(CONF / group / f"{option}.yaml")
        if group == "dataset/protocol":
            if "protocol" in node:  # '# @package dataset': max_len and protocol
                cfg.dataset.max_len, cfg.dataset.protocol = node.max_len, node.protocol
            else:
                cfg.dataset.protocol = node
        else:
            cfg[group] = node
    return cfg


def build_up_to_training(cfg: DictConfig, run_dir: Path = Path("unused-run-dir")) -> None:
    """What `ctrbench train` does with a config before the first training step (the data build
    and load aside)."""
    check_train(cfg)
    Trainer(cfg, run_dir)
    state = checkpoint.rng_state()
    try:
        seed_everything(int(cfg.seed))
    finally:
        checkpoint.set_rng_state(state)
    resolve_device(cfg.device)
    _construct(cfg.dataset.source, "dataset.source")
    _construct(cfg.dataset.protocol, "dataset.protocol")
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.act, VOCAB)
    build_regularizer(cfg.reg)
    with torch.device("meta"):
        instantiate(act_cfg_without_name(cfg.optim))([p for p in model.parameters() if p.requires_grad])
    factor = lr_lambda(cfg.trainer.schedule, 7)
    for step in (0, 1, 1000):
        factor(step)
    check_memory_budget(cfg, MANIFEST)


# values of every kind a command line can produce (Hydra's override grammar)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(10**20), 10**20),
    st.sampled_from([0, 1, 2, 10**6, 2**31, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-12, 1e308, float("nan"), float("inf")]),
    st.text(max_size=8),
    st.sampled_from(["", "abc", "1", "-1", "0.5", "null", "true", "sum", "mean", "paper", "code", "inner", "outer", "cpu", "cuda"]),
    st.lists(st.one_of(st.integers(-5, 300), st.text(max_size=3)), max_size=4),
    st.lists(st.integers(1, 64), min_size=0, max_size=3),
)

SKIP = {"name", "_target_", "_partial_"}
# keys of work in progress elsewhere, validated there: resume / Ctrl-C / numerical faults (parts
# 1, 2, 4) and distributed training
OTHER_PARTS = ("trainer.checkpoint_every", "trainer.resume", "trainer.runs_dir", "trainer.fault_injection",
               "trainer.distributed", "trainer.ddp_backend")


def keys_of(node: DictConfig, prefix: str) -> list[str]:
    out = []
    for k, v in node.items():
        if k in SKIP or f"{prefix}.{k}".startswith(OTHER_PARTS):
            continue
        if isinstance(v, DictConfig):
            out += keys_of(v, f"{prefix}.{k}")
        else:
            out.append(f"{prefix}.{k}")
    return out


def _cases() -> list[tuple[tuple[str, ...], str]]:
    """(group overrides, key) for every key to fuzz, each in a config where it exists."""
    cases = []
    groups = {
        "model": ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"],
        "act": ["prelu", "dice", "sigmoid"],
        "reg": ["l2", "mba", "dropout", "filter", "difacto"],
    }
    for group, options in groups.items():
        for option in options:
            overrides = (f"{group}={option}",)
            for key in keys_of(composed(*overrides)[group], group):
                cases.append((overrides, key))
    for protocol in ("din", "dien", "movielens"):
        overrides = (f"dataset/protocol={protocol}",)
        for key in keys_of(composed(*overrides).dataset.protocol, "dataset.protocol"):
            cases.append((overrides, key))
    base = composed()
    for prefix in ("dataset.source", "trainer", "device"):
        cases += [((), key) for key in keys_of(OmegaConf.select(base, prefix), prefix)]
    cases += [((), key) for key in ("metric.gauc_weighting", "seed", "dataset.max_len", "optim.lr")]
    return cases


CASES = _cases()
def group_of(key: str) -> str:
    for prefix in ("dataset.source", "dataset.protocol", "model", "act", "reg", "trainer", "device"):
        if key.startswith(prefix + "."):
            return prefix
    return "other"


def test_the_fuzzed_keys_cover_every_group():
    groups = {group_of(k) for _, k in CASES}
    assert groups == {"model", "act", "reg", "dataset.source", "dataset.protocol", "trainer", "device", "other"}
    assert len({k for _, k in CASES}) >= 75


def check_value(overrides: tuple[str, ...], key: str, value) -> str:
    cfg = composed(*overrides)
    OmegaConf.update(cfg, key, value, merge=False)
    try:
        build_up_to_training(cfg)
    except UserError as e:
        msg = str(e)
        assert isinstance(e, ConfigError), f"{key}={value!r}: {type(e).__name__}: {msg}"
        assert "\n" not in msg, msg
        # device.type=cuda without a GPU: resolve_device's "device=cuda was asked for, but torch sees no
        # CUDA device" names the group option a user types (device=cuda)
        named = key in msg or (key == "device.type" and msg.startswith("device=cuda was asked for"))
        assert named, f"{key}={value!r}: the message does not name the key: {msg}"
        count(f"config {group_of(key)}", "ConfigError naming the key")
        return "error"
    except OmegaConfBaseException as e:  # the CLI prints these as "config error at '<key>'"
        assert getattr(e, "full_key", None) == key, f"{key}={value!r}: {type(e).__name__}: {e}"
        count(f"config {group_of(key)}", "OmegaConf error naming the key")
        return "error"
    count(f"config {group_of(key)}", "accepted")
    return "ok"


def bucket(case) -> str:
    """A test per group option (model=din, act=dice, ...) or key group."""
    overrides, key = case
    return overrides[0] if overrides else group_of(key)


BUCKETS = sorted({bucket(c) for c in CASES})


@pytest.mark.parametrize("group", BUCKETS)
def test_random_values_give_a_config_error_naming_the_key_or_are_accepted(group):
    cases = [c for c in CASES if bucket(c) == group]

    @fuzz_settings(max(12, 3 * len(cases)))
    @given(case=st.sampled_from(cases), value=VALUES)
    def check(case, value):
        overrides, key = case
        check_value(overrides, key, value)

    check()


@pytest.mark.slow
def test_every_key_rejects_an_obviously_wrong_value_or_ignores_it():
    """Each key once with a value of the wrong kind, deterministically (no sampling gaps)."""
    for overrides, key in CASES:
        for value in ("not-a-value", -1, None, [1, 2], 10**20, float("nan")):
            check_value(overrides, key, value)


def test_the_defaults_pass():
    for overrides in {o for o, _ in CASES}:
        build_up_to_training(composed(*overrides))


# ---- regressions: what the fuzzing found (each was a traceback, or an error after training) ------


def _error(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        build_up_to_training(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("key, value, expected", [
    # the device's type (found by a deep run: on a machine without CUDA the message names device=cuda)
    ("device.type", "gpu", "device.type='gpu' is invalid: expected one of auto, cpu, cuda"),
    # hydra.utils.instantiate wrapped the regularizer's ConfigError into InstantiationException
    ("reg.lam", -1, "reg.lam=-1 is invalid"),
    ("reg.rate", 1.5, "reg.rate=1.5 is invalid"),
    # torch's multi-line C++ error ("Overflow when unpacking long long ... frame #0 ...")
    ("model.embedding_dim", 10**20, "model.embedding_dim=100000000000000000000 is invalid"),
    ("model.mlp", [200, "x"], "model.mlp=[200, 'x'] is invalid"),
    # '<' between str and int inside the protocol's constructor: named only 'dataset.protocol'
    ("dataset.protocol.min_behaviours", "x", "dataset.protocol.min_behaviours must be an integer >= 3"),
    # reached evaluate() after the whole training before failing
    ("metric.gauc_weighting", "users", "metric.gauc_weighting='users' is invalid"),
    # torch.manual_seed: RuntimeError "Overflow when unpacking long"
    ("seed", 2**64, "seed=18446744073709551616 is invalid"),
    # NaN or a string in the synthetic source: TypeError / NaN probabilities at data build time
    ("dataset.source.bias", float("nan"), "dataset.source.bias=nan is invalid"),
    ("dataset.source.n_users", "many", "dataset.source.n_users='many' is invalid"),
    # a constraint between two keys named only the other one (n_cates <= n_items)
    ("dataset.source.n_items", 10, "dataset.source.n_cates=60 is out of range for the synthetic dataset: expected from 1 to dataset.source.n_items=10"),
    # a truthy string is not true
    ("model.use_user", "no", "model.use_user='no' is invalid: expected true or false"),
])
def test_regression_values_found_by_fuzzing(key, value, expected):
    cfg = composed("model=din", "reg=dropout") if key.startswith("reg.rate") else composed("model=din", "reg=l2")
    OmegaConf.update(cfg, key, value, merge=False)
    assert expected in _error(cfg)


def test_regression_dien_hidden_message_names_embedding_dim():
    cfg = composed("model=dien")
    cfg.model.embedding_dim = 8
    msg = _error(cfg)
    assert "model.embedding_dim" in msg and "model.hidden" in msg


@pytest.mark.slow
def test_regression_reg_error_is_one_line_on_the_command_line(tmp_path):
    """Before: `ctrbench train reg=l2 reg.lam=-1` ended in Hydra's InstantiationException traceback."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ctrbench", "train", "reg=l2", "reg.lam=-1", "+debug=fast"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "reg.lam=-1 is invalid" in err and "Traceback" not in err, err
