"""Quantizers of the b-bit ANN, with straight-through gradients.

Activation (per layer, learnable clip α, ``T = 2^b - 1`` levels above zero)::

    x̂ = ReLU(x) / α
    y = (α / T) · clip(floor(T·x̂ + 1/2), 0, T)

Rounding is half-up (``floor(z + 1/2)``), the rule an IF neuron with initial
membrane θ/2 and a ``≥`` test implements, so the SNN reproduces the quantizer
exactly, ties included. Gradients (APoT / PACT style): ``∂y/∂x = 1`` where
``0 < x̂ ≤ 1``, else 0; ``∂y/∂α = 1`` where ``x̂ > 1``, else ``q̂ − x̂`` with
``q̂ = floor(T·x̂ + 1/2) / T``.

Weights live on the integer grid the exporter writes: ``W = Δ·q`` with integer
codes ``|q| ≤ q_max`` and biases ``b = u·c`` with integer codes ``c``, where
``u = Δ·u_in`` is the layer's current unit (see :mod:`fastsnn_lava.models`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
    """Integer level k = clip(floor(T·ReLU(x)/α + 1/2), 0, T) of the quantizer (no gradient)."""
    levels = 2 ** bits - 1
    return round_half_up(levels * (torch.relu(x) / alpha).clamp(max=1.0))


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
    def forward(ctx, x, w, b, alpha, grid: tuple, conv: tuple | None, *extras):
        delta, unit, w_lim, b_lo, b_hi, levels = grid
        wq, bq = _grid_values(w, delta, -w_lim, w_lim), _grid_values(b, unit, b_lo, b_hi)
        z = F.conv2d(x, wq, bq, *conv) if conv else F.linear(x, wq, bq)
        for e in extras:
            z = z + e
        ctx.conv, ctx.levels, ctx.n_extras = conv, levels, len(extras)
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
            grad, grad_alpha = _quantize_backward(z, y, alpha, grad)
        else:
            (x, wq), grad_alpha = ctx.saved_tensors, None
        want_x = ctx.needs_input_grad[0]
        if ctx.conv:
            stride, padding = ([v, v] if isinstance(v, int) else list(v) for v in ctx.conv)
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad, x, wq, [wq.shape[0]], stride, padding, [1, 1], False, [0, 0], 1, [want_x, True, True])
        else:
            gx, gw, gb = grad.mm(wq) if want_x else None, grad.t().mm(x), grad.sum(0)
        return (gx, gw, gb, grad_alpha, None, None) + (grad,) * ctx.n_extras


def quant_synapse(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor | None,
                  grid: tuple, conv: tuple | None = None, extras: tuple = ()) -> torch.Tensor:
    """One layer of the quantized ANN in one autograd node::

        z = op(x, Δ·q(W)) + u·c(b) + Σ_j e_j,   y = act_quant(z, α) if levels else z

    with ``grid = (Δ, u, q_max, c_lo, c_hi, levels)``, ``q(W) = clip(round(W/Δ), ±q_max)`` and
    ``c(b) = clip(round(b/u), c_lo, c_hi)`` (half-up, as :func:`fake_quant`), ``op`` a dense
    layer or, with ``conv = (stride, padding)`` (ints or pairs), a convolution; ``e_j`` are shortcut currents
    added in order. Values and gradients equal the composition of :func:`fake_quant`, the op and
    :func:`act_quant` (straight-through to W and b) bit for bit; one node instead of four keeps
    the per-layer dispatch overhead of quantization-aware training small.
    """
    return _QuantSynapse.apply(x, w, b, alpha, grid, conv, *extras)


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
