"""``ctrbench export``: every model (each config in conf/model/, DIEN with each evolution) in every
format scores as the eager model, max |difference| < 1e-5, on random batches of variable lengths
with empty histories; a format that cannot express a model writes nothing and says which formats
work; a run exported from the CLI reloads in a fresh process that never imports ctrbench."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ctrbench.checksums import file_digest
from ctrbench.data.schema import Vocab
from ctrbench.errors import UserError
from ctrbench.models.base import CTRModel, ModelOutput
from ctrbench.serve import export as ex

# torch 2.13 deprecates TorchScript (trace, script, load): the format is still asked for and still loads
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\..*` is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
VOCAB = Vocab(n_users=40, n_items=150, n_cates=9)
HAS_ONNX = not ex._missing_onnx_packages()
FORMATS = [f for f in ex.FORMATS if f != "onnx" or HAS_ONNX]
TOL = 1e-5


def _variants():
    """Each model config, DIEN with each evolution, the official code's DIEN (dien_code: MLP attention,
    the code's AUGRU and MLP inputs, Dice with batch statistics at inference) and DIN with Dice's
    moving averages and softmax attention. AGRU and AIGRU differ from AUGRU only in the gate factors
    fed to the same recurrence, so they skip the ONNX conversion (the slowest step: ~5 s each)."""
    out = [pytest.param(p.stem, {}, "prelu", FORMATS, id=p.stem) for p in sorted((CONF / "model").glob("*.yaml"))]
    out += [pytest.param("dien", {"evolution": e}, "prelu", ["torchscript", "pt2"], id=f"dien-{e}") for e in ("agru", "aigru")]
    out += [pytest.param("dien", {"evolution": "gru_att"}, "prelu", FORMATS, id="dien-gru_att")]
    code = {"attention": "mlp", "augru_formula": "code", "mlp_inputs": "code", "aux_net": "mlp"}
    out += [pytest.param("dien", code, "dice-code", FORMATS, id="dien-code"),
            pytest.param("din", {"attention_softmax": True}, "dice", FORMATS, id="din-dice")]
    return out


def _model(name: str, overrides: dict, act: str) -> CTRModel:
    from ctrbench.train.build import build_model

    model_cfg = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    for k, v in overrides.items():
        model_cfg[k] = v
    act_cfg = OmegaConf.load(CONF / "act" / f"{act.split('-')[0]}.yaml")
    if act.endswith("-code"):
        act_cfg.mode = "code"
    torch.manual_seed(0)
    model = build_model(model_cfg, act_cfg, VOCAB).eval()
    with torch.no_grad():  # away from the initial values (LR's and the wide parts' zeros, Dice's statistics)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name_, b in model.named_buffers():
            if name_.endswith("running_mean"):
                b.normal_(0.0, 0.2)
            elif name_.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model


def _fresh_batches(seed: int = 99):
    """Batches the export's own check did not see (it ran ``ex.check_batches``: up to 64 rows x 30)."""
    g = torch.Generator().manual_seed(seed)
    return [
        ex.random_batch(VOCAB, 2, 0, g),
        ex.random_batch(VOCAB, 5, 6, g, empty="all"),
        ex.random_batch(VOCAB, 23, 11, g),
    ]


@pytest.mark.parametrize(("name", "overrides", "act", "formats"), _variants())
def test_every_format_scores_as_the_eager_model(name, overrides, act, formats, tmp_path):
    model = _model(name, overrides, act)
    written = ex.export_model(model, VOCAB, formats, tmp_path, name=name)
    assert [w.format for w in written] == formats
    batches = _fresh_batches()
    want = [ex.eager_logits(model, b) for b in batches]
    for w in written:
        run = ex.load_runner(w.format, w.path)
        for b, expected in zip(batches, want):
            got = run(*ex.batch_inputs(b))
            assert got.shape == expected.shape and np.isfinite(got).all()
            assert np.abs(got - expected).max() < TOL, (w.format, b.hist_item.shape)
        info = json.loads(w.json_path.read_text())
        assert info["sha256"] == file_digest(w.path) and info["check"]["max_abs_diff"] < TOL
        assert [i["name"] for i in info["inputs"]] == list(ex.INPUTS)  # every format keeps all six inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ex.FILES[f] for f in formats] + [ex.FILES[f] + ".json" for f in formats])


def test_ids_outside_the_vocabulary_score_as_unknown_and_lengths_are_clamped(tmp_path):
    model = _model("din", {}, "prelu")
    (w,) = ex.export_model(model, VOCAB, ["torchscript"], tmp_path)
    run = ex.load_runner("torchscript", w.path)
    b = ex.random_batch(VOCAB, 6, 5, torch.Generator().manual_seed(3))
    user, item, cate, hist_item, hist_cate, hist_len = ex.batch_inputs(b)
    odd_item = item.clone()
    odd_item[:3] = torch.tensor([VOCAB.n_items, 10**9, -4])
    unknown = item.clone()
    unknown[:3] = 0
    np.testing.assert_array_equal(run(user, odd_item, cate, hist_item, hist_cate, hist_len),
                                  run(user, unknown, cate, hist_item, hist_cate, hist_len))
    np.testing.assert_array_equal(run(user, item, cate, hist_item, hist_cate, hist_len + 100),
                                  run(user, item, cate, hist_item, hist_cate, torch.full_like(hist_len, 5)))


