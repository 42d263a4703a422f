"""DIEN's forward pass against a naive step-by-step reference: one sample at a time, one GRU step at a
time, in float64. Pins the two-layer GRU attention row (attention on the *second* GRU's states) and
the auxiliary loss's weight alpha in the training loss (Eq. 7: L = L_target + alpha * L_aux)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from ctrbench.data.batches import Batcher
from ctrbench.train.build import build_model

from conftest import CONF, fast_trainer


def _model(tiny_dataset, **overrides):
    cfg = OmegaConf.load(CONF / "model" / "dien.yaml")
    for k, v in overrides.items():
        cfg[k] = v
    torch.manual_seed(3)
    return build_model(cfg, OmegaConf.load(CONF / "act" / "prelu.yaml"), tiny_dataset.vocab).double()


def _batch(tiny_dataset, negatives=False):
    b = Batcher(tiny_dataset, "train", 12, 20, shuffle=True, seed=5, negative_history=negatives)
    _, batch = next(iter(b))
    assert int(batch.hist_len.min()) < int(batch.hist_len.max())  # the batch has padding to mask
    return batch


def naive_gru(gru: torch.nn.GRU, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """torch.nn.GRU's equations, one step at a time (r, z, n gates stacked in that order)."""
    w_ih, w_hh, b_ih, b_hh = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    H = gru.hidden_size
    h = torch.zeros(H, dtype=torch.float64)
    out = []
    for x in xs:
        gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
        n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return out


def _embed(model, item, cate):
    return torch.cat([model.emb.item.weight[item], model.emb.cate.weight[cate]])


@torch.no_grad()
def test_two_layer_gru_attention_attends_on_the_second_grus_states(tiny_dataset):
    model = _model(tiny_dataset, evolution="gru_att").eval()
    batch = _batch(tiny_dataset)
    got = model(batch).logits
    for i in range(len(batch.label)):
        n = int(batch.hist_len[i])
        e_a = _embed(model, batch.item[i], batch.cate[i])
        e_h = [_embed(model, batch.hist_item[i, t], batch.hist_cate[i, t]) for t in range(n)]
        h1 = naive_gru(model.extractor, e_h)
        h2 = naive_gru(model.evolver, h1)
        # Eq. (8) on the second layer's states: a_t = softmax_t(h2_t W e_a), then sum_t a_t h2_t
        scores = [float(h @ model.attention.W @ e_a) for h in h2]
        z = sum(math.exp(s) for s in scores)
        interest = sum((math.exp(s) / z) * h for s, h in zip(scores, h2)) if n else torch.zeros(model.evolver.hidden_size, dtype=torch.float64)
        pooled = sum(e_h) if n else torch.zeros_like(e_a)
        x = torch.cat([e_a, pooled, interest])[None]
        want = model.mlp(x).squeeze()
        assert float(got[i]) == pytest.approx(float(want), abs=1e-10), i


def naive_aux_loss(model, batch) -> float:
    """DIEN Eq. (6) with the paper's inner-product s and reduction: sum over t, mean over samples."""
    total = 0.0
    B = len(batch.label)
    for i in range(B):
        n = int(batch.hist_len[i])
        e_h = [_embed(model, batch.hist_item[i, t], batch.hist_cate[i, t]) for t in range(n)]
        h = naive_gru(model.extractor, e_h)
        for t in range(n - 1):
            pos = e_h[t + 1]
            neg = _embed(model, batch.neg_hist_item[i, t + 1], batch.neg_hist_cate[i, t + 1])
            total -= math.log(torch.sigmoid(h[t] @ pos)) + math.log(1 - torch.sigmoid(h[t] @ neg))
    return total / B


@pytest.mark.parametrize("alpha", [0.37, 2.5])
def test_auxiliary_loss_enters_the_model_output_scaled_by_alpha(tiny_dataset, alpha):
    model = _model(tiny_dataset, aux_alpha=alpha).train()
    batch = _batch(tiny_dataset, negatives=True)
    with torch.no_grad():
        out = model(batch)
        assert float(out.aux_loss) == pytest.approx(alpha * naive_aux_loss(model, batch), rel=1e-10)


def test_training_loss_is_target_loss_plus_alpha_times_aux(tiny_dataset, tmp_path):
    """The loss the trainer reports (and differentiates) is BCE + alpha * L_aux, alpha = 0.37."""
    t = fast_trainer(tiny_dataset, tmp_path / "run", "model=dien", "model.aux_alpha=0.37", "trainer.grad_clip=0")
    model = t.model
    assert model.aux_alpha == 0.37
    batch = next(iter(t.train_batches))[1]
    assert batch.neg_hist_item is not None
    with torch.no_grad():
        m64 = _model(tiny_dataset, aux_alpha=0.37)
        m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
        m64.train()
        target = F.binary_cross_entropy_with_logits(m64(batch).logits, batch.label.double())
        want = float(target) + 0.37 * naive_aux_loss(m64, batch)
    got = t.train_step(batch)
    assert got == pytest.approx(want, rel=1e-5)
