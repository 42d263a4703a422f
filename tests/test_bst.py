"""BST (ctrbench/models/bst.py), tested like the other models: it trains and every parameter gets a
gradient, padding never changes its output, evaluation scores do not depend on the rest of the
batch, an empty history is defined; and one attention step checked by hand against Eqs. (1)-(5)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_train
from test_models import make, pad_more

from ctrbench.data.batches import Batcher
from ctrbench.data.schema import Batch
from ctrbench.errors import ConfigError
from ctrbench.models.bst import BST, TransformerBlock

VARIANTS = {
    "bst": ({}, "prelu"),
    "bst_two_blocks": ({"blocks": 2, "head_dim": 8}, "prelu"),
    "bst_user_narrow_heads": ({"use_user": True, "heads": 2, "head_dim": 5, "ffn_hidden": 12, "position_dim": 4}, "prelu"),
    "bst_dice": ({}, "dice"),
    "bst_short_table": ({"n_positions": 3}, "prelu"),
}


@pytest.fixture(scope="module")
def models(tiny_dataset):
    return {k: make("bst", tiny_dataset, act, **kw) for k, (kw, act) in VARIANTS.items()}


def test_model_bst_composes_and_builds_from_its_config(tiny_dataset):
    from ctrbench.config_checks import check_train

    cfg = compose_train("model=bst")
    check_train(cfg)
    assert cfg.model.name == "bst" and cfg.model.blocks == 1 and cfg.model.heads == 8
    m = make("bst", tiny_dataset)
    assert isinstance(m, BST) and m.d_model == 2 * 18 + 18
    assert m.variant() == {"position": "index", "blocks": 1, "heads": 8, "head_dim": 54, "ffn_hidden": 216, "dropout": 0.2, "d_model": 54}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_trains_and_every_parameter_gets_a_gradient(name, models, tiny_dataset):
    model = models[name]
    torch.manual_seed(0)
    _, batch = next(iter(Batcher(tiny_dataset, "train", 128, 20, shuffle=True, seed=0)))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(model.train()(batch).logits, batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9
    assert not model.has_unused_parameters
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(VARIANTS))
def test_padding_never_changes_the_output(name, models, tiny_dataset):
    model = models[name]
    batch = Batcher(tiny_dataset, "test", 64, 20).gather(torch.arange(64))
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(batch).logits, model(pad_more(batch, 7)).logits, rtol=1e-5, atol=1e-5)
        # in training too, with the same dropout draws: with one block only the target's [B, 1, d]
        # outputs are dropped, whose shape padding does not change
        if len(model.blocks) == 1:
            model.train()
            torch.manual_seed(3)
            a = model(batch).logits
            torch.manual_seed(3)
            b = model(pad_more(batch, 7)).logits
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_padded_positions_get_attention_weight_zero(tiny_dataset):
    """Whatever the padded positions hold (here: real ids under a False mask), the output is the same."""
    model = make("bst", tiny_dataset, blocks=2).eval()
    batch = Batcher(tiny_dataset, "test", 64, 20).gather(torch.arange(32))
    junk = pad_more(batch, 5)
    fill = torch.randint(1, tiny_dataset.vocab.n_items, junk.hist_item.shape)
    junk.hist_item = torch.where(junk.hist_mask, junk.hist_item, fill)
    junk.hist_cate = torch.where(junk.hist_mask, junk.hist_cate, torch.ones_like(fill))
    with torch.no_grad():
        torch.testing.assert_close(model(batch).logits, model(junk).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_eval_scores_do_not_depend_on_the_rest_of_the_batch(name, models, tiny_dataset):
    # in float64, so that a real dependence (~1e-3) stands far above the rounding of batched matrix
    # products, which Dice's normalisation can amplify past float32's tolerances
    model = copy.deepcopy(models[name]).double().eval()
    b = Batcher(tiny_dataset, "test", 64, 20)
    idx = torch.arange(40)
    with torch.no_grad():
        full = model(b.gather(idx)).logits
        alone = torch.stack([model(b.gather(idx[i : i + 1])).logits[0] for i in range(len(idx))])
        perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))
        shuffled = model(b.gather(idx[perm])).logits
    torch.testing.assert_close(full, alone, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(full[perm], shuffled, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("L", [0, 3])
def test_empty_history_is_defined(models, tiny_dataset, L):
    """The target is always in the sequence, so no attention row is fully masked."""
    batch = Batcher(tiny_dataset, "test", 8, 20).gather(torch.arange(4))
    z = lambda: torch.zeros(4, L, dtype=torch.long)
    empty = Batch(batch.user, batch.item, batch.cate, batch.label, z(), z(),
                  torch.zeros(4, L, dtype=torch.bool), torch.zeros(4, dtype=torch.long))
    for name, model in models.items():
        out = model.train()(empty)
        out.logits.sum().backward()
        assert torch.isfinite(out.logits).all(), name
        assert torch.isfinite(model.eval()(empty).logits).all(), name
        model.zero_grad()


def test_positions_count_back_from_the_target(tiny_dataset):
    model = make("bst", tiny_dataset, n_positions=3)
    z = torch.zeros(3, dtype=torch.long)
    mask = torch.tensor([[True] * 4, [True, False, False, False], [False] * 4])
    batch = Batch(z, z, z, z.float(), mask.long(), mask.long(), mask, mask.sum(1))
    # 4 behaviours: 4, 3, 2, 1 back (clamped to the table's last row, 2), then the target's 0
    assert model.position_ids(batch).tolist() == [[2, 2, 2, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_behaviour_order_matters(tiny_dataset):
    """Unlike DIN's pooling, the positional embedding makes the output depend on the order."""
    model = make("bst", tiny_dataset).eval()
    batch = Batcher(tiny_dataset, "test", 64, 20).gather(torch.arange(64))
    rev = Batch(**batch.__dict__)
    rows = torch.arange(len(batch)).unsqueeze(1)
    cols = (batch.hist_len.unsqueeze(1) - 1 - torch.arange(batch.hist_mask.shape[1])).clamp(min=0)
    rev.hist_item = torch.where(batch.hist_mask, batch.hist_item[rows, cols], 0)
    rev.hist_cate = torch.where(batch.hist_mask, batch.hist_cate[rows, cols], 0)
    with torch.no_grad():
        # positions as distinct, and attention as peaked, as trained ones may be (at initialisation the
        # attention is near uniform, and a uniform average does not see the order)
        model.positions.weight.normal_(std=1.0)
        model.blocks[0].w_q.weight.mul_(10)
        assert (model(batch).logits - model(rev).logits).abs().max() > 1e-3
        model.positions.weight.copy_(model.positions.weight[:1].clone().expand_as(model.positions.weight))  # one row for every position: order no longer matters
        torch.testing.assert_close(model(batch).logits, model(rev).logits, rtol=1e-5, atol=1e-5)


