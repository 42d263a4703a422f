"""The published numbers (ctrbench/report/published.json): copied exactly from the papers and the
peers' reports, consistent with their own RelaImpr, and looked up per dataset and protocol."""

from __future__ import annotations

import pytest

from ctrbench.errors import UserError
from ctrbench.report import published as pub
from ctrbench.report.stats import rela_impr

TABLES = {"din_table3", "din_table4", "din_table5", "dien_table2", "dien_table4"}


def test_every_experiment_table_is_there_with_its_rows_in_the_papers_order():
    assert TABLES <= set(pub.table_ids())
    assert pub.table("din_table3").row_keys == ["lr", "base", "wdl", "pnn", "deepfm", "din", "din_dice"]
    assert [n for _, n in pub.table("din_table3").rows] == ["LR", "BaseModel", "Wide&Deep", "PNN", "DeepFM", "DIN", "DIN with Dice"]
    t4 = pub.table("din_table4")
    assert t4.row_keys == ["base_no_goods", "base", "base_dropout", "base_filter", "base_difacto", "base_mba"]
    assert t4.baseline == "base_no_goods"  # Table 4's RelaImpr is against its first row
    assert t4.row_name("base_mba") == "With goods_ids feature and MBA. Reg."
    assert t4.row_name("base_no_goods") == "Without goods_ids feature and Reg."
    assert pub.table("din_table5").row_keys == ["lr", "base", "wdl", "pnn", "deepfm", "din", "din_mba", "din_dice", "din_mba_dice"]
    assert pub.table("dien_table2").row_keys == ["base", "wdl", "pnn", "din", "gru_att", "dien"]
    assert pub.table("dien_table4").row_keys == ["base", "gru_att", "aigru", "agru", "augru", "dien"]
    assert pub.table("dien_table4").row_name("dien") == "DIEN (= + auxiliary loss)"
    # DIN is a reference row the experiment adds (not in the paper's Table 4): named, but not a paper row
    assert pub.table("dien_table4").row_name("din") == "DIN (reference)"
    assert "din" not in pub.table("dien_table4").row_keys
    for tid in TABLES:
        spec = pub.table(tid)
        assert spec.metric == ("gauc" if tid.startswith("din_") else "auc")
        for tid_ds in spec.datasets.values():
            for col in tid_ds["columns"]:
                assert col["source"] and col["label"]
    with pytest.raises(UserError, match="no published table 'din_table9'"):
        pub.table("din_table9")


def test_values_are_the_published_ones():
    a = pub.lookup("din_table3", "amazon_electronics", "din")
    paper, repo = a.columns
    assert (paper.label, repo.label) == ("paper", "authors' repo")
    assert [paper.mean(k, "gauc") for k in pub.table("din_table3").row_keys] == [0.7742, 0.8624, 0.8637, 0.8679, 0.8683, 0.8818, 0.8871]
    assert (repo.mean("din", "gauc"), repo.mean("din_dice", "gauc"), repo.mean("pnn", "gauc"), repo.mean("deepfm", "gauc")) == (0.8698, 0.8711, 0.8679, 0.8683)
    assert (repo.mean("base", "gauc"), repo.mean("wdl", "gauc"), repo.mean("lr", "gauc")) == (0.8624, 0.8637, None)
    ml = pub.lookup("din_table3", "movielens_20m", "movielens").columns[0]
    assert [ml.mean(k, "gauc") for k in pub.table("din_table3").row_keys] == [0.7263, 0.73, 0.7304, 0.7321, 0.7324, 0.7337, 0.7348]
    t5 = pub.lookup("din_table5", "alibaba").columns[0]
    assert (t5.mean("lr", "gauc"), t5.mean("din_mba_dice", "gauc")) == (0.5738, 0.6083)
    books = pub.lookup("dien_table2", "amazon_books", "dien").columns[0]
    assert (books.mean("dien", "auc"), books.std("dien", "auc")) == (0.8453, 0.00476)
    elec = pub.lookup("dien_table4", "amazon_electronics", "dien").columns[0]
    assert (elec.mean("agru", "auc"), elec.std("agru", "auc"), elec.mean("augru", "auc")) == (0.7628, 0.00015, 0.764)
    assert pub.lookup("dien_table4", "amazon_books", "dien").columns[0].mean("agru", "auc") == 0.789  # as printed
    assert pub.lookup("dien_table3", "industrial").columns[0].mean("dien", "auc") == 0.6541