def test_a_filter_run_carries_its_item_lookup(tmp_path):
    """reg=filter maps rare items to the unknown item in evaluation too: the artifact applies the
    same lookup to raw ids, so it scores raw ids as ctrbench evaluate scores the filtered batch."""
    import functools

    from ctrbench.train.regularizers import Filter

    reg = Filter(top_k=40)
    lookup = torch.zeros(VOCAB.n_items, dtype=torch.int64)
    kept = torch.randperm(VOCAB.n_items, generator=torch.Generator().manual_seed(1))[:40]
    lookup[kept] = kept
    reg._lookup = lookup
    transform = functools.partial(reg.transform, training=False)
    model = _model("din", {}, "prelu")
    batches = ex.check_batches(VOCAB)
    (w,) = ex.export_model(model, VOCAB, ["torchscript"], tmp_path, batches=batches, transform=transform, item_lookup=lookup)
    run = ex.load_runner("torchscript", w.path)
    b = _fresh_batches()[2]
    np.testing.assert_allclose(run(*ex.batch_inputs(b)), ex.eager_logits(model, b, transform), atol=TOL, rtol=0)
    assert np.abs(run(*ex.batch_inputs(b)) - ex.eager_logits(model, b)).max() > 1e-3  # the lookup matters


class _Cummax(CTRModel):
    """A model whose running maximum over the history has no ONNX function (aten.cummax)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Embedding(VOCAB.n_items, 1)

    def forward(self, batch):
        h = self.w(batch.hist_item).squeeze(-1) * batch.hist_mask
        return ModelOutput(logits=(torch.cummax(h, dim=1)[0] * batch.hist_mask).sum(1) + self.w(batch.item).squeeze(-1))


class _Frozen(CTRModel):
    """A model that reads a Python number off the data: a trace keeps the example's value."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Embedding(VOCAB.n_items, 1)

    def forward(self, batch):
        n = int(batch.hist_len.max())
        return ModelOutput(logits=self.w(batch.hist_item[:, :n]).sum((1, 2)) * (n + 1))


@pytest.mark.skipif(not HAS_ONNX, reason="needs the onnx extra (onnx, onnxscript, onnxruntime)")
def test_a_format_that_cannot_express_the_model_writes_nothing_and_offers_the_others(tmp_path):
    with pytest.raises(ex.FormatUnsupported) as e:
        ex.export_model(_Cummax(), VOCAB, ["onnx"], tmp_path, name="cummax")
    msg = str(e.value)
    assert "\n" not in msg and "cannot be exported as onnx" in msg and "cummax" in msg.lower()
    assert msg.endswith("formats that work for it: torchscript, pt2")
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor a temporary file


def test_a_trace_that_froze_a_data_dependent_value_is_refused(tmp_path):
    model = _Frozen().eval()
    batches = ex.check_batches(VOCAB)
    expected = [ex.eager_logits(model, b) for b in batches]
    with pytest.raises(ex.FormatUnsupported, match="does not reproduce this model"):
        ex.build_checked(ex._Artifacts(model, VOCAB), "torchscript", tmp_path / "m.pt", batches, expected)
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_its_runtime_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "_missing_onnx_packages", lambda: ["onnxruntime"])
    with pytest.raises(ex.FormatUnsupported, match=r"format=onnx needs onnxruntime: pip install 'ctrbench\[onnx\]'"):
        ex.export_model(_model("lr", {}, "prelu"), VOCAB, ["onnx"], tmp_path)
    written = ex.export_model(_model("lr", {}, "prelu"), VOCAB, ["onnx", "torchscript"], tmp_path, explicit=False)
    assert [w.format for w in written] == ["torchscript"]  # format=all: the others, and a note


def test_parse_formats():
    assert ex.parse_formats("all") == list(ex.FORMATS)
    assert ex.parse_formats("onnx") == ["onnx"]
    assert ex.parse_formats(["pt2", "TorchScript", "pt2"]) == ["pt2", "torchscript"]
    with pytest.raises(ex.ConfigError, match="'tflite' is not an export format"):
        ex.parse_formats("tflite")


