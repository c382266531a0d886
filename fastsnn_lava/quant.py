"""Quantizers of the b-bit ANN, with straight-through gradients.

Activation (per layer, learnable clip α, ``T = 2^b - 1`` levels above zero)::

    x̂ = ReLU(x) / α
    y = (α / T) · clip(floor(T·x̂ + 1/2), 0, T)

Rounding is half-up (``floor(z + 1/2)``), the rule an IF neuron with initial
membrane θ/2 and a ``≥`` test implements. Gradients (APoT / PACT style): ``∂y/∂x = 1`` where
``0 < x̂ ≤ 1``, else 0; ``∂y/∂α = 1`` where ``x̂ > 1``, else ``q̂ − x̂`` with
``q̂ = floor(T·x̂ + 1/2) / T``.

**Ties.** On the grid of :mod:`fastsnn_lava.grid` the exact pre-activation is ``z = u·A/T``
with an integer accumulator ``A`` and ``α = θ·u``, so ``T·x̂ + 1/2 = (A + θ/2)/θ``: whenever
``A + θ/2`` is a multiple of θ (a *tie*) it is an integer. Computed in float32 from the grids
(``Δ·q``, ``u·c``, ``α`` and ``1/input_max`` rounded to float32, products and sums rounded in an
order that depends on the kernel, batch and thread count) a tie lands a few ulps on either side,
e.g. ``1.99999976`` instead of 2, and where it lands below, ``floor`` takes the level below the one
the integer network (and Lava) computes: about a quarter of the ties of a trained digits CNN did.
:func:`act_quant` and :func:`activation_level` are this float formula. The quantized network does not use them on
its grid: :func:`quant_synapse` takes the integer accumulator (``exact=``, computed exactly by
:func:`integer_sum`) and outputs the level ``clip(⌊(A + θ/2)/θ⌋, 0, T)`` of :func:`integer_level`
(the classifier ``z = u·A/T``), with the same straight-through gradients evaluated at ``z = u·A/T``.

Weights live on the integer grid the exporter writes: ``W = Δ·q`` with integer
codes ``|q| ≤ q_max`` and biases ``b = u·c`` with integer codes ``c``, where
``u = Δ·u_in`` is the layer's current unit (see :mod:`fastsnn_lava.grid`).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .errors import FastSNNError

EXACT_BITS = {torch.float32: 24, torch.float64: 53}  # every integer up to 2^p is exact


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def _quantize(x: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """The quantizer's forward value in one new buffer (in-place passes, same order as the formula)."""
    y = torch.div(x, alpha)  # promotes as the formula does (a half x under autocast gives float32)
    # clamp(x/α, 0, 1) = min(ReLU(x)/α, 1) exactly: ReLU(x)/α is 0 where x/α < 0
    return y.clamp_(0.0, 1.0).mul_(levels).add_(0.5).floor_().div_(levels).mul_(alpha)


def _quantize_backward(x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, grad: torch.Tensor):
    """(∂L/∂x, ∂L/∂α) of the quantizer from its input x, output y and the incoming gradient.

    With ``y = α·q̂`` and ``m = [0 < x̂ ≤ 1]``: ``∂L/∂x = g·m`` and
    ``∂L/∂α = Σ g·(1[x̂>1] + (q̂ − x̂)·m) = (Σ g·y − Σ g·m·x) / α`` (for ``x̂ > 1``, ``y = α``;
    below zero both terms vanish), i.e. two dot products and no extra activation-sized tensor
    besides the mask and ``∂L/∂x``.
    """
    # every tensor op here costs a dispatch (µs on a small layer), so no no-op casts and a scalar 0
    inside = (x > 0).logical_and_(x <= alpha)
    grad_x = torch.where(inside, grad, 0.0)
    g = grad.reshape(-1)
    xg = x if x.dtype == g.dtype else x.to(g.dtype)
    grad_alpha = (torch.dot(g, y.reshape(-1)) - torch.dot(grad_x.reshape(-1), xg.reshape(-1))) / alpha
    return (grad_x if grad_x.dtype == x.dtype else grad_x.to(x.dtype)), grad_alpha.reshape(1)


class _ActQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, levels: int):
        y = _quantize(x, alpha, levels)
        ctx.save_for_backward(x, y, alpha)
        return y

    @staticmethod
    def backward(ctx, grad):
        return *_quantize_backward(*ctx.saved_tensors, grad), None


