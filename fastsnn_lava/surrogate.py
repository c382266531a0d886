"""The IF neuron with a surrogate gradient: exact spikes forward, a smooth derivative backward.

Forward, :func:`if_bptt` is :func:`fastsnn_lava.neuron.if_step` itself, unrolled over
the T steps (v(0) = θ/2, reset by subtraction, signed or not) with a differentiable
Heaviside, so its spikes equal the integer simulation's exactly (every value is an
integer held in a float; see ``test_tandem``)::

    v ← v + I(t)
    up   = H(v − θ)                  ;  v ← v − θ·up   ;  n ← n + up
    down = H(−v − 1)·[n > 0]         ;  v ← v + θ·down ;  n ← n − down     (signed only)
    s(t) = up − down

Backward, the step ``H(x) = [x ≥ 0]`` (x an integer) gets the derivative of a
ramp that climbs from 0 to 1 over one threshold, centred between x = −1 and x = 0::

    H'(x) ≈ h(x) = max(0, 1 − |x + ½| / θ) / θ        (∫ h = 1)

so one spike costs θ of membrane, as in the QANN's ``k = A/θ``. The gradient
flows through the membrane across steps and through the reset (``v − θ·up``); the
count ``n`` that gates the −1 spike is treated as a constant. Backpropagating
through the T steps of every layer (BPTT) then sees *when* each spike arrives,
which the count-level straight-through rule of the QANN cannot: the sequential
error is a matter of order within the window.

**The CUBA LIF** (:func:`lif_bptt`) of :mod:`fastsnn_lava.cuba`'s mapping (``iDecay = 4096``,
``vDecay = 0``, everything in Lava's units of 2^6) is the reset-to-zero neuron with binary spikes::

    v(0) = 0;   v ← v + I(t);   s(t) = H(v − ϑ);   v ← v·(1 − s(t))

with the same ramp ``h`` for ``H``, one threshold ϑ wide. The reset is **detached**
(``v·(1 − s.detach())``): the gradient of a step's spike reaches the earlier currents through the
membrane it integrated, but the reset itself adds none (the common choice for reset-to-zero LIF
surrogates; a live reset would feed ``−v·h`` back, about −1 per spike, pushing a neuron that just
fired away from firing again).
"""
from __future__ import annotations

import torch

from .neuron import if_step


class _Step(torch.autograd.Function):
    """``[x ≥ 0]`` forward; the triangle ``h(x)`` of width θ either side of −½ backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, theta: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.theta = theta
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        theta = ctx.theta
        return grad * (1 - (x + 0.5).abs() / theta).clamp_(min=0) / theta, None


def step(x: torch.Tensor, theta: int) -> torch.Tensor:
    """``[x ≥ 0]`` with the surrogate derivative ``h(x)`` (see the module)."""
    return _Step.apply(x, theta)


def if_bptt(currents: torch.Tensor, theta: int, signed: bool = True) -> torch.Tensor:
    """Spike trains ``(T, B, …)`` of IF neurons (v(0) = θ/2) driven by ``currents`` ``(T, B, …)``:
    :func:`neuron.if_step` with :func:`step` as its Heaviside, so the values are exactly the
    integer neuron's and the spikes are differentiable in ``currents`` through the surrogate."""
    v = torch.full_like(currents[0], theta // 2)
    n = torch.zeros_like(currents[0])
    out = []
    for current in currents:
        v, n, s = if_step(v, n, current, theta, signed, heaviside=lambda x: step(x, theta))
        n = n.detach()  # the count only gates the −1 spike: a constant for the gradient
        out.append(s)
    return torch.stack(out)


def lif_bptt(currents: torch.Tensor, vth: int, floor: float | None = None) -> torch.Tensor:
    """Spike trains ``(T, B, …)`` in {0, 1} of reset-to-zero LIF neurons (v(0) = 0, no leak) that fire when
    ``v ≥ vth``, driven by ``currents`` ``(T, B, …)``: the values are :func:`fastsnn_lava.lif.cuba_step`'s
    spikes of the CUBA mapping (in units of 2^6), the derivative :func:`step`'s ramp; the reset is detached.

    ``floor`` (``−(2^23 − 1)/2^6``): the membrane saturates there as Lava's 24-bit register does,
    ``v ← max(v + I, floor)``. A saturated membrane is ``k + 1/64`` (k an integer) until its next reset, and
    Lava fires it when ``64·v > 64·(vth − 1)``, i.e. when ``⌈v⌉ ≥ vth``: the test uses ``⌈v⌉`` (straight
    through; on the integers it is v itself)."""
    v = torch.zeros_like(currents[0])
    out = []
    for current in currents:
        v = v + current
        if floor is not None:
            v = v.clamp(min=floor)
            s = step(v + (v.ceil() - v).detach() - vth, vth)
        else:
            s = step(v - vth, vth)
        v = v * (1 - s.detach())
        out.append(s)
    return torch.stack(out)
