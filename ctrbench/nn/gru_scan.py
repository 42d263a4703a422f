"""The attentional GRU recurrence of DIEN's interest-evolving layer with a hand-written backward.

Autograd over a per-step Python loop records ~20 small nodes per step (slices, gates, masks) and
runs each step's weight gradient as its own small matrix product. This Function runs the same
forward with few fused ops per step, keeps what the backward needs, and in the backward

* walks the steps in reverse with about a dozen small ops each and no autograd bookkeeping;
* computes the recurrent weight's gradient once, as one [3H, T*B] x [T*B, H] product, instead of T.

The recurrence (DIEN Eqs. 2-5 with the update gate generalised as u'_t = g0_t + g1_t * u_t, which
covers AUGRU, AGRU, AIGRU and a masked plain GRU; see ``EvolvingGRU.gate_factors``):

    p_t  = xs_t + [U h_{t-1}]_{u,r}                     xs_t: the input projection W i_t + b
    u_t, r_t = sigmoid(p_t)
    c_t  = tanh(xs_t^h + r_t * (U^h h_{t-1}))
    u'_t = g0_t + g1_t * u_t                            (g0 or g1 may be absent: zero)
    h_t  = h_{t-1} + u'_t * (c_t - h_{t-1})             = (1 - u'_t) h_{t-1} + u'_t c_t

Shapes: xs [T, B, 3H] (time-major), U [3H, H] (rows: update, reset, candidate), g0/g1 [T, B, 1].
Returns the final state h_T [B, H] (h_0 = 0). ``tests/test_sequence_and_interactions.py`` checks
values and gradients against autograd over the plain loop (``gradcheck`` in float64).
"""

from __future__ import annotations

import torch

from ctrbench.nn import native


def _gate(g0: torch.Tensor | None, g1: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
    if g1 is None:
        return g0.expand_as(u)
    if g0 is None:
        return g1 * u
    return torch.addcmul(g0, g1, u)


class AttentionalGRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs: torch.Tensor, U: torch.Tensor, g0: torch.Tensor | None, g1: torch.Tensor | None) -> torch.Tensor:
        T, B, H3 = xs.shape
        H = H3 // 3
        # Every per-step result is written in place into these buffers (no extra copies); the
        # backward reads them back. h_all[t] is h_{t-1}; hp = U h_{t-1}; diff = c_t - h_{t-1}.
        h_all = xs.new_empty(T + 1, B, H)
        h_all[0] = 0.0
        hp_all, ur_all = xs.new_empty(T, B, 3 * H), xs.new_empty(T, B, 2 * H)
        c_all, diff_all = xs.new_empty(T, B, H), xs.new_empty(T, B, H)
        Ut = U.t()
        g0s = g0.unbind(0) if g0 is not None else [None] * T
        g1s = g1.unbind(0) if g1 is not None else [None] * T
        for t, (x, h, hp, ur, c, diff, h_next) in enumerate(
            zip(xs.unbind(0), h_all[:-1].unbind(0), hp_all.unbind(0), ur_all.unbind(0), c_all.unbind(0), diff_all.unbind(0), h_all[1:].unbind(0))
        ):
            torch.mm(h, Ut, out=hp)
            torch.sigmoid(x[:, : 2 * H] + hp[:, : 2 * H], out=ur)  # u_t, r_t
            torch.tanh(torch.addcmul(x[:, 2 * H :], ur[:, H:], hp[:, 2 * H :]), out=c)
            torch.sub(c, h, out=diff)
            torch.addcmul(h, _gate(g0s[t], g1s[t], ur[:, :H]), diff, out=h_next)
        ctx.save_for_backward(U, h_all, hp_all, ur_all, c_all, diff_all, g0, g1)
        return h_all[T].clone()

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        U, h_all, hp_all, ur_all, c_all, diff_all, g0, g1 = ctx.saved_tensors
        T1, B, H = h_all.shape
        T = T1 - 1
        d_hp_all = grad_h.new_empty(T, B, 3 * H)  # gradient of U h_{t-1} (and of xs^{u,r})
        d_c_all = grad_h.new_empty(T, B, H)  # gradient of the candidate's pre-activation (= xs^h)
        d_ur = grad_h.new_empty(B, 2 * H)
        d_g0 = grad_h.new_empty(T, B, 1) if g0 is not None and ctx.needs_input_grad[2] else None
        d_g1 = grad_h.new_empty(T, B, 1) if g1 is not None and ctx.needs_input_grad[3] else None
        if g1 is None:
            d_ur[:, :H] = 0.0  # AGRU: the update gate is not used
        dh = grad_h.contiguous()
        for t in range(T - 1, -1, -1):
            ur, hp, d_hp = ur_all[t], hp_all[t], d_hp_all[t]
            u = ur[:, :H]
            ue = _gate(None if g0 is None else g0[t], None if g1 is None else g1[t], u)
            d_ue = dh * diff_all[t]
            dc = dh * ue
            if d_g0 is not None:
                torch.sum(d_ue, -1, keepdim=True, out=d_g0[t])
            if d_g1 is not None:
                torch.sum(d_ue * u, -1, keepdim=True, out=d_g1[t])
            d_cpre = torch.ops.aten.tanh_backward(dc, c_all[t])
            d_c_all[t] = d_cpre
            if g1 is not None:
                torch.mul(d_ue, g1[t], out=d_ur[:, :H])
            torch.mul(d_cpre, hp[:, 2 * H :], out=d_ur[:, H:])  # d r_t
            d_hp[:, : 2 * H] = torch.ops.aten.sigmoid_backward(d_ur, ur)
            torch.mul(d_cpre, ur[:, H:], out=d_hp[:, 2 * H :])
            dh = (dh - dc).addmm_(d_hp, U)  # d h_{t-1}: the (1 - u') path and the U h_{t-1} path
        dU = d_hp_all.reshape(T * B, 3 * H).t() @ h_all[:T].reshape(T * B, H)  # one product for all steps
        d_xs = torch.cat([d_hp_all[:, :, : 2 * H], d_c_all], dim=-1)
        return d_xs, dU, d_g0, d_g1


