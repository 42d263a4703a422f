"""Every config composes, for every command and every option of every group."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ctrbench.cli import conf_dir, config_groups
from ctrbench.config_checks import check_train

GROUPS = config_groups()
TRAIN_GROUPS = ["dataset", "model", "act", "reg", "device", "optim"]


def _compose(name, overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=False)


def test_the_groups_the_issue_names_exist():
    for g in TRAIN_GROUPS + ["debug"]:
        assert g in GROUPS and GROUPS[g], g
    assert {"lr", "base", "din"} <= set(GROUPS["model"]) and {"cpu", "cuda", "auto"} <= set(GROUPS["device"])
    assert {"adam", "sgd"} <= set(GROUPS["optim"])


def test_defaults():
    cfg = _compose("train", [])
    assert (cfg.dataset.name, cfg.model.name, cfg.act.name, cfg.reg.name, cfg.device.name) == ("synthetic", "din", "prelu", "none", "auto")
    for key in ("seed", "trainer.max_epochs", "trainer.max_steps", "trainer.batch_size", "dataset.max_len"):
        assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None or key == "trainer.max_steps"


def test_every_train_combination_composes_and_passes_checks():
    """Every model x act x reg combination, and every option of the other groups, with and without
    the fast preset (one Hydra initialisation, so the whole sweep takes seconds)."""
    combos = [[f"model={m}", f"act={a}", f"reg={r}"] for m, a, r in itertools.product(GROUPS["model"], GROUPS["act"], GROUPS["reg"])]
    combos += [[f"{g}={o}"] for g in ("dataset", "device", "optim") for o in GROUPS[g]]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for overrides in combos:
            for extra in ([], ["+debug=fast"]):
                cfg = compose(config_name="train", overrides=overrides + extra)
                check_train(cfg)
                OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", ["prepare", "evaluate", "table"])
def test_other_commands_compose(name):
    cfg = _compose(name, [])
    OmegaConf.to_container(cfg, resolve=True)


def test_configs_found_from_an_installed_package():
    # conf_dir() finds conf/ in a checkout; the wheel ships the same files as ctrbench/conf.
    d = conf_dir()
    assert (d / "train.yaml").exists() and (d / "model" / "din.yaml").exists()