def act_quant(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """b-bit activation quantizer with clip ``alpha`` (a one-element tensor)."""
    return _ActQuant.apply(x, alpha, 2 ** bits - 1)


def activation_level(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """Level k = clip(floor(T·ReLU(x)/α + 1/2), 0, T) of the float quantizer (no gradient).

    In floating point: at an exact tie of the integer grid a computed ``x`` can land on either
    side (see the module docstring); the network's exact level is :func:`integer_level`."""
    levels = 2 ** bits - 1
    return round_half_up(levels * (torch.relu(x) / alpha).clamp(max=1.0))


def exact_dtype(bound: float) -> torch.dtype:
    """float32 when every integer up to ``bound`` is exact in it (``bound < 2^24``), else float64."""
    for dtype, p in EXACT_BITS.items():
        if bound < 2 ** p:
            return dtype
    raise FastSNNError(f"integer sums up to {bound:.3g} exceed 2^53: the layer's codes or inputs are too large")


@contextlib.contextmanager
def _exact_kernels(device: torch.device):
    """No autocast and, on CUDA, no TF32 (10-bit mantissas) for the body."""
    from .runtime import no_tf32
    with torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext():
        with no_tf32(device):
            yield


def max_abs(t: torch.Tensor) -> float:
    """max|t| in one pass, no temporary."""
    if not t.numel():
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


def integer_sum(m: torch.Tensor, q: torch.Tensor, conv: tuple | None = None, bias: torch.Tensor | None = None,
                bias_bound: float | None = None) -> tuple[torch.Tensor, float]:
    """``(Σ q·m + bias, bound)``: a dense layer (``m`` (B, n), ``q`` (O, n)) or, with ``conv = (stride,
    padding)``, a convolution, of integer-valued tensors (``bias`` (O,) optional), computed exactly.

    ``bound = max_o Σ_i |q_oi| · max|m| + max|bias|`` (``bias_bound``, if given, for ``max|bias|``)
    bounds every partial sum, in any order, so the sum runs in float32 when ``bound < 2^24`` and in
    float64 otherwise (:func:`exact_dtype`); no autocast, no TF32, and on CUDA a convolution runs as
    unfold + matmul, so that no Winograd/FFT algorithm (inexact) is picked (as
    :mod:`fastsnn_lava.engine` does).
    """
    bound = float(q.abs().flatten(1).sum(1).max()) * max_abs(m) if q.numel() else 0.0
    if bias is not None:
        bound += max_abs(bias) if bias_bound is None else bias_bound
    dtype = exact_dtype(bound)
    m, q = m.to(dtype), q.to(dtype)
    bias = bias.to(dtype) if bias is not None else None
    with _exact_kernels(m.device):
        if conv is None:
            return F.linear(m, q, bias), bound
        if m.device.type != "cuda":
            return F.conv2d(m, q, bias, *conv), bound
        out = conv_unfold(m, q, *conv)
        return (out if bias is None else out.add_(bias.view(-1, 1, 1))), bound


def conv_unfold(m: torch.Tensor, q: torch.Tensor, stride, padding, dilation: int = 1,
                groups: int = 1) -> torch.Tensor:
    """conv2d (no bias, dilation 1) as im2col + matmul: a plain GEMM, exact for integers
    whose partial sums stay below 2^p (no Winograd/FFT algorithm can be picked). With ``groups`` g the
    columns (channel-major) split into g blocks, block i multiplied by the weights of output group i."""
    if dilation != 1:
        raise ValueError(f"conv_unfold computes dilation 1, not {dilation}")
    c_out, _, kh, kw = q.shape
    st = (stride, stride) if isinstance(stride, int) else tuple(stride)
    pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
    h = (m.shape[2] + 2 * pad[0] - kh) // st[0] + 1
    cols = F.unfold(m, (kh, kw), 1, pad, st)  # (B, C_in·kh·kw, L): a copy, exact
    if groups != 1:
        cols = cols.view(len(m), groups, -1, cols.shape[-1])  # (B, g, C_in/g·kh·kw, L)
        return torch.matmul(q.reshape(groups, c_out // groups, -1), cols).view(len(m), c_out, h, -1)
    return torch.matmul(q.reshape(c_out, -1), cols).view(len(m), c_out, h, -1)


def integer_level(acc: torch.Tensor, theta: int, levels: int) -> torch.Tensor:
    """``clip(⌊(A + θ/2)/θ⌋, 0, T)`` (:func:`fastsnn_lava.reference.qann_forward`'s rule) of an
    integer-valued accumulator A, in its dtype; exact while ``|A| + 2θ < 2^p`` (p = 24 for float32,
    53 for float64), as :meth:`~fastsnn_lava.models.QuantLayer.accumulator` picks the dtype.

    ``⌊fl(a/b)⌋ = ⌊a/b⌋`` for integers ``b > 0`` and ``|a| + b < 2^p``: an exact quotient is
    representable, and otherwise ``a/b ≤ n + 1 − 1/b`` stays more than half a float spacing
    (``≤ |n + 1|·2^(1−p)``) below ``n + 1`` since ``|n + 1|·b ≤ |a| + b``.
    """
    return torch.add(acc, theta // 2).div_(theta).floor_().clamp_(0, levels)


def level_value(k: torch.Tensor, alpha: torch.Tensor, levels: int, dtype: torch.dtype) -> torch.Tensor:
    """The quantizer's output ``α·k/T`` for levels ``k``, rounded as :func:`act_quant` rounds it (a new tensor)."""
    return k.to(dtype, copy=True).div_(levels).mul_(alpha)


def _exact_value(exact: tuple, unit: float, levels: int, alpha: torch.Tensor | None,
                 dtype: torch.dtype) -> torch.Tensor:
    """The layer's output from ``exact = (V, θ, T, …)``: ``α·clip(⌊V/θ⌋, 0, T)/T`` with levels,
    else ``u·V/T``."""
    v, theta, steps = exact[:3]
    if not levels:  # u·A/T rounded once, in the wider of the two dtypes
        s = unit / steps
        return v.mul(s).to(dtype) if v.dtype.itemsize >= dtype.itemsize else v.to(dtype).mul_(s)
    k = torch.div(v, theta).floor_().clamp_(0, levels)  # V = A + θ/2: the level, exactly (integer_level)
    return (k if k.dtype == dtype else k.to(dtype)).div_(levels).mul_(alpha)


def _exact_backward(v: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, grad: torch.Tensor, theta: int,
                    levels: int, scale: float):
    """:func:`_quantize_backward` on ``z = s·A`` (``s = u/T``) given ``V = A + θ/2``: with
    ``α = θ·u``, ``0 < z ≤ α`` is ``0 < A ≤ T·θ`` and ``Σ g·m·z = s·(Σ g·m·V − θ/2·Σ g·m)``;
    no z tensor is formed."""
    half = theta // 2
    inside = (v > half).logical_and_(v <= levels * theta + half)
    grad_x = torch.where(inside, grad, 0.0)
    gx = grad_x.reshape(-1)
    vg = v if v.dtype == gx.dtype else v.to(gx.dtype)
    mz = scale * (torch.dot(gx, vg.reshape(-1)) - half * gx.sum())
    grad_alpha = (torch.dot(grad.reshape(-1), y.reshape(-1)) - mz) / alpha
    return grad_x, grad_alpha.reshape(1)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round half-up in the forward pass, identity gradient."""
    return x + (round_half_up(x) - x).detach()


def weight_codes(w: torch.Tensor, delta: float, qmax: int) -> torch.Tensor:
    """Integer weight codes ``clip(round(w/Δ), −q_max, q_max)`` (no gradient)."""
    return round_half_up(w.detach() / delta).clamp(-qmax, qmax)


def _grid_values(w: torch.Tensor, step: float, lo: int, hi: int) -> torch.Tensor:
    """``step·clip(floor(w/step + 1/2), lo, hi)`` in one new buffer; the codes in float32 as the exporter."""
    if w.dtype == torch.float32:  # the usual case: no cast dispatches
        return torch.div(w, step).add_(0.5).floor_().clamp_(lo, hi).mul_(step)
    codes = torch.div(w.float(), step).add_(0.5).floor_().clamp_(lo, hi)  # as weight_codes: in float32
    return codes.to(w.dtype).mul_(step)


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, step: float, lo: int, hi: int):
        return _grid_values(w, step, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def fake_quant(w: torch.Tensor, step: float, lo: int, hi: int) -> torch.Tensor:
    """``step·clip(round(w/step), lo, hi)`` (half-up rounding, the codes computed in float32 as the
    exporter does, whatever ``w``'s dtype) with a straight-through gradient;
    one allocation, so a training step pays little for the weight grid."""
    return _FakeQuant.apply(w, step, lo, hi)


def fake_quant_weight(w: torch.Tensor, delta: float, qmax: int) -> torch.Tensor:
    """``Δ·clip(round(w/Δ), ±q_max)`` (exactly ``Δ·weight_codes``) with a straight-through gradient."""
    return fake_quant(w, delta, -qmax, qmax)


class _QuantSynapse(torch.autograd.Function):
    """A layer of the quantized ANN as one autograd node (see :func:`quant_synapse`)."""

    @staticmethod
    def forward(ctx, x, w, b, alpha, grid: tuple, conv: tuple | None, exact: tuple | None, *extras):
        delta, unit, w_lim, b_lo, b_hi, levels = grid
        ctx.conv, ctx.levels, ctx.n_extras, ctx.exact = conv, levels, len(extras), None
        if exact is not None:  # the value from the integers; the float op is not needed, extras only route gradients
            # Δ·q for the backward pass: from the codes if given (the same values as _grid_values)
            wq = exact[3].to(w.dtype).mul_(delta) if len(exact) > 3 else _grid_values(w, delta, -w_lim, w_lim)
            out = _exact_value(exact, unit, levels, alpha, x.dtype)
            if not levels:
                ctx.save_for_backward(x, wq)
                return out
            v, theta, steps = exact[:3]
            ctx.exact = (theta, unit / steps)
            ctx.save_for_backward(x, wq, v, out, alpha)
            return out
        wq = _grid_values(w, delta, -w_lim, w_lim)
        z = F.conv2d(x, wq, _grid_values(b, unit, b_lo, b_hi), *conv) if conv else F.linear(
            x, wq, _grid_values(b, unit, b_lo, b_hi))
        for e in extras:
            z = z + e
        if not levels:
            ctx.save_for_backward(x, wq)
            return z
        y = _quantize(z, alpha, levels)
        ctx.save_for_backward(x, wq, z, y, alpha)
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.levels:
            x, wq, z, y, alpha = ctx.saved_tensors
            if ctx.exact is None:
                grad, grad_alpha = _quantize_backward(z, y, alpha, grad)
            else:  # z holds V = A + θ/2
                grad, grad_alpha = _exact_backward(z, y, alpha, grad, ctx.exact[0], ctx.levels, ctx.exact[1])
                grad = grad if grad.dtype == x.dtype else grad.to(x.dtype)
        else:
            (x, wq), grad_alpha = ctx.saved_tensors, None
        want_x = ctx.needs_input_grad[0]
        if ctx.conv:
            stride, padding = ([v, v] if isinstance(v, int) else list(v) for v in ctx.conv[:2])
            groups = ctx.conv[3] if len(ctx.conv) > 3 else 1
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, wq, [wq.shape[0]], stride, padding, [1, 1], False, [0, 0], groups, [want_x, True, True])
        else:
            gx, gw, gb = grad.mm(wq) if want_x else None, grad.t().mm(x), grad.sum(0)
        return (gx, gw, gb, grad_alpha, None, None, None) + (grad,) * ctx.n_extras


def quant_synapse(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor | None,
                  grid: tuple, conv: tuple | None = None, extras: tuple = (),
                  exact: tuple | None = None) -> torch.Tensor:
    """One layer of the quantized ANN in one autograd node::

        z = op(x, Δ·q(W)) + u·c(b) + Σ_j e_j,   y = act_quant(z, α) if levels else z

    with ``grid = (Δ, u, q_max, c_lo, c_hi, levels)``, ``q(W) = clip(round(W/Δ), ±q_max)`` and
    ``c(b) = clip(round(b/u), c_lo, c_hi)`` (half-up, as :func:`fake_quant`), ``op`` a dense
    layer or, with ``conv = (stride, padding)`` (ints or pairs; ``(stride, padding, 1, groups)`` for a grouped
    one, :func:`fastsnn_lava.spec.conv_args`), a convolution; ``e_j`` are shortcut currents
    added in order. Values and gradients equal the composition of :func:`fake_quant`, the op and
    :func:`act_quant` (straight-through to W and b) bit for bit; one node instead of four keeps
    the per-layer dispatch overhead of quantization-aware training small.

    ``exact = (V, θ, T)``: the layer's exact integer accumulator plus the IF neuron's initial membrane,
    ``V = A + θ/2`` (``A`` for the classifier, θ None; no gradient; see
    :meth:`fastsnn_lava.models.QuantLayer.accumulator`), and the network's T; optionally a fourth
    entry, the weight codes ``q(W)`` when the caller has them (saves recomputing them). The forward value then
    comes from the integers, not from the float ``z`` (which can put a tie on either side, see the
    module docstring): ``y = α·clip(⌊V/θ⌋, 0, T)/T``, exactly the exported network's level, and
    ``z = u·A/T`` without levels; the float op is not evaluated. The backward pass is the same
    straight-through formula evaluated at ``z = u·A/T``. Without gradients to compute
    (``torch.no_grad()``, or no input requiring one) the value is returned without an autograd node,
    and ``extras`` (which then only route gradients) may be left out.
    """
    if exact is not None and not (torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, w, b, alpha, *extras))):
        return _exact_value(exact, grid[1], grid[5], alpha, x.dtype)
    return _QuantSynapse.apply(x, w, b, alpha, grid, conv, exact, *extras)


class QReLU(torch.nn.Module):
    """The activation of a user-written model: where the SNN will have a spiking layer.

    In the float model it is a plain ReLU; :mod:`fastsnn_lava.fx` turns every
    QReLU (or ``nn.ReLU``/``F.relu``) into a hidden layer of the quantized
    network, whose quantizer is ``act_quant`` with a learnable clip α and b bits
    (above). ``bits``, if given, must equal the bits of the conversion.
    """

    def __init__(self, bits: int | None = None):
        super().__init__()
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def extra_repr(self) -> str:
        return f"bits={self.bits}" if self.bits is not None else ""
