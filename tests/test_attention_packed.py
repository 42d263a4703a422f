"""DIN's local activation unit on the real positions only (``packed_scores``) gives what the padded
form gives: the same scores and the same gradients, with PReLU and with Dice (whose statistics are
over the real rows in both), with and without the softmax."""

from __future__ import annotations

import pytest
import torch

from ctrbench.nn.activations import Dice, PReLU
from ctrbench.nn.attention import LocalActivationUnit


def _unit(act, softmax):
    torch.manual_seed(0)
    unit = LocalActivationUnit(6, [8, 4], act, "qk_diff_prod", softmax).double()
    with torch.no_grad():  # non-trivial PReLU slopes
        for m in unit.modules():
            if isinstance(m, (PReLU, Dice)):
                m.alpha.uniform_(-0.5, 0.5)
    return unit


def _inputs():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 7, 0, 2, 3])  # one long history pads the rest: 13 of 35 positions real
    B, L = len(lengths), int(lengths.max())
    q = torch.randn(B, 6, generator=g, dtype=torch.double)
    k = torch.randn(B, L, 6, generator=g, dtype=torch.double)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    return q, k * mask[..., None], mask


@pytest.mark.parametrize("act", [PReLU, Dice], ids=["prelu", "dice"])
@pytest.mark.parametrize("softmax", [False, True])
def test_packed_equals_padded(act, softmax):
    q, k, mask = _inputs()
    B, L = mask.shape
    pos = mask.reshape(-1).nonzero().squeeze(1)
    row = pos // L
    results = {}
    for packed in (False, True):
        unit = _unit(act, softmax).train()
        qq, kk = q.clone().requires_grad_(), k.clone().requires_grad_()
        if packed:
            w = torch.zeros(B * L, dtype=q.dtype).index_put((pos,), unit.forward_packed(qq, kk.reshape(B * L, 6)[pos], row, pos, mask.shape)).view(B, L)
        else:
            w = unit(qq, kk, mask)
        (w * torch.linspace(-1, 1, w.numel(), dtype=w.dtype).view_as(w)).sum().backward()
        grads = [p.grad.clone() for p in unit.parameters()]
        results[packed] = (w.detach(), qq.grad, kk.grad, grads)
    padded, packed = results[False], results[True]
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-12, atol=1e-12)
    assert (packed[0][~mask] == 0).all()
    torch.testing.assert_close(packed[1], padded[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(packed[2], padded[2], rtol=1e-10, atol=1e-12)
    for a, b in zip(packed[3], padded[3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_packing_is_chosen_by_the_share_of_real_positions_and_the_switch():
    from ctrbench.data.schema import Batch
    from ctrbench.nn.layers import packed_positions

    _, _, mask = _inputs()
    lens = mask.sum(1)
    z = torch.zeros(len(lens), dtype=torch.long)
    batch = Batch(user=z, item=z, cate=z, label=z.float(), hist_item=mask.long(), hist_cate=mask.long(), hist_mask=mask, hist_len=lens)
    pos, row = packed_positions(batch)  # 13 / 35 real < 0.6
    assert pos.tolist() == mask.reshape(-1).nonzero().squeeze(1).tolist() and row.tolist() == (pos // mask.shape[1]).tolist()
    assert packed_positions(batch, enabled=False) is None
    full = torch.ones_like(mask)
    assert packed_positions(Batch(**{**batch.__dict__, "hist_mask": full, "hist_len": full.sum(1)})) is None


@pytest.mark.parametrize("name, overrides", [("lr", {}), ("lr", {"pooling": "sum"}), ("base", {}), ("base", {"pooling": "mean"}), ("wdl", {}), ("pnn", {}),
                                             ("deepfm", {}), ("din", {}), ("din", {"attention_softmax": True})])
def test_models_on_packed_histories_equal_padded(tiny_dataset, monkeypatch, name, overrides):
    """Every model with a packed path: the same logits and gradients whether a batch runs on its real
    positions (PACK_BELOW above any share) or padded (PACK_BELOW 0), in training mode."""
    from test_models import make

    from ctrbench.data.batches import Batcher
    from ctrbench.nn import layers

    _, batch = next(iter(Batcher(tiny_dataset, "train", 64, 20, shuffle=True, bucket=0, seed=4)))
    out = {}
    for below in (0.0, 1.1):
        monkeypatch.setattr(layers, "PACK_BELOW", below)
        assert (layers.packed_positions(batch) is not None) == (below > 1)
        model = make(name, tiny_dataset, **overrides).double().train()
        for m in model.modules():  # what the trainer does for trainer.pack_histories=true
            if hasattr(m, "pack_histories"):
                m.pack_histories = True
        logits = model(batch).logits
        (logits * torch.linspace(-1, 1, len(logits), dtype=logits.dtype)).sum().backward()
        out[below] = (logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(out[1.1][0], out[0.0][0], rtol=1e-10, atol=1e-12)
    assert out[1.1][1].keys() == out[0.0][1].keys()
    for k, g in out[0.0][1].items():
        torch.testing.assert_close(out[1.1][1][k], g, rtol=1e-9, atol=1e-12, msg=k)
