"""Every config composes, for every command and every option of every group."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ctrbench.cli import conf_dir, config_groups
from ctrbench.config_checks import check_train

GROUPS = config_groups()
NOT_PAPER_ROWS = {"din_table3/bst"}  # extra rows beside a paper's table (conf/experiment/din_vs_bst.yaml)
TRAIN_GROUPS = ["dataset", "model", "act", "reg", "device", "optim"]


def _compose(name, overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=False)


def test_the_groups_the_issue_names_exist():
    for g in TRAIN_GROUPS + ["debug"]:
        assert g in GROUPS and GROUPS[g], g
    assert {"lr", "base", "din"} <= set(GROUPS["model"]) and {"cpu", "cuda", "auto"} <= set(GROUPS["device"])
    assert {"adam", "sgd"} <= set(GROUPS["optim"])
    assert {"lr", "base", "wdl", "pnn", "deepfm", "din", "dien"} <= set(GROUPS["model"])
    assert {"prelu", "dice"} <= set(GROUPS["act"]) and {"none", "l2", "mba", "dropout", "filter", "difacto"} <= set(GROUPS["reg"])


def test_experiment_presets_set_the_official_code_setups():
    din = _compose("train", ["+experiment=din_code"])
    assert (din.act.name, din.optim.name, din.optim.lr, din.trainer.batch_size, din.trainer.grad_clip) == ("sigmoid", "sgd", 1.0, 32, 5.0)
    assert din.model.embedding_dim == 64 and list(din.model.mlp) == [80, 40] and din.trainer.schedule.every_steps == 336000
    assert din.model.name == "din" and din.model.attention_softmax is True
    base = _compose("train", ["+experiment=base_code"])
    assert base.model.name == "base" and base.model.pooling == "mean" and base.optim.name == "sgd" and base.trainer.batch_size == 32
    dien = _compose("train", ["+experiment=dien_code"])
    assert dien.model.name == "dien" and dien.model.augru_formula == "code" and dien.act.mode == "code"
    assert dien.model.mlp_inputs == "code"
    assert dien.trainer.schedule.every_epochs == 1 and dien.trainer.schedule.gamma == 0.5


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
    combos += [[f"+experiment={e}"] for e in GROUPS["experiment"]]
    combos += [["model=dien", f"model.evolution={e}"] for e in ("augru", "agru", "aigru", "gru_att")]
    combos += [[f"dataset/protocol={p}"] for p in GROUPS["dataset/protocol"] if p != "as_is"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for overrides in combos:
            synthetic = not any(o.startswith("dataset=") and o != "dataset=synthetic" for o in overrides)
            for extra in ([], ["+debug=fast"]) if synthetic else ([],):
                cfg = compose(config_name="train", overrides=overrides + extra)
                check_train(cfg)
                OmegaConf.to_container(cfg, resolve=True)


def test_dataset_configs_pick_their_source_protocol_and_published_figures():
    cases = {
        "amazon_electronics": ("AmazonSource", "DINProtocol", "amazon_electronics"),
        "amazon_books": ("AmazonSource", "DIENProtocol", "amazon_books"),
        "movielens_20m": ("MovieLensSource", "MovieLensProtocol", "movielens_20m"),
        "movielens_1m": ("MovieLensSource", "MovieLensProtocol", "movielens_1m"),
        "taobao": ("TaobaoSource", "DINProtocol", "taobao"),
        "amazon_electronics_x1": ("BarsSource", "AsIsProtocol", "amazon_electronics_x1"),
    }
    for ds, (source, protocol, name) in cases.items():
        cfg = _compose("prepare", [f"dataset={ds}"])
        assert cfg.dataset.source._target_.endswith(source) and cfg.dataset.protocol._target_.endswith(protocol), ds
        assert cfg.dataset.name == name
    amazon = _compose("prepare", ["dataset=amazon", "dataset.category=Books", "dataset.release=2018", "dataset/protocol=dien"])
    assert amazon.dataset.name == "amazon_Books_2018" and amazon.dataset.source.release == 2018 and amazon.dataset.max_len == 100
    paper = _compose("prepare", ["dataset=amazon_electronics"]).dataset.paper.din
    assert (paper.users, paper["items"], paper.categories, paper.samples) == (192403, 63001, 801, 1689188)
    assert _compose("prepare", ["dataset=movielens_20m"]).dataset.paper.movielens.samples == 20000263


@pytest.mark.parametrize("name", ["prepare", "evaluate", "table"])
def test_other_commands_compose(name):
    cfg = _compose(name, [])
    OmegaConf.to_container(cfg, resolve=True)


def test_configs_found_from_an_installed_package():
    # conf_dir() finds conf/ in a checkout; the wheel ships the same files as ctrbench/conf.
    d = conf_dir()
    assert (d / "train.yaml").exists() and (d / "model" / "din.yaml").exists()


def test_every_experiment_row_composes_with_its_model_act_and_reg():
    """Each +experiment=<table> sweeps +row over its rows (and 5 seeds); each row picks the model,
    act, reg and switches of the paper's row, and names itself in the run's metrics."""
    expected = {
        "din_table3/din_dice": ("din", "dice", "none"),
        "din_table4/base_no_goods": ("base", "prelu", "none"),
        "din_table4/base_mba": ("base", "prelu", "mba"),
        "din_table5/din_mba_dice": ("din", "dice", "mba"),
        "din_table5/deepfm": ("deepfm", "prelu", "dropout"),
        "dien_table4/augru": ("dien", "prelu", "none"),
    }
    tables = [e for e in GROUPS["experiment"] if "table" in e]
    assert set(tables) == {"din_table3", "din_table4", "din_table5", "dien_table2", "dien_table4"}
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for table in tables:
            exp = compose(config_name="train", overrides=[f"+experiment={table}"], return_hydra_config=True)
            params = exp.hydra.sweeper.params
            assert params.seed == "1,2,3,4,5"
            rows = params["+row"].split(",")
            # rows that are not the paper's (paper_row: false, e.g. din_table3/bst) have their own sweeps
            files = [f"{table}/{r}" for r in GROUPS[f"row/{table}"] if f"{table}/{r}" not in NOT_PAPER_ROWS]
            assert rows == files or sorted(rows) == sorted(files)
            for row in rows:
                cfg = compose(config_name="train", overrides=[f"+experiment={table}", f"+row={row}"])
                check_train(cfg)
                assert cfg.experiment_name == table and cfg.row_name == row.split("/")[1]
                if row in expected:
                    assert (cfg.model.name, cfg.act.name, cfg.reg.name) == expected[row], row
        no_goods = compose(config_name="train", overrides=["+experiment=din_table4", "+row=din_table4/base_no_goods"])
        assert no_goods.model.use_item is False
        augru = compose(config_name="train", overrides=["+experiment=dien_table4", "+row=dien_table4/augru"])
        assert augru.model.evolution == "augru" and augru.model.aux_alpha == 0.0
