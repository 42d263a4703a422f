"""The request path (ctrbench/serve/request.py): one user, L behaviours, C candidates scored together
give the scores of the C rows scored row-wise by the model's forward, for every model and every DIN /
DIEN variant, in eval mode (to 1e-5, absolute and relative); the user state can be reused; empty
histories and unknown ids are defined; the DIN and DIEN request modules script."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from ctrbench.data.batches import Batcher
from ctrbench.serve.request import (
    DIENRequest,
    DINRequest,
    ExpandedRequest,
    request_batch,
    request_scorer,
    score_request,
)
from ctrbench.train.build import build_model

TOL = {"atol": 1e-5, "rtol": 1e-5}

CASES = {
    "lr": ("lr", {}, "prelu"),
    "base": ("base", {}, "prelu"),
    "wdl": ("wdl", {}, "prelu"),
    "pnn": ("pnn", {}, "prelu"),
    "deepfm": ("deepfm", {}, "prelu"),
    "din": ("din", {}, "prelu"),
    "din_softmax": ("din", {"attention_softmax": True}, "prelu"),
    "din_outer": ("din", {"attention_inputs": "outer"}, "prelu"),
    "din_user": ("din", {"use_user": True}, "prelu"),
    "din_dice": ("din", {}, "dice"),
    "dien": ("dien", {}, "prelu"),
    "dien_agru": ("dien", {"evolution": "agru"}, "prelu"),
    "dien_aigru": ("dien", {"evolution": "aigru"}, "prelu"),
    "dien_gru_att": ("dien", {"evolution": "gru_att"}, "prelu"),
    "dien_code": ("dien", {"attention": "mlp", "augru_formula": "code", "aux_net": "mlp", "mlp_inputs": "code"}, "prelu"),
    "dien_user_dice": ("dien", {"use_user": True}, "dice"),
}


def make(name: str, dataset, act: str = "prelu", **overrides):
    cfg = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    for k, v in overrides.items():
        cfg[k] = v
    torch.manual_seed(0)
    model = build_model(cfg, OmegaConf.load(CONF / "act" / f"{act}.yaml"), dataset.vocab)
    with torch.no_grad():  # a few training-mode passes (Dice's moving averages), weights moved off their init
        b = Batcher(dataset, "train", 128, 20, shuffle=True, seed=1, negative_history=getattr(model, "needs_negative_history", False))
        for _, (_, batch) in zip(range(4), b):
            model.train()(batch)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def models(tiny_dataset):
    return {k: make(m, tiny_dataset, act, **kw) for k, (m, kw, act) in CASES.items()}


def requests(dataset, n: int = 6, C: int = 7, seed: int = 0):
    """Requests built from the dataset's test rows: a user's history and C random candidates (one of
    them id 0, the unknown item, and one with a category other than its own)."""
    g = torch.Generator().manual_seed(seed)
    b = Batcher(dataset, "test", 64, 20)
    batch = b.gather(torch.arange(n * 3)[::3])
    item_cate = torch.as_tensor(dataset.item_cate, dtype=torch.int64)
    out = []
    for r in range(n):
        L = int(batch.hist_len[r])
        items = torch.randint(1, dataset.vocab.n_items, (C,), generator=g)
        items[0] = 0
        cates = item_cate[items]
        cates[1] = (cates[1] % (dataset.vocab.n_cates - 1)) + 1
        out.append((batch.user[r : r + 1], batch.hist_item[r, :L], batch.hist_cate[r, :L], items, cates))
    return out


def rowwise(model, req) -> torch.Tensor:
    with torch.inference_mode():
        return model(request_batch(*req)).logits


@pytest.mark.parametrize("name", list(CASES))
def test_request_scores_equal_the_rows_scored_independently(name, models, tiny_dataset):
    model = models[name]
    scorer = request_scorer(model)
    kind = {"din": DINRequest, "dien": DIENRequest}.get(CASES[name][0], ExpandedRequest)
    assert isinstance(scorer, kind)
    for req in requests(tiny_dataset):
        got = score_request(model, *req, scorer=scorer)
        want = rowwise(model, req)
        assert got.shape == want.shape == (len(req[3]),)
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", list(CASES))
def test_a_request_equals_its_rows_inside_an_evaluation_batch(name, models, tiny_dataset):
    """The same samples gathered by the Batcher among other rows (padded to the batch's longest
    history), as evaluation scores them."""
    model = models[name]
    b = Batcher(tiny_dataset, "test", 64, 20)
    idx = torch.arange(40)
    with torch.inference_mode():
        batch = b.gather(idx)
        want = model(batch).logits
    for r in range(0, 40, 7):
        L = int(batch.hist_len[r])
        got = score_request(model, batch.user[r], batch.hist_item[r, :L], batch.hist_cate[r, :L], batch.item[r : r + 1], batch.cate[r : r + 1])
        torch.testing.assert_close(got, want[r : r + 1], **TOL)


@pytest.mark.parametrize("name", ["din", "din_softmax", "din_outer", "din_user"])
def test_din_scores_candidates_in_blocks_as_in_one(name, models, tiny_dataset):
    """Many candidates are scored in blocks of at most max_positions (behaviour, candidate) pairs."""
    model = models[name]
    scorer = request_scorer(model)
    scorer.max_positions = 9
    for req in requests(tiny_dataset, n=3, C=11):
        torch.testing.assert_close(score_request(model, *req, scorer=scorer), rowwise(model, req), **TOL)


@pytest.mark.parametrize("name", ["din", "din_softmax", "din_outer", "dien", "dien_gru_att", "dien_code", "base"])
def test_empty_history_and_one_candidate(name, models):
    model = models[name]
    empty = torch.zeros(0, dtype=torch.int64)
    for req in [
        (torch.tensor([3]), empty, empty, torch.tensor([5, 9, 0]), torch.tensor([1, 2, 0])),
        (torch.tensor([3]), torch.tensor([4, 0, 7]), torch.tensor([1, 0, 3]), torch.tensor([5]), torch.tensor([2])),
    ]:
        got = score_request(model, *req)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, rowwise(model, req), **TOL)


@pytest.mark.parametrize("name", ["din", "dien", "dien_aigru"])
def test_the_user_state_is_reused_across_candidate_sets(name, models, tiny_dataset):
    model = models[name]
    scorer = request_scorer(model)
    user, hi, hc, items, cates = requests(tiny_dataset, n=1, C=12)[0]
    with torch.inference_mode():
        state = scorer.encode_user(user, hi, hc)
        whole = scorer.score_candidates(state, items, cates)
        parts = torch.cat([scorer.score_candidates(state, items[:5], cates[:5]), scorer.score_candidates(state, items[5:], cates[5:])])
    torch.testing.assert_close(parts, whole, **TOL)


@pytest.mark.parametrize("name", ["din", "din_user", "din_outer", "dien", "dien_gru_att", "dien_code", "dien_aigru", "dien_agru", "dien_user_dice"])
def test_request_modules_script(name, models, tiny_dataset):
    model = models[name]
    scripted = torch.jit.script(request_scorer(model))
    for req in requests(tiny_dataset, n=3, seed=2):
        with torch.inference_mode():
            torch.testing.assert_close(scripted(*req), rowwise(model, req), **TOL)


def test_bench_serve_prints_one_json_line_per_configuration(capsys):
    """scripts/bench_serve.py with flags picking configurations: one line each, with the fields the
    docs table reads, and every format within 1e-5 of the row-wise baseline."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_serve.py"
    spec = importlib.util.spec_from_file_location("bench_serve", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        bench.main(["--model", "din", "dien", "--candidates", "3", "--history", "0", "4", "--threads", "1", "--format", "eager", "torchscript", "rows",
                    "--repeats", "1", "--min-requests", "2", "--seconds", "0", "--warmup", "1"])
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 2 * 2 * 3
    for line in lines:
        assert {"model", "candidates", "history", "threads", "format", "p50_ms", "p99_ms", "requests_per_s", "commit", "date"} <= set(line)
        assert line["max_abs_diff"] < 1e-5 and line["p99_ms"] >= line["p50_ms"] > 0
    assert {(x["model"], x["history"], x["format"]) for x in lines} == {(m, h, f) for m in ("din", "dien") for h in (0, 4) for f in ("eager", "torchscript", "rows")}
