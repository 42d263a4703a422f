"""Every model: trains a few steps, padding never changes its output, eval scores are batch-invariant,
and DIN's attention math matches the concatenated form."""

import pytest
import torch
from omegaconf import OmegaConf

from ctrbench.data.batches import Batcher
from ctrbench.data.schema import Batch
from ctrbench.nn.activations import PReLU
from ctrbench.nn.attention import LocalActivationUnit
from ctrbench.train.build import build_model

from conftest import CONF

MODELS = ["lr", "base", "wdl", "pnn", "deepfm", "din", "dien"]
VARIANTS = {
    "din_outer_softmax": ("din", {"attention_inputs": "outer", "attention_softmax": True}, "prelu"),
    "base_mean": ("base", {"pooling": "mean"}, "prelu"),
    "din_user": ("din", {"use_user": True}, "prelu"),
    "din_dice": ("din", {}, "dice"),
    "base_dice": ("base", {}, "dice"),
    "din_dice_not_in_attention": ("din", {}, "dice-no-att"),
    "pnn_outer": ("pnn", {"product": "outer"}, "prelu"),
    "pnn_both": ("pnn", {"product": "both"}, "prelu"),
    "dien_agru": ("dien", {"evolution": "agru"}, "prelu"),
    "dien_aigru": ("dien", {"evolution": "aigru"}, "prelu"),
    "dien_gru_att": ("dien", {"evolution": "gru_att"}, "prelu"),
    "dien_code": ("dien", {"attention": "mlp", "augru_formula": "code", "aux_net": "mlp", "aux_reduction": "mean", "mlp_inputs": "code"}, "prelu"),
    "dien_dice": ("dien", {}, "dice"),
}


def make(name, tiny_dataset, act="prelu", **overrides):
    cfg = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    for k, v in overrides.items():
        cfg[k] = v
    act_cfg = OmegaConf.load(CONF / "act" / f"{act.split('-')[0]}.yaml")
    if act.endswith("no-att"):
        act_cfg.in_attention = False
    torch.manual_seed(0)
    model = build_model(cfg, act_cfg, tiny_dataset.vocab)
    if act.startswith("dice"):  # give the moving averages some data, so eval mode is non-trivial
        b = Batcher(tiny_dataset, "train", 128, 20, shuffle=True, seed=1)
        with torch.no_grad():
            for _, batch in b:
                model.train()(batch)
    return model


def all_models(tiny_dataset):
    out = {m: make(m, tiny_dataset) for m in MODELS}
    out.update({k: make(m, tiny_dataset, act, **kw) for k, (m, kw, act) in VARIANTS.items()})
    return out


def test_in_attention_switch(tiny_dataset):
    from ctrbench.nn.activations import Dice

    on = make("din", tiny_dataset, "dice")
    off = make("din", tiny_dataset, "dice-no-att")
    assert isinstance(on.attention.first_act, Dice) and isinstance(on.mlp.acts[0], Dice)
    assert isinstance(off.attention.first_act, PReLU) and isinstance(off.mlp.acts[0], Dice)


def pad_more(batch: Batch, extra: int) -> Batch:
    """The same batch with `extra` more padded history positions (ids 0, mask False)."""
    B = len(batch)
    z = torch.zeros(B, extra, dtype=torch.long)
    return Batch(
        batch.user, batch.item, batch.cate, batch.label,
        torch.cat([batch.hist_item, z], 1), torch.cat([batch.hist_cate, z], 1),
        torch.cat([batch.hist_mask, torch.zeros(B, extra, dtype=torch.bool)], 1), batch.hist_len,
    )


@pytest.mark.parametrize("name", MODELS + list(VARIANTS))
def test_trains_and_loss_falls(name, tiny_dataset):
    model = all_models(tiny_dataset)[name]
    b = Batcher(tiny_dataset, "train", 128, 20, shuffle=True, seed=0, negative_history=getattr(model, "needs_negative_history", False))
    _, batch = next(iter(b))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        out = model(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.label)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9
    # every parameter received a gradient, as the model says (DDP's find_unused_parameters follows it)
    assert not model.has_unused_parameters
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("aux_net, unused", [("mlp", True), ("inner", False)])
def test_dien_without_auxiliary_loss_declares_its_idle_aux_net(tiny_dataset, aux_net, unused):
    model = make("dien", tiny_dataset, aux_alpha=0.0, aux_net=aux_net)
    assert model.has_unused_parameters is unused
    b = Batcher(tiny_dataset, "train", 128, 20, shuffle=True, seed=0, negative_history=True)
    _, batch = next(iter(b))
    out = model(batch)
    assert out.aux_loss is None
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.label).backward()
    idle = sorted(n for n, p in model.named_parameters() if p.grad is None)
    assert bool(idle) is unused and all(n.startswith("aux_net.") for n in idle)