def block_by_hand(block: TransformerBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eqs. (1)-(5) written out for one sample x [N, d] with key mask [N], head by head, query by
    query, from the block's weights; returns F [N, d]."""
    h, dh = block.heads, block.head_dim
    Wq, Wk, Wv = (w.weight.view(h, dh, -1) for w in (block.w_q, block.w_k, block.w_v))
    N = x.shape[0]
    heads = []
    for i in range(h):
        q, k, v = x @ Wq[i].T, x @ Wk[i].T, x @ Wv[i].T  # E W_i^Q, E W_i^K, E W_i^V (Eq. 3)
        out = torch.zeros(N, dh)
        for a in range(N):
            scores = [float(q[a] @ k[b]) / math.sqrt(dh) for b in range(N) if mask[b]]  # QK^T / sqrt(d)
            keys = [b for b in range(N) if mask[b]]
            m = max(scores)
            w = [math.exp(s - m) for s in scores]
            out[a] = sum(wj / sum(w) * v[b] for wj, b in zip(w, keys))  # softmax(.) V (Eq. 1)
        heads.append(out)
    S = torch.cat(heads, dim=1) @ block.w_h.weight.T  # Concat(head_1..head_h) W^H (Eq. 2)

    def layer_norm(y, ln):
        mu, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
        return (y - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias

    S1 = layer_norm(x + S, block.norm1)  # Eq. (4), dropout off
    hidden = S1 @ block.ffn1.weight.T + block.ffn1.bias
    hidden = torch.where(hidden > 0, hidden, block.leaky_slope * hidden)  # LeakyReLU
    return layer_norm(S1 + hidden @ block.ffn2.weight.T + block.ffn2.bias, block.norm2)  # Eq. (5)


def test_an_attention_step_checked_by_hand():
    torch.manual_seed(0)
    B, N, d = 3, 5, 6
    block = TransformerBlock(d, heads=2, head_dim=4, ffn_hidden=7, dropout=0.2, leaky_slope=0.1).eval()
    with torch.no_grad():  # non-trivial layer norms
        for ln in (block.norm1, block.norm2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(B, N, d)
    # the target (last slot) is always real; row 1 has two padded positions, row 2 only the target
    mask = torch.tensor([[True] * 5, [True, True, False, False, True], [False, False, False, False, True]])
    with torch.no_grad():
        full = block(x, mask)
        target = block(x, mask, target_only=True)
        for b in range(B):
            expect = block_by_hand(block, x[b], mask[b])
            torch.testing.assert_close(full[b][mask[b]], expect[mask[b]], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(target[b, 0], expect[-1], rtol=1e-4, atol=1e-5)


def test_target_only_block_equals_the_full_block_in_values_and_gradients():
    torch.manual_seed(1)
    block = TransformerBlock(10, heads=3, head_dim=10, ffn_hidden=40, dropout=0.0, leaky_slope=0.01)
    x = torch.randn(4, 6, 10, requires_grad=True)
    mask = torch.rand(4, 6) > 0.3
    mask[:, -1] = True
    full = block(x, mask)[:, -1]
    (gx_full, *g_full) = torch.autograd.grad(full.square().sum(), [x, *block.parameters()])
    target = block(x, mask, target_only=True)[:, 0]
    (gx_t, *g_t) = torch.autograd.grad(target.square().sum(), [x, *block.parameters()])
    torch.testing.assert_close(target, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_t, gx_full, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_t, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_model_reads_the_full_blocks_target_row(tiny_dataset):
    model = make("bst", tiny_dataset, blocks=2).eval()
    batch = Batcher(tiny_dataset, "test", 64, 20).gather(torch.arange(64))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(batch), model.encode(batch, target_only=False)[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("position", "time_bucket", "behaviour times"), ("heads", 0, "model.heads"), ("blocks", 0, "model.blocks"),
    ("dropout", 1.0, "model.dropout"), ("head_dim", 0, "model.head_dim"),
])
def test_rejects_invalid_switches(tiny_dataset, key, value, match):
    with pytest.raises(ConfigError, match=f"model 'bst': .*{match}"):
        make("bst", tiny_dataset, **{key: value})


def test_trains_through_the_loop_and_records_its_switches(tmp_path, tiny_dataset):
    from ctrbench.train.loop import Trainer

    cfg = compose_train("+debug=fast", "device=cpu", f"paths.data_dir={tmp_path / 'data'}", "model=bst")
    (tmp_path / "run").mkdir()
    t = Trainer(cfg, tmp_path / "run")
    t.setup(tiny_dataset)
    m = t.fit()
    assert m["status"] == "completed" and m["model"] == "bst" and 0 <= m["test"]["auc"] <= 1
    assert m["variant"]["position"] == "index" and m["variant"]["blocks"] == 1


def test_din_table3_extra_row_composes():
    """conf/row/din_table3/bst.yaml: BST beside the DIN paper's Table 3 rows, under its training setup."""
    from hydra import compose, initialize_config_dir

    from ctrbench.cli import conf_dir
    from ctrbench.config_checks import check_train

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        exp = compose(config_name="train", overrides=["+experiment=din_vs_bst"], return_hydra_config=True)
        assert exp.hydra.sweeper.params["+row"] == "din_table3/din,din_table3/bst"
        assert exp.hydra.sweeper.params.seed == "1,2,3,4,5"
        for row in ("din", "bst"):
            cfg = compose(config_name="train", overrides=["+experiment=din_vs_bst", f"+row=din_table3/{row}"])
            check_train(cfg)
            assert (cfg.experiment_name, cfg.row_name, cfg.model.name) == ("din_table3", row, row)
            assert (cfg.optim.name, cfg.optim.lr, cfg.trainer.batch_size, cfg.trainer.bucket) == ("sgd", 1.0, 32, 0)