def attentional_gru_scan(xs: torch.Tensor, U: torch.Tensor, g0: torch.Tensor | None, g1: torch.Tensor | None) -> torch.Tensor:
    """h_T of the recurrence above; differentiable in xs, U, g0 and g1. Under mixed precision
    (``device.precision``) the recurrence runs in the dtype of ``U`` (fp32), outside autocast: its
    in-place per-step products need one dtype, and a long recurrence is where low precision hurts."""
    dtype = U.dtype
    with torch.autocast(xs.device.type, enabled=False):
        return AttentionalGRUScan.apply(
            xs.to(dtype).contiguous(), U, None if g0 is None else g0.to(dtype), None if g1 is None else g1.to(dtype)
        )


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


class NativeGRUScan(torch.autograd.Function):
    """The same recurrence, with its input projection xs_t = W x_t + bx and a hidden bias bh inside
    p_t (for a plain GRU, g0 = g1 = None: u'_t = u_t), in ``csrc/gru_scan.c``, batch-first, each
    row over its own real positions only:

        x [B, T, D], W [3H, D], bx [3H] | None, U [3H, H], bh [3H] | None, g0 / g1 [B, T] | None,
        lengths [B] (int64), torch_gates (bool)
        -> h_seq [B, T, H] (h_1..h_T, 0 past a row's length), h_last [B, H] (h at the row's length)

    The gate rows of W, U and the biases are (u, r, c); with ``torch_gates`` they are torch's
    ``nn.GRU`` layout (r, z, n), z = 1 - u, read and written back in that layout by the kernel
    (so an ``nn.GRU``'s own parameters go in and get their gradients, no reordered copies).

    Steps past a row's length are not run (they would leave the state as it is), so the gradients
    of x, g0 and g1 there are 0. The input projection is taken per step inside the kernel, and the
    weight and bias gradients are summed there (per block of 4 rows, then over blocks), so neither
    the projection nor the per-step gradients are written out. float32 and float64, CPU;
    ``native.library()`` must not be None."""

    @staticmethod
    def forward(ctx, x, W, bx, U, bh, g0, g1, lengths, torch_gates: bool = False):
        B, T, D = x.shape
        H = U.shape[1]
        tensors = [t for t in (x, W, bx, U, bh, g0, g1) if t is not None]
        if any(t.dtype != x.dtype or t.device.type != "cpu" for t in tensors) or x.dtype not in (torch.float32, torch.float64):
            raise TypeError("NativeGRUScan takes CPU tensors of one dtype, float32 or float64 (native_gru_scan casts them)")
        if W.shape != (3 * H, D) or U.shape != (3 * H, H) or any(b is not None and b.shape != (3 * H,) for b in (bx, bh)):
            raise ValueError(f"NativeGRUScan: W must be [3H, D] = [{3 * H}, {D}], U [3H, H], the biases [3H]")
        if lengths.shape != (B,):
            raise ValueError(f"NativeGRUScan: lengths must be [B] = [{B}], got {list(lengths.shape)}")
        x, W, U = x.contiguous(), W.contiguous(), U.contiguous()
        bx = None if bx is None else bx.contiguous()
        bh = None if bh is None else bh.contiguous()
        g0 = None if g0 is None else g0.reshape(B, T).contiguous()
        g1 = None if g1 is None else g1.reshape(B, T).contiguous()
        lengths = lengths.to(torch.int64).contiguous()
        order = torch.argsort(lengths, stable=True)  # the kernel steps 4 rows at a time: rows of similar length together
        save = any(ctx.needs_input_grad)
        h_seq, h_last = x.new_empty(B, T, H), x.new_empty(B, H)
        ur = x.new_empty(B, T, 2 * H) if save else None
        cs = x.new_empty(B, T, H) if save else None
        hpc = x.new_empty(B, T, H) if save else None
        native.check(native.kernel("gru_fwd", x.dtype)(
            B, T, H, D, _ptr(x), _ptr(W), _ptr(bx), _ptr(U), _ptr(bh), _ptr(g0), _ptr(g1), _ptr(lengths), _ptr(order),
            _ptr(h_seq), _ptr(h_last), _ptr(ur), _ptr(cs), _ptr(hpc), int(bool(torch_gates)),
        ), "GRU recurrence")
        if save:
            ctx.save_for_backward(x, W, U, g0, g1, lengths, order, h_seq, ur, cs, hpc)
            ctx.biases = (bx is not None, bh is not None)
            ctx.torch_gates = bool(torch_gates)
        return h_seq, h_last

    @staticmethod
    def backward(ctx, grad_seq, grad_last):
        x, W, U, g0, g1, lengths, order, h_seq, ur, cs, hpc = ctx.saved_tensors
        B, T, H = h_seq.shape
        D = x.shape[2]
        grad_seq = None if grad_seq is None else grad_seq.contiguous()
        grad_last = None if grad_last is None else grad_last.contiguous()
        d_x, d_W, d_U = x.new_empty(B, T, D), W.new_empty(3 * H, D), U.new_empty(3 * H, H)
        d_bx = W.new_empty(3 * H) if ctx.biases[0] else None
        d_bh = U.new_empty(3 * H) if ctx.biases[1] else None
        d_g0 = h_seq.new_empty(B, T) if g0 is not None and ctx.needs_input_grad[5] else None
        d_g1 = h_seq.new_empty(B, T) if g1 is not None and ctx.needs_input_grad[6] else None
        native.check(native.kernel("gru_bwd", h_seq.dtype)(
            B, T, H, D, _ptr(x), _ptr(W), _ptr(U), _ptr(g0), _ptr(g1), _ptr(lengths), _ptr(order), _ptr(h_seq), _ptr(ur),
            _ptr(cs), _ptr(hpc), _ptr(grad_seq), _ptr(grad_last), _ptr(d_x), _ptr(d_W), _ptr(d_bx), _ptr(d_U), _ptr(d_bh),
            _ptr(d_g0), _ptr(d_g1), int(ctx.torch_gates),
        ), "GRU recurrence")
        return d_x, d_W, d_bx, d_U, d_bh, d_g0, d_g1, None, None


def native_gru_scan(
    x: torch.Tensor, W: torch.Tensor, bx: torch.Tensor | None, U: torch.Tensor, bh: torch.Tensor | None,
    g0: torch.Tensor | None, g1: torch.Tensor | None, lengths: torch.Tensor, torch_gates: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``NativeGRUScan`` outside autocast, in U's dtype (as ``attentional_gru_scan``)."""
    dtype = U.dtype
    with torch.autocast(x.device.type, enabled=False):
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return NativeGRUScan.apply(x.to(dtype), cast(W), cast(bx), U, cast(bh), cast(g0), cast(g1), lengths, torch_gates)


def native_usable(x: torch.Tensor) -> bool:
    """Whether ``NativeGRUScan`` can run on tensors like ``x`` here: CPU, float32 or float64, and
    the library built (``native.library()``)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and native.library() is not None