def test_the_sources_relaimpr_follows_from_their_means():
    """Eq. 11 on the published means gives the published RelaImpr (to the printed 2 decimals)."""
    checked = 0
    for tid in pub.table_ids():
        spec = pub.table(tid)
        for ds in spec.datasets:
            for col in pub.lookup(tid, ds).columns:
                for row, printed in col.rela_impr.items():
                    ours = rela_impr(col.mean(row, spec.metric), col.mean(spec.baseline, spec.metric))
                    assert ours == pytest.approx(printed, abs=0.0051), (tid, ds, row)
                    checked += 1
    assert checked == 7 + 7 + 7 + 6 + 9  # Table 3 Amazon (also under x1, the same data) and MovieLens, Tables 4, 5


def test_lookup_same_data_is_comparable():
    a = pub.lookup("din_table3", "amazon_electronics", "din")
    assert a.comparable and a.published_dataset == "amazon_electronics" and a.reason is None
    # the protocol unknown (older metrics.json): still the same dataset
    assert pub.lookup("din_table3", "amazon_electronics", None).comparable
    # the generic amazon config's name for the same data
    assert pub.lookup("din_table3", "amazon_Electronics_2014", "din").comparable


def test_lookup_other_data_is_shown_for_orientation_only():
    s = pub.lookup("din_table3", "synthetic", "din")
    assert not s.comparable and s.published_dataset == "amazon_electronics" and "different data" in s.reason
    assert [c.label for c in s.columns] == ["paper", "authors' repo"]
    sample = pub.lookup("din_table3", "movielens_latest_small", "movielens")
    assert not sample.comparable and sample.published_dataset == "movielens_20m"  # the nearest published set
    alibaba = pub.lookup("din_table4", "synthetic")
    assert not alibaba.comparable and alibaba.published_dataset == "alibaba"
    # same dataset, another protocol: the DIEN protocol's Electronics is not the DIN paper's
    p = pub.lookup("din_table3", "amazon_electronics", "dien")
    assert not p.comparable and "different protocol" in p.reason
    assert not pub.lookup("dien_table2", "amazon_electronics", "din").comparable


def test_bars_x1_maps_only_the_rows_that_are_the_same_model():
    x1 = pub.lookup("din_table3", "amazon_electronics_x1", "as_is")
    assert x1.comparable
    labels = [c.label for c in x1.columns]
    assert labels == ["paper", "authors' repo", "BARS"]  # x1 is the DIN authors' own dataset.pkl
    bars = x1.columns[-1]
    assert set(bars.values) == {"din", "deepfm"}
    assert (bars.mean("din", "gauc"), bars.mean("din", "auc"), bars.mean("din", "logloss")) == (0.883526, 0.886028, 0.43019)
    assert bars.mean("deepfm", "gauc") == 0.87889
    dien = [u for u in pub.unmapped("amazon_electronics_x1") if u["model"].startswith("DIEN")]
    assert dien and "aux" in dien[0]["note"] and dien[0]["values"]["gauc"]["mean"] == 0.885625


def test_other_movielens_releases_are_shown_beside_movielens_20m():
    from ctrbench.report.published import lookup

    found = lookup("din_table3", "movielens_latest_small", "movielens")
    assert found.published_dataset == "movielens_20m" and not found.comparable and "different data" in found.reason
    assert lookup("din_table3", "synthetic", "din").published_dataset == "amazon_electronics"