@pytest.mark.parametrize("name", MODELS + list(VARIANTS))
def test_padding_never_changes_the_output(name, tiny_dataset):
    model = all_models(tiny_dataset)[name]
    batch = Batcher(tiny_dataset, "test", 64, 20).gather(torch.arange(64))
    for mode in ("eval", "train"):  # in training too: Dice's batch statistics skip padding
        model.train(mode == "train")
        with torch.no_grad():
            a = model(batch).logits
            b = model(pad_more(batch, 7)).logits
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS + list(VARIANTS))
def test_eval_scores_do_not_depend_on_the_rest_of_the_batch(name, tiny_dataset):
    model = all_models(tiny_dataset)[name].eval()
    b = Batcher(tiny_dataset, "test", 64, 20)
    idx = torch.arange(40)
    with torch.no_grad():
        full = model(b.gather(idx)).logits
        alone = torch.stack([model(b.gather(idx[i : i + 1])).logits[0] for i in range(len(idx))])
        shuffled_perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))
        shuffled = model(b.gather(idx[shuffled_perm])).logits
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full[shuffled_perm], shuffled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("L", [0, 3])
def test_empty_history_is_defined(tiny_dataset, L):
    """Rows without history (MovieLens' first ratings), and batches where no row has one (L = 0),
    give finite scores and gradients in train and eval mode."""
    batch = Batcher(tiny_dataset, "test", 8, 20).gather(torch.arange(4))
    z = lambda: torch.zeros(4, L, dtype=torch.long)  # noqa: E731
    empty = Batch(batch.user, batch.item, batch.cate, batch.label, z(), z(),
                  torch.zeros(4, L, dtype=torch.bool), torch.zeros(4, dtype=torch.long), z(), z())
    for name, model in all_models(tiny_dataset).items():
        out = model.train()(empty)
        loss = out.logits.sum() + (out.aux_loss if getattr(out, "aux_loss", None) is not None else 0.0)
        loss.backward()
        assert torch.isfinite(out.logits).all(), name
        assert torch.isfinite(model.eval()(empty).logits).all(), name


@pytest.mark.parametrize("inputs", ["qk_diff_prod", "outer"])
def test_attention_first_layer_equals_the_concatenated_form(inputs):
    torch.manual_seed(0)
    D, B, L = 6, 3, 5
    unit = LocalActivationUnit(D, [7, 4], lambda n: PReLU(n), inputs=inputs)
    q, k = torch.randn(B, D), torch.randn(B, L, D)
    qe = q.unsqueeze(1).expand(B, L, D)
    if inputs == "qk_diff_prod":
        x = torch.cat([qe, k, qe - k, qe * k], -1)  # [q, k, q-k, q*k]
    else:
        x = torch.cat([qe, k, torch.einsum("bld,ble->blde", qe, k).reshape(B, L, D * D)], -1)  # out product
    torch.testing.assert_close(unit.first_layer(q, k), unit.first(x), rtol=1e-5, atol=1e-5)


def test_attention_weights_masked_and_softmax_switch():
    torch.manual_seed(0)
    unit = LocalActivationUnit(4, [5], lambda n: PReLU(n), softmax=True)
    q, k = torch.randn(2, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    w = unit(q, k, mask)
    assert w[0, 2] == 0 and torch.allclose(w[0].sum(), torch.tensor(1.0)) and (w[1] == 0).all()
    unit.softmax = False
    w = unit(q, k, mask)
    assert w[0, 2] == 0 and (w[1] == 0).all()


def test_prelu_is_eq8():
    act = PReLU(3, init=0.25)
    s = torch.tensor([[-2.0, 0.0, 3.0]])
    assert act(s).tolist() == [[-0.5, 0.0, 3.0]]


@pytest.mark.parametrize("key,value", [("evolution", "lstm"), ("attention", "dot"), ("aux_net", "big"),
                                       ("aux_alpha", -1.0), ("mlp_inputs", "both")])
def test_dien_rejects_unknown_switches(tiny_dataset, key, value):
    from ctrbench.errors import ConfigError

    with pytest.raises(ConfigError, match=f"model 'dien': model.{key}"):
        make("dien", tiny_dataset, **{key: value})


def test_dien_training_lookup_shared_by_target_history_and_negatives_is_exact(tiny_dataset):
    """DIEN's training forward looks the target, the history and the negative behaviours up in one
    call per table (one dense table gradient per step instead of three): the same values as three
    separate lookups, and the same gradients up to float rounding (float64 here)."""
    model = make("dien", tiny_dataset).double().train()
    _, batch = next(iter(Batcher(tiny_dataset, "train", 64, 20, shuffle=True, seed=0, negative_history=True)))

    def run():
        model.zero_grad(set_to_none=True)
        out = model(batch)
        (torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.label.double()) + out.aux_loss).backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    shared, shared_grads = run()
    model.emb.embed_together = lambda *pairs: [model.emb.embed(i, c) for i, c in pairs]  # three lookups
    apart, apart_grads = run()
    assert torch.equal(shared.logits, apart.logits) and torch.equal(shared.aux_loss, apart.aux_loss)
    for name, g in shared_grads.items():
        torch.testing.assert_close(g, apart_grads[name], rtol=1e-12, atol=1e-14, msg=name)
