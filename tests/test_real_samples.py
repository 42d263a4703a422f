"""End to end on the real public samples in ../shared/data/ (prefixes of the official files, in the
official formats): `ctrbench prepare` reads them and a short `ctrbench train` of DIN runs. Skipped,
saying so, when the folder is absent (it is not part of the repo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import ctrbench, only_run

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHORT = ["trainer.max_steps=30", "trainer.batch_size=64", "trainer.eval_every=15", "trainer.progress=false", "device=cpu"]

CASES = {
    "ml-latest-small": ["dataset=movielens_latest_small"],
    "amazon2014-digital-music": ["dataset=amazon", "dataset.category=Digital_Music"],
    "taobao-userbehavior": ["dataset=taobao"],
}


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(CASES))
def test_real_sample_prepares_and_trains(folder, tmp_path):
    raw = SHARED / folder
    if not raw.is_dir():
        pytest.skip(f"the real data sample {raw} is absent (it lives outside the repo, in ../shared/data/)")
    args = [*CASES[folder], f"dataset.raw_dir={raw}", "dataset.download=false"]
    prep = ctrbench("prepare", *args, cwd=tmp_path)
    assert "train samples" in prep.stdout
    ctrbench("train", *args, "model=din", *SHORT, cwd=tmp_path)
    m = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert 0.0 < m["test"]["auc"] < 1.0 and m["test"]["n"] > 0
