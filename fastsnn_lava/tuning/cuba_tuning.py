"""Tandem fine-tuning through Lava's CUBA LIF: the network that ``--neuron cuba`` exports, tuned.

The mapping of :mod:`fastsnn_lava.cuba` is lossy (reset to zero, spikes in {0, 1}, no initial θ/2).
Here the codes of hidden layers 2..L−1 (and L with ``classifier``) are tuned as by
:func:`~fastsnn_lava.tuning.distillation.tandem` (distilled from the QANN, SGD with momentum on the
integer codes, held-out acceptance checks, frozen grid), but the forward pass is the CUBA network
``cuba.to_cuba(net, threshold)`` that :func:`fastsnn_lava.lif.lif_forward` simulates. In Lava's units
of 2^6 (``iDecay = 4096``: u = a_in every step; ``vDecay = 0``: no leak), per hidden layer ``l``
with ϑ^l = ``vThMant + 1`` of the chosen mapping and β^l the bias the mapping adds (``bias``: ⌊θ/(2T)⌉,
else 0)::

    I^1      = W^1·x + c^1 + β^1                                  (every step; the first layer is frozen,
                                                                   as cuba.narrow_first divides it)
    I^l(t)   = q^l·s^{l−1}(t) + c^l + β^l
    v^l ← v^l + I^l(t);   s^l(t) = H(v^l − ϑ^l) ∈ {0, 1};   v^l ← v^l·(1 − s^l(t))     (v^l(0) = 0)
    z        = s·(q^L·Σ_t s^{L−1}(t) + T·c^L)                    (the never-firing read-out v^L / 2^6)

Backward, ``H`` gets the ramp one threshold wide of :func:`fastsnn_lava.surrogate.lif_bptt` and the reset
is detached. The membrane saturates at ``−(2^23 − 1)/2^6`` as Lava's voltage register does (``lif_bptt``'s
``floor``; see :mod:`fastsnn_lava.cuba`). Every value is an integer (or, once saturated, an integer plus
1/64) held in the float dtype :meth:`CubaTuner.exact_dtype` proves exact, so the forward *is* the integer
network: ``2^6·z/s`` equals ``lif_forward``'s read-out of the exported network bit for bit
(``to_cuba`` refuses a current that could wrap).

The masters are the codes of the signed-IF network (:meth:`Tuner.network`, the checkpoint's ``snn``);
the CUBA network is always ``to_cuba`` of them with the same mapping, so the export is lossless. A
candidate that ``to_cuba`` refuses (a current could wrap, the read-out could overflow) is
judged infinitely bad: the checks never keep it. The acceptance checks run ``lif_forward`` itself.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..bounds import dtype_for, tuning_bound, value_bound
from ..cuba import VOLTAGE_MAX, narrow_first, to_cuba
from ..errors import FastSNNError
from ..grid import BIAS_MAX, WEIGHT_QMAX
from ..ir import Network
from ..kernel import Kernel
from ..lif import run_lif_batches
from ..models import QuantNet
from ..options import CUBA_THRESHOLD
from ..surrogate import lif_bptt
from .distillation import Tuner, tandem

UNIT = 64  # Lava's 6-bit shift: the CUBA read-out v^L is 2^6·Σ_t I^L(t)
FLOOR = -VOLTAGE_MAX / UNIT  # where the membrane saturates, in the tuner's units


class CubaTuner(Tuner):
    """:class:`Tuner` whose forward is the CUBA LIF network of the codes (see the module)."""

    target = "cuba"

    def __init__(self, qann: QuantNet, net: Network, gradient: str = "bptt", classifier: bool = False,
                 threshold: str = CUBA_THRESHOLD, window: int = 1):
        if gradient != "bptt":
            raise FastSNNError("--target cuba backpropagates through the CUBA steps: use --gradient bptt")
        lif = to_cuba(net, threshold, window)  # refuses a start the CUBA neuron cannot run (skips, registers)
        self.threshold, self.window = threshold, window
        self.vth = [None if layer.neuron.never_fires else layer.neuron.vth + 1 for layer in lif.layers]  # ϑ^l
        first = narrow_first(net)[0]  # the first layer as to_cuba divides it (frozen: once for all)
        self.shift = [int((a.bias - b.bias).max()) for a, b in zip(lif.layers, first.layers)]  # β^l
        super().__init__(qann, net, gradient, classifier, steps=lif.timesteps)  # k·T steps, k-fold sums
        if first is not net:
            self.kernel = Kernel(first, self.dtype)

    def exact_dtype(self, hidden: list) -> torch.dtype:
        """float32 when every value stays below 2^24 whatever codes the tuned layers take: the IF's bounds
        (:mod:`fastsnn_lava.bounds`) plus θ + T·max β for the CUBA bias shift (|v| ≤ ϑ + T·C). A saturated
        membrane ``k + 1/64`` is exact too: float32 holds it below 2^18 in magnitude; a sum below the floor
        rounds to at most the floor (rounding is monotonic and the floor is a float32), and one of 2^17 or
        more rounds to at least 2^17 > ϑ, so it fires and resets to 0 either way."""
        T = self.T
        extra = max((layer.threshold or 0) for layer in self.net.layers) + T * max(self.shift)
        bound = max([value_bound(self.net, T, self.net.input_max)]
                    + [tuning_bound(layer, T, WEIGHT_QMAX, BIAS_MAX + 1) for layer in hidden])
        return dtype_for(bound + extra)

    def sums(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_t I^L(t)`` (B, n_out) of the CUBA network on the current codes, differentiable in them."""
        kernel = self.kernel.substitute(self.codes())
        xt, T = self.kernel.input(x), self.T
        s = None
        for i, syn in enumerate(kernel.synapses):
            if syn.layer.accumulates:
                return syn.summed_current(s.sum(0), {}, T)
            if i == 0:
                first = syn(xt, bias=True) + self.shift[0]
                cur = first.unsqueeze(0).expand(T, *first.shape)
            else:
                cur = syn.step_currents(s, {}) + self.shift[i]
            s = lif_bptt(cur, self.vth[i], FLOOR)
        raise AssertionError("unreachable: the last layer accumulates")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real logits ``s·Σ_t I^L(t)`` whose value is the CUBA network's; BPTT through :func:`lif_bptt`."""
        return self.scale * self.sums(x)

    def cuba_network(self, state: list[torch.Tensor] | None = None) -> Network:
        """The CUBA network of the codes (``to_cuba`` of :meth:`Tuner.network`): what the export writes."""
        return to_cuba(self.network(state), self.threshold, self.window)

    def simulate(self, candidate: Network, x: np.ndarray) -> np.ndarray | None:
        """``Σ_t I^L(t)`` of ``to_cuba(candidate)`` by :func:`~fastsnn_lava.lif.run_lif_batches` (its read-out
        / 2^6), or None when ``to_cuba`` refuses the candidate's codes."""
        try:
            lif = to_cuba(candidate, self.threshold, self.window)
        except FastSNNError:
            return None
        return run_lif_batches(lif, x) // UNIT


def cuba_tandem(qann: QuantNet, net: Network, x: np.ndarray, threshold: str = CUBA_THRESHOLD, window: int = 1,
                **options) -> tuple[Network, object]:
    """:func:`~fastsnn_lava.tuning.distillation.tandem` through the CUBA LIF of the ``threshold`` mapping
    (``theta``, ``half`` or ``bias``; see :mod:`fastsnn_lava.cuba`) run for ``window``·T steps. Returns the tuned signed-IF codes
    (export them with ``to_cuba(net, threshold)``) and the :class:`TandemReport` (``target="cuba"``)."""
    return tandem(qann, net, x, make_tuner=functools.partial(CubaTuner, threshold=threshold, window=window),
                  **options)