# ---- from the CLI: train +debug=fast, export every format, reload without ctrbench -------------------------------
def _ctrbench(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "COLUMNS")}
    env["CTRBENCH_DATA_DIR"] = str(cwd / "data")
    proc = subprocess.run([sys.executable, "-m", "ctrbench", *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctrbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_a_fast_run_exports_every_format_and_reloads_without_ctrbench(tmp_path):
    """The acceptance check, as one test (its training and export are the file's slowest step; a
    module fixture shared by several tests is rebuilt by every pytest-xdist worker running one):
    train a +debug=fast DIEN run (the recurrent model, the hardest to capture), ``ctrbench export
    format=all``, then load each artifact with torch (and onnxruntime) alone in a new process that
    never imports ctrbench, and get the eager scores of the run's best checkpoint back on random
    batches (variable and empty histories) and a sample of the test split."""
    work = tmp_path / "work"
    work.mkdir()
    _ctrbench("train", "+debug=fast", "model=dien", cwd=work)
    (run,) = [p.parent for p in (work / "outputs").rglob("metrics.json")]
    proc = _ctrbench("export", str(run), "format=all", cwd=work)
    folder = run / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted([ex.FILES[f] for f in FORMATS] + [ex.FILES[f] + ".json" for f in FORMATS])
    if not HAS_ONNX:
        assert "not exported as onnx" in proc.stdout and "ctrbench[onnx]" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    for fmt in FORMATS:
        info = json.loads((folder / (ex.FILES[fmt] + ".json")).read_text())
        assert info["format"] == fmt and info["sha256"] == file_digest(folder / ex.FILES[fmt])
        assert info["model"] == "dien" and info["variant"]["evolution"] == "augru"
        assert info["config"]["model"]["name"] == "dien" and info["metrics"] == metrics
        assert {"ctrbench", "torch"} <= set(info["versions"]) and info["check"]["max_abs_diff"] < TOL
        assert [i["name"] for i in info["inputs"]] == list(ex.INPUTS) and {i["dtype"] for i in info["inputs"]} == {"int64"}
        manifest = json.loads(Path(info["id_maps"]["manifest"]).read_text())
        assert info["vocab"] == manifest["vocab"] and Path(info["id_maps"]["item_categories"]).is_file()
        assert info["run"]["checkpoint"] == "best.pt" and info["history"]["max_len"] == info["config"]["dataset"]["max_len"]
        assert len(info["example"]["logits"]) == 3 and info["example"]["inputs"]["hist_len"] == [0, 2, 4]

    loaded = ex.load_run(run, work / "data")
    g = torch.Generator().manual_seed(5)
    vocab = loaded.dataset.vocab
    batches = [ex.random_batch(vocab, 3, 0, g), ex.random_batch(vocab, 7, 9, g, empty="all"), ex.random_batch(vocab, 31, 20, g),
               ex._sample_batch(loaded, rows=50, seed=1)]
    np.savez(work / "inputs.npz", **{f"{i}_{n}": t.numpy() for i, b in enumerate(batches) for n, t in zip(ex.INPUTS, ex.batch_inputs(b))})
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import torch
        names = {list(ex.INPUTS)!r}
        data = np.load("inputs.npz")
        batches = [[data[f"{{i}}_{{n}}"] for n in names] for i in range({len(batches)})]
        folder = {str(run / "export")!r}
        out = {{}}
        ts = torch.jit.load(folder + "/model.torchscript.pt")
        pt2 = torch.export.load(folder + "/model.pt2").module()
        for i, b in enumerate(batches):
            xs = [torch.from_numpy(x) for x in b]
            out[f"torchscript_{{i}}"] = ts(*xs).detach().numpy()
            out[f"pt2_{{i}}"] = pt2(*xs).detach().numpy()
        if {HAS_ONNX!r}:
            import onnxruntime
            session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
            for i, b in enumerate(batches):
                out[f"onnx_{{i}}"] = session.run(None, dict(zip(names, b)))[0]
        example = json.load(open(folder + "/model.torchscript.pt.json"))["example"]
        got = ts(*[torch.tensor(example["inputs"][n]) for n in names]).detach().numpy()
        out["example"] = np.abs(got - np.array(example["logits"])).max(keepdims=True)
        assert not any(m == "ctrbench" or m.startswith("ctrbench.") for m in sys.modules), "ctrbench was imported"
        np.savez("scores.npz", **out)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], cwd=work, env=env, check=True, timeout=300)
    scores = np.load(work / "scores.npz")
    for i, b in enumerate(batches):
        want = ex.eager_logits(loaded.model, b)
        for fmt in FORMATS:
            got = scores[f"{fmt}_{i}"]
            assert got.shape == want.shape and np.abs(got - want).max() < TOL, (fmt, i)
    assert scores["example"][0] < TOL


def test_export_errors_are_one_line(tmp_path):
    run = tmp_path / "run"  # an empty folder: each error below comes before anything is read from it
    run.mkdir()
    proc = _ctrbench("export", str(tmp_path / "no-run"), "format=tflite", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "format='tflite' is not an export format: expected one of torchscript, onnx, pt2 or all" in proc.stderr
    base = OmegaConf.load(CONF / "export.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key)
    base.paths.data_dir = str(tmp_path / "data")
    for overrides, expected in (
        ({}, "no run folder given"),
        ({"run_dir": "no/such/run"}, "run folder 'no/such/run' does not exist"),
        ({"run_dir": str(run), "tolerance": 0}, "tolerance=0 is invalid"),
        ({"run_dir": str(run), "checkpoint": "first"}, "checkpoint='first': expected best or last"),
    ):
        with pytest.raises(UserError, match=re.escape(expected)):
            ex.export_run(OmegaConf.merge(base, overrides))
