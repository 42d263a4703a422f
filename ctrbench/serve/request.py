"""The serving-shaped request path: one user, a history of L behaviours, C candidate items scored together.

A row-wise batch repeats the user's history once per candidate, so every candidate pays again for
the work that does not depend on it. Here that user-side work runs once per request:

* DIN: the history's embedding lookups (once), the attention unit's per-candidate [D, H] maps
  (once per candidate, not once per candidate and behaviour), then one [L, D] x [D, C*H] product
  for the first layer of every (behaviour, candidate) pair, the rest of the attention MLP, and the
  weighted sum.
* DIEN: the lookups, the interest extractor GRU (Eqs. 2-5, which never sees the candidate), the
  pooled history, the input projection of the evolving GRU (``W h_t + b``, shared by every
  candidate: for AIGRU the attention scales it per candidate, ``W (a_t h_t) + b = a_t (W h_t) + b``)
  and the candidate-free half of the attention (``h_t W`` of Eq. 8, or the key part of the MLP
  attention); then per candidate the attention weights and the evolving recurrence, all C candidates
  as one batch of the recurrence, and the final MLP. With ``evolution=gru_att`` the second GRU also
  runs once (it reads h_t, not the candidate).
* Every other model: the generic path, the request expanded into C rows sharing one history
  (``expand``: no copies) and scored by the model's own ``forward``.

``request_scorer(model)`` returns an ``nn.Module`` with ``encode_user(user, hist_item, hist_cate)``
(a list of tensors: the user state, which a server may cache between requests of one user),
``score_candidates(state, item, cate)`` and ``forward(user, hist_item, hist_cate, item, cate)``, which
is the two in a row. Shapes: ``user`` [1] (0: unknown), ``hist_item``/``hist_cate`` [L] (oldest
first, as a Batch row; L may be 0), ``item``/``cate`` [C]; the result is the logits [C].

In eval mode the logits equal ``model(batch).logits`` for the C rows of the same request, up to
float rounding (the products are shaped differently): ``tests/test_serve_request.py`` checks every
model and DIN / DIEN variant at 1e-5 absolute and relative. The exception is ``act.mode=code``,
whose Dice uses the statistics of the batch it sees by design, so no two batchings agree.
The modules are written for ``torch.jit.script`` (the benchmark scripts them) and hold no copy of
the weights: they reference the model's own layers.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.data.schema import Batch
from ctrbench.models.base import CTRModel

#: DIN's request path scores its candidates in blocks of at most this many (behaviour, candidate)
#: pairs: the attention MLP's [pairs, 80] activations then stay near a core's L2 (measured on the
#: 2-core AMD EPYC these figures come from: 500 candidates x 50 behaviours, 11.3 ms of CPU in one
#: block, 8.4 ms in blocks of 4,096 pairs; docs/serving.md)
REQUEST_POSITIONS = 4096


def request_scorer(model: CTRModel) -> RequestScorer:
    """The request path of ``model``: DIN's and DIEN's own, the generic expanded-batch path otherwise."""
    from ctrbench.models.dien import DIEN
    from ctrbench.models.din import DIN

    if isinstance(model, DIN):
        return DINRequest(model)
    if isinstance(model, DIEN):
        return DIENRequest(model)
    return ExpandedRequest(model)


def request_batch(user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor, item: torch.Tensor, cate: torch.Tensor) -> Batch:
    """The C rows of a request as a Batch (what the row-wise path scores): every row has the same
    history, unpadded (an empty history padded to one masked position, as the Batcher pads it)."""
    C, L = item.shape[0], hist_item.shape[0]
    width = max(L, 1)
    if L == 0:
        hist_item, hist_cate = hist_item.new_zeros(1), hist_cate.new_zeros(1)
    mask = (torch.arange(width) < L).unsqueeze(0).expand(C, width)
    return Batch(
        user=user.reshape(-1)[:1].expand(C), item=item, cate=cate, label=torch.zeros(C),
        hist_item=hist_item.unsqueeze(0).expand(C, width), hist_cate=hist_cate.unsqueeze(0).expand(C, width),
        hist_mask=mask, hist_len=torch.full((C,), L, dtype=torch.int64),
    )


class RequestScorer(nn.Module):
    """One request's logits: ``forward(user, hist_item, hist_cate, item, cate) -> [C]``."""

    def encode_user(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def score_candidates(self, state: list[torch.Tensor], item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor, item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        return self.score_candidates(self.encode_user(user, hist_item, hist_cate), item, cate)


class _Embed(nn.Module):
    """``ItemEmbeddings`` of a model, read the way a request needs it: items as [e_item; e_cate]
    (or [e_cate] without item ids), and the user's row (an empty [1, 0] without a user table)."""

    def __init__(self, emb: nn.Module) -> None:
        super().__init__()
        self.item = emb.item
        self.cate = emb.cate
        self.user = emb.user

    def items(self, item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        if self.item is not None:
            return torch.cat([self.item(item), self.cate(cate)], dim=-1)
        return self.cate(cate)

    def profile(self, user: torch.Tensor) -> torch.Tensor:
        if self.user is not None:
            return self.user(user.reshape(-1)[:1])  # [1, E]
        return self.cate.weight.new_zeros(1, 0)


class _MLP(nn.Module):
    """The model's ``MLP`` (its Linear and activation modules) run without a mask, as eval mode
    runs it on rows that are all real; written so that it scripts (one module per layer)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(lin, act) for lin, act in zip(mlp.linears, mlp.acts))
        self.out = mlp.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(x)


class _Layer(nn.Module):
    def __init__(self, linear: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.linear, self.act = linear, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class _Attention(nn.Module):
    """A ``LocalActivationUnit`` (DIN's, or DIEN's MLP attention) for one history [L, Dk] and C
    queries [C, Dk]: scores [L, C] (time-major, so that DIEN's recurrence reads a row per step).

    ``qk_diff_prod``: the first layer W [q, k, q-k, q*k] + b = ((W_q + W_d) q + b) + M_q k with
    M_q = (W_k - W_d) + W_p diag(q) (nn/attention.py): the [D, H] map of every candidate is built
    once per request (D x C x H, whatever the history's length), then one [L, D] x [D, C*H] product
    scores every (behaviour, candidate) pair.
    ``outer``: the unit's own first layer over the history expanded to [C, L, D]."""

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        self.outer = unit if unit.inputs != "qk_diff_prod" else None
        self.first = unit.first
        self.dim = int(unit.dim)
        self.softmax = bool(unit.softmax)
        self.first_act = unit.first_act
        self.rest = _MLP(unit.rest)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        C, L, D = q.shape[0], k.shape[0], self.dim
        if self.outer is not None:
            first = self.outer.first_layer(q, k.unsqueeze(0).expand(C, L, D)).transpose(0, 1)
        else:
            W, b = self.first.weight, self.first.bias
            H = W.shape[0]
            # M_c = (W_k - W_d)^T + diag(q_c) W_p^T for every candidate, laid out [D, C, H] so that
            # one [L, D] x [D, C*H] product gives every (behaviour, candidate) pair; the
            # per-candidate part (W_q + W_d) q_c + b is the map's last row, which a column of ones
            # beside k picks up (no [L, C*H] bias pass)
            M = torch.empty(D + 1, C, H, dtype=q.dtype, device=q.device)
            # the two [D, H] maps made contiguous first (36 x 80 copies): the broadcast product over
            # [D, C, H] then runs on contiguous rows of H, ~3x faster than on the transposed views
            Wkd = (W[:, D : 2 * D] - W[:, 2 * D : 3 * D]).t().contiguous().unsqueeze(1)  # [D, 1, H]
            Wp = W[:, 3 * D :].t().contiguous().unsqueeze(1)  # [D, 1, H]
            torch.addcmul(Wkd, q.t().unsqueeze(2), Wp, out=M[:D])  # [D, C, H]
            torch.addmm(b, q, (W[:, :D] + W[:, 2 * D : 3 * D]).t(), out=M[D])  # [C, H]
            k1 = torch.cat([k, k.new_ones(L, 1)], dim=1)  # [L, D + 1]
            first = torch.mm(k1, M.view(D + 1, C * H)).view(L, C, H)
        s = self.rest(self.first_act(first)).squeeze(-1)  # [L, C]
        if self.softmax:
            s = torch.softmax(s, dim=0)
        return s


class DINRequest(RequestScorer):
    """DIN (models/din.py) for one request; state: [e_h [L, D], the user's row [1, E]]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.emb = _Embed(model.emb)
        self.attention = _Attention(model.attention)
        self.mlp = _MLP(model.mlp)
        self.max_positions = REQUEST_POSITIONS

    def encode_user(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor) -> list[torch.Tensor]:
        e_h = self.emb.items(hist_item, hist_cate)  # [L, D]
        return [e_h, self.emb.profile(user)]

    def score_candidates(self, state: list[torch.Tensor], item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        e_h, profile = state[0], state[1]
        e_t = self.emb.items(item, cate)  # [C, D]
        C, L = e_t.shape[0], e_h.shape[0]
        # candidates in blocks of at most max_positions (behaviour, candidate) pairs, so that the
        # attention MLP's [pairs, H] activations stay in the core's caches
        block = max(1, self.max_positions // max(L, 1))
        block = -(-C // max(1, -(-C // block)))  # equal blocks: 100 candidates in 2 blocks of 50, not 81 + 19
        if C <= block:
            v_u = self.attention.scores(e_t, e_h).t() @ e_h  # [C, D]; the weights [L, C] are Eq. (3)
        else:
            v_u = torch.cat([self.attention.scores(e_t[i : i + block], e_h).t() @ e_h for i in range(0, C, block)])
        x = torch.cat([e_t, v_u, profile.expand(C, profile.shape[1])], dim=-1)
        return self.mlp(x).squeeze(-1)


class DIENRequest(RequestScorer):
    """DIEN (models/dien.py) for one request. State: [e_h [L, D], h [L, H] (the extractor's states,
    or the second GRU's for gru_att), Σe_h [1, D], the evolving GRU's input projection [L, 3H]
    (without its bias for AIGRU; empty for gru_att), h_t W of Eq. (8) [L, D] (empty with the MLP
    attention), the user's row [1, E]]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.emb = _Embed(model.emb)
        self.extractor = model.extractor
        self.hidden = int(model.extractor.hidden_size)
        self.evolution = str(model.evolution)
        self.code_formula = model.augru_formula == "code"
        self.code_inputs = model.mlp_inputs == "code"
        bilinear = model.attention_kind == "bilinear"
        # the bilinear W of Eq. (8), or (MLP attention) the query map and the unit: the absent one is None
        self.W = model.attention.W if bilinear else None
        self.att = None if bilinear else _Attention(model.attention)
        self.query = None if bilinear else model.query
        gru_att = self.evolution == "gru_att"
        self.gru2 = model.evolver if gru_att else None
        self.x2h = None if gru_att else model.evolver.x2h
        self.h2h = None if gru_att else model.evolver.h2h
        self.mlp = _MLP(model.mlp)

    def encode_user(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor) -> list[torch.Tensor]:
        e_h = self.emb.items(hist_item, hist_cate)  # [L, D]
        L = e_h.shape[0]
        h = e_h.new_zeros(0, self.hidden)
        if L > 0:
            h = self.extractor(e_h.unsqueeze(0))[0][0]  # [L, H], Eqs. (2)-(5): no candidate in them
        if self.gru2 is not None:  # noqa: SIM102 - nested: TorchScript drops a branch on a None attribute only
            if L > 0:
                h = self.gru2(h.unsqueeze(0))[0][0]
        proj = h.new_zeros(0)
        if self.x2h is not None:
            if self.evolution == "aigru":
                proj = h @ self.x2h.weight.t()  # W h_t; the bias is added after the attention scales it
            else:
                proj = torch.addmm(self.x2h.bias, h, self.x2h.weight.t())  # W h_t + b
        att = h.new_zeros(0)
        if self.W is not None:
            att = h @ self.W  # [L, D]: h_t W of Eq. (8)
        pooled = e_h.sum(dim=0, keepdim=True)  # [1, D]
        return [e_h, h, pooled, proj, att, self.emb.profile(user)]

    def score_candidates(self, state: list[torch.Tensor], item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        h, pooled, proj, att, profile = state[1], state[2], state[3], state[4], state[5]
        e_a = self.emb.items(item, cate)  # [C, D]
        C = e_a.shape[0]
        a = e_a.new_zeros(0)
        if self.W is not None:
            a = torch.softmax(att @ e_a.t(), dim=0)  # [L, C], Eq. (8) over the history
        if self.att is not None:  # noqa: SIM102 - nested: TorchScript drops a branch on a None attribute only
            if self.query is not None:
                a = self.att.scores(self.query(e_a), h)
        interest = a.t() @ h  # gru_att: attention pooling of the second GRU's states
        if self.x2h is not None:
            interest = self.evolve(proj, a, C)  # h'_T
        pooled_c = pooled.expand(C, pooled.shape[1])
        parts = [e_a, pooled_c]
        if self.code_inputs:
            parts.append(e_a * pooled_c)
        parts.append(interest)
        parts.append(profile.expand(C, profile.shape[1]))
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)

    def evolve(self, proj: torch.Tensor, a: torch.Tensor, C: int) -> torch.Tensor:
        """h'_T of the attentional GRU (nn/sequence.py EvolvingGRU, gate u' = g0 + g1 u) for all
        C candidates at once: [C, H]. Every step's input projection is the user's (broadcast over
        the candidates), scaled by the candidate's attention for AIGRU.

        Per step: one product whose bias carries the input's update and reset parts,
        [x_u + U_u h, x_r + U_r h, 2 U_h h]; the gates in place; and the candidate state as
        tanh(z) = 2 sigmoid(2z) - 1 (torch's CPU tanh is ~6x slower than its sigmoid; the two agree
        to ~1e-7)."""
        H = self.hidden
        L = proj.shape[0]
        h = proj.new_zeros(C, H)
        x2h, h2h = self.x2h, self.h2h
        assert x2h is not None and h2h is not None
        Ut = torch.cat([h2h.weight[: 2 * H], 2.0 * h2h.weight[2 * H :]], dim=0).t()  # [H, 3H]
        aigru = self.evolution == "aigru"
        if aigru:
            W2 = torch.cat([proj[:, : 2 * H], 2.0 * proj[:, 2 * H :]], dim=1)  # W h_t, candidate part doubled
            b2 = torch.cat([x2h.bias[: 2 * H], 2.0 * x2h.bias[2 * H :]]).unsqueeze(0)
            ur_in, cand_in = W2, W2
        else:
            ur_in = torch.cat([proj[:, : 2 * H], proj.new_zeros(L, H)], dim=1)  # [x_u, x_r, 0]
            cand_in = 2.0 * proj[:, 2 * H :]
            b2 = ur_in[:0]
        for t in range(L):
            at = a[t].unsqueeze(1)  # [C, 1]
            if aigru:
                x = torch.addmm(b2, at, ur_in[t].unsqueeze(0))  # a_t (W h_t) + b (candidate part doubled): [C, 3H]
                hp = h @ Ut
                ur = torch.sigmoid(x[:, : 2 * H] + hp[:, : 2 * H])
                s = torch.addcmul(x[:, 2 * H :], ur[:, H:], hp[:, 2 * H :]).sigmoid_()
            else:
                hp = torch.addmm(ur_in[t].unsqueeze(0), h, Ut)
                ur = hp[:, : 2 * H].sigmoid_()  # u_t, r_t
                s = torch.addcmul(cand_in[t].unsqueeze(0), ur[:, H:], hp[:, 2 * H :]).sigmoid_()
            u = ur[:, :H]
            d = s.mul_(2.0).sub_(1.0).sub_(h)  # c_t - h_{t-1}, c_t = tanh(z) = 2 sigmoid(2z) - 1
            if self.evolution == "aigru":
                h = torch.addcmul(h, u, d)
            elif self.evolution == "agru":
                h = torch.addcmul(h, at, d)
            elif self.code_formula:
                h = torch.addcmul(h, torch.addcmul(at, 1.0 - at, u), d)  # u' = a + (1 - a) u
            else:
                h = torch.addcmul(h, u.mul_(at), d)  # u' = a u (AUGRU, Eq. 12)
        return h


class ExpandedRequest(RequestScorer):
    """Any model: the request as C rows sharing one history (``expand``, no copies), scored by the
    model's own forward. State: [user [1], hist_item [L], hist_cate [L]]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode_user(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cate: torch.Tensor) -> list[torch.Tensor]:
        return [user.reshape(-1)[:1], hist_item, hist_cate]

    def score_candidates(self, state: list[torch.Tensor], item: torch.Tensor, cate: torch.Tensor) -> torch.Tensor:
        return self.model(request_batch(state[0], state[1], state[2], item, cate)).logits


@torch.inference_mode()
def score_request(
    model: CTRModel, user: torch.Tensor | int, hist_item, hist_cate, item, cate, scorer: RequestScorer | None = None
) -> torch.Tensor:
    """The logits [C] of one request (in eval mode, without autograd): a convenience over
    ``request_scorer(model)``; pass ``scorer`` to reuse one."""
    as_long = lambda x: torch.as_tensor(x, dtype=torch.int64).reshape(-1)
    was_training = model.training
    model.eval()
    try:
        scorer = scorer or request_scorer(model)
        return scorer(as_long(user), as_long(hist_item), as_long(hist_cate), as_long(item), as_long(cate))
    finally:
        model.train(was_training)
