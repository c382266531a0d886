"""Map a signed-IF integer network onto Lava's standard CUBA LIF neuron (lossy).

Loihi 2 runs netx's ``CUBA`` neuron natively; this project's ``SIGNED_IF`` needs a
NeuroCore microcode model that only Intel's lava-loihi can supply. The CUBA LIF
(:mod:`fastsnn_lava.lif`) differs from the signed IF in three ways that no
parameter choice removes:

* it resets to **zero** after a spike instead of subtracting θ (the residue is lost);
* it fires only **+1** (no retracting −1 spikes, so no sequential-error correction);
* its membrane starts at **0** after each window's reset, not θ/2 (netx's ``LIFReset``
  zeroes u and v and has no initial-value key).

The mapping keeps the integers of :mod:`fastsnn_lava.ir` and sets, per hidden layer,
``iDecay = 4096`` (the current does not persist: u = a_in each step), ``vDecay = 0``
(no leak) and the same weights and bias. Since v then stays a multiple of 64,
``vThMant = ϑ − 1`` turns Lava's strict ``v > vThMant·64`` into ``Σ I ≥ ϑ``. Three
choices of ϑ stand in for the missing θ/2 (``--cuba-threshold``):

* ``theta``: ϑ = θ (fires as the IF would without the initial θ/2);
* ``half``: ϑ = θ/2 (the first spike comes exactly when the IF's would; later ones too early);
* ``bias``: ϑ = θ and ⌊θ/(2T)⌉ added to the bias, spreading θ/2 over the T steps.

**Longer windows** (``window`` = k > 1, ``--cuba-window k``): the same layers run for k·T steps with the
same thresholds, so every count, and the read-out, grows about k-fold (the argmax does not care), and
``bias`` adds ⌊θ/(2kT)⌉ per step (θ/2 over the window). A finer count was meant to shrink the rounding
loss; it does not remove the larger one: a reset-to-zero neuron under a steady current I fires every
⌈ϑ/I⌉ steps, a staircase in I/ϑ that no window length smooths. (Multiplying ϑ by k instead keeps the
counts in [0, T] but divides every later layer's weights by k, and netx's conv blocks have no weight
exponent to undo that.) ``scripts/cuba_accuracy.py --windows`` measures it.

The output layer becomes a CUBA layer that never fires (``vThMant = 2^17 − 1``, the
17-bit maximum): its membrane after T steps is ``64 · Σ_t I^L(t)``, the accumulator's
output in Lava's 6-bit units, read out by a probe on ``v``. That is exact while
``|Σ_t I^L(t)| < 2^17 − 1``, which :func:`to_cuba` checks.

**Registers** (lava-nc 0.10.0 ``lava/proc/lif/models.py``, 24-bit state, mirrored by
:func:`fastsnn_lava.lif.cuba_step`). With ``iDecay = 4096`` the current register holds
``u(t) = a_in(t)·2^6`` and **wraps** outside ``(−2^23, 2^23]``, so ``a_in`` must stay in
``(−2^17, 2^17]``; the voltage ``v(t) = clip(v(t−1) + u(t) + b·2^6, ±(2^23 − 1))`` **saturates**.
Both are bounded by interval arithmetic over the whole declared input range (raw inputs in
``[0, M]`` for the first layer, spikes in ``{0, 1}`` after it)::

    a_in ∈ [Σ_j min(W_ij, 0)·x̄, Σ_j max(W_ij, 0)·x̄],   x̄ = M (first layer) or 1
    v ≥ 2^6·T·(min a_in + min(b, 0))            (below threshold nothing resets it within the T-step window)

A current that could wrap is refused (:func:`check_registers`): the wrapped sum is noise. **First
layer**: its raw inputs (up to ``M`` = 255 for 8-bit images) can drive ``a_in`` past the register where
every hidden layer's spikes cannot; :func:`narrow_first` then divides its weights, bias and threshold by
the least 2^s that fits (rounded half away from zero; s is recorded as ``cuba_first_shift`` in the
network's meta). Its spikes are those of the IF layer up to that rounding, another loss of the mapping
that tuning can absorb (the first layer itself stays frozen). A saturating
voltage is not: it is part of the neuron (``clip`` above), the reference :func:`~fastsnn_lava.lif.lif_forward`
and the tuner (:func:`fastsnn_lava.surrogate.lif_bptt` with ``floor``) compute it as Lava does, and a
saturated membrane ``−(2^23 − 1) = 64·k + 1`` (k = −131,072) fires one unit of 64 earlier than an
unsaturated one, exactly as in Lava. At the top it changes nothing: ``2^23 − 1 > 2^6·vth`` for every
17-bit threshold, so a saturated v still fires and resets to 0.

Only a consumer without the register, NIR's continuous IF (:mod:`fastsnn_lava.formats.nir_graph`), needs
the voltage never to saturate where it matters; :func:`check_voltage` refuses a neuron that could both
saturate low *and* climb back above the threshold within the window::

    2^6·T·(min a_in + min(b, 0)) < −(2^23 − 1)   and   2^6·(T − 1)·max(max a_in + b, 0) − (2^23 − 1) > 2^6·vThMant

(from a saturation at step ≥ 1 at most T − 1 steps remain; a trajectory that cannot reach the threshold
from the register's floor cannot from below it either, so neither fires again in the window). The first
layer is exempt: its current is the same at every step (the raw sample is presented at each step, the
bias is constant), so its membrane is monotonic between resets: with ``I < 0`` it only falls and never
fires, saturated or not; with ``I ≥ 0`` it never goes below 0. The never-firing read-out is bounded by
:func:`to_cuba` itself.

The loss of the mapping can be tuned away: :mod:`fastsnn_lava.tuning.cuba_tuning` fine-tunes the codes
through exactly this network (``fastsnn-finetune --target cuba --cuba-threshold MODE``).
"""
from __future__ import annotations

import dataclasses

from .errors import FastSNNError
from .ir import Network, reset_window
from .neuron import NEVER_FIRES, CubaLIF
from .options import CUBA_THRESHOLD, CUBA_THRESHOLDS as THRESHOLD_MODES, CUBA_WINDOW_MAX as WINDOW_MAX


def to_cuba(net: Network, threshold: str = CUBA_THRESHOLD, window: int = 1) -> Network:
    """The IF network ``net`` with every neuron replaced by Lava's CUBA LIF (see the module), run for
    ``window``·T steps (``--cuba-window``; see the module's *Longer windows*). ``threshold``: one mapping
    for every spiking layer, or one per spiking layer, comma-separated (``"half,bias,half,half"``)."""
    net.require("if", "--neuron cuba (the mapping of IF neurons onto CUBA LIF)")
    spiking = sum(not layer.accumulates for layer in net.layers)
    modes = threshold.split(",") if isinstance(threshold, str) else [threshold]
    modes = modes * spiking if len(modes) == 1 else modes
    if len(modes) != spiking or any(m not in THRESHOLD_MODES for m in modes):
        raise FastSNNError(f"--cuba-threshold must be one of {THRESHOLD_MODES}, or one of them per spiking layer "
                           f"({spiking}) separated by commas, got {threshold!r}")
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= WINDOW_MAX:
        raise FastSNNError(f"--cuba-window must be an integer in [1, {WINDOW_MAX}], got {window!r}")
    if net.has_skips:
        raise FastSNNError("--neuron cuba cannot express residual shortcuts (vanilla netx has no skip): "
                           "export a residual network with the signed IF neuron")
    T = net.timesteps
    bound = readout_bound(net, window * T)
    if bound >= NEVER_FIRES:
        raise FastSNNError(f"layer {len(net.layers)} (output): its sum could reach {bound}, beyond the "
                           f"{NEVER_FIRES} a never-firing CUBA output layer can hold: use fewer bits or a "
                           "narrower output layer, or export with the signed-IF neuron")
    net, shift = narrow_first(net)
    layers, per_layer = [], iter(modes)
    for layer in net.layers:
        if layer.accumulates:
            vth, bias = NEVER_FIRES, layer.bias
        else:
            mode = next(per_layer)
            theta = layer.threshold // 2 if mode == "half" else layer.threshold
            bias = layer.bias + (round(layer.threshold / (2 * window * T)) if mode == "bias" else 0)
            vth = theta - 1
        layers.append(dataclasses.replace(layer, bias=bias, neuron=CubaLIF(vth, 4096, 0)))
    check_registers(net, layers)
    meta = dict(net.meta, neuron="cuba", cuba_threshold=threshold, **({"cuba_window": window} if window > 1 else {}),
                **({"cuba_first_shift": shift} if shift else {}))
    return dataclasses.replace(net, layers=layers, meta=meta, timesteps=window * T,
                               reset_interval=reset_window(window * T))


def narrow_first(net: Network) -> tuple[Network, int]:
    """``net`` with its first layer's weights, bias and threshold divided by 2^s (rounded half away from
    zero), s the least shift that keeps its input current within Lava's register (see the module's
    *First layer*); ``(net, 0)`` where it fits already, where the first layer accumulates (a read-out has
    no threshold to divide with it), or where no shift up to 16 fits (:func:`check_registers` then refuses
    the network, naming the neuron)."""
    import numpy as np
    first = net.layers[0]
    if first.accumulates:
        return net, 0

    def shifted(a, s):
        a = np.asarray(a, dtype=np.int64)
        return np.sign(a) * ((np.abs(a) + (1 << s >> 1)) >> s)

    def fits(s):
        lo, hi = currents(net, 1, shifted(first.weight, s))
        return hi.max() <= CURRENT_MAX and lo.min() > -CURRENT_MAX
    s = next((s for s in range(17) if fits(s)), 0)
    if s == 0:
        return net, 0
    theta = 2 * max(int(shifted(first.threshold, s + 1)), 1)  # θ stays even: θ/2 is divided by 2^s as well
    layer = dataclasses.replace(first, weight=shifted(first.weight, s), bias=shifted(first.bias, s),
                                neuron=dataclasses.replace(first.neuron, threshold=theta))
    return dataclasses.replace(net, layers=[layer, *net.layers[1:]]), s


CURRENT_MAX = 2 ** 17   # a_in·2^6 must stay within the 24-bit current register: a_in ∈ (−2^17, 2^17]
VOLTAGE_MAX = 2 ** 23 - 1  # the 24-bit voltage register saturates here


def currents(net: Network, i: int, weight) -> tuple:
    """Per neuron of layer ``i`` (1-based), the least and greatest synaptic sum ``a_in = W·x`` one step can
    bring: raw inputs in ``[0, input_max]`` for the first layer, spikes in {0, 1} after it."""
    import numpy as np
    w = np.asarray(weight).reshape(len(weight), -1)
    top = net.input_max if i == 1 else 1
    return np.clip(w, None, 0).sum(1) * top, np.clip(w, 0, None).sum(1) * top


def readout_bound(net: Network, steps: int) -> int:
    """A bound on ``|Σ_t I^L(t)|`` over ``steps`` steps of the CUBA network's read-out layer
    (``I^L = a_in + b``, ``a_in`` within :func:`currents`)."""
    import numpy as np
    last = net.layers[-1]
    lo, hi = currents(net, len(net.layers), last.weight)
    b = np.asarray(last.bias).reshape(-1)
    return int(steps * np.maximum(np.abs(lo + b), np.abs(hi + b)).max())


def check_registers(net: Network, layers: list) -> None:
    """Refuse a CUBA mapping whose current could wrap Lava's 24-bit register (see the module)."""
    import numpy as np
    for i, (layer, lif) in enumerate(zip(net.layers, layers), start=1):
        lo, hi = currents(net, i, lif.weight)
        if hi.max() > CURRENT_MAX or lo.min() <= -CURRENT_MAX:
            n = int(np.argmax(np.maximum(hi, -lo)))
            raise FastSNNError(f"layer {i} ({layer.kind}): neuron {n}'s input current can reach "
                               f"{int(hi[n]) if hi[n] > -lo[n] else int(lo[n])} per step, beyond the ±{CURRENT_MAX} "
                               "that Lava's 24-bit CUBA current register holds (a_in·2^6 would wrap): export with "
                               "the signed-IF neuron, or retrain with smaller weights or inputs")


def voltage_floor(net: Network, i: int, layer, steps: int):
    """Per neuron of layer ``i`` (1-based) of a CUBA network: how far below 0 its voltage could fall over
    ``steps`` steps (``2^6·T·(min a_in + min(b, 0))``, negated) and how far it could climb in ``steps − 1``."""
    import numpy as np
    lo, hi = currents(net, i, layer.weight)
    b = np.asarray(layer.bias).reshape(len(lo), -1)  # per neuron, or per channel of a conv layer
    return -64 * steps * (lo + np.clip(b.min(1), None, 0)), 64 * (steps - 1) * np.clip(hi + b.max(1), 0, None)


def check_voltage(lif_net: Network, consumer: str) -> None:
    """Refuse, for ``consumer`` (a simulator without Lava's saturating voltage register), a CUBA network in
    which a hidden neuron's voltage could saturate low and climb back above its threshold (see the module)."""
    for i, layer in enumerate(lif_net.layers, start=1):
        if layer.neuron.never_fires or i == 1:  # the read-out: checked by to_cuba; the first layer: see the module
            continue
        down, climb = voltage_floor(lif_net, i, layer, lif_net.timesteps)
        harmful = (down > VOLTAGE_MAX) & (climb - VOLTAGE_MAX > 64 * layer.neuron.vth)
        if harmful.any():
            raise FastSNNError(f"layer {i} ({layer.kind}): the CUBA voltage could fall to -{int(down[harmful].max())} "
                               f"over {lif_net.timesteps} steps, where Lava's 24-bit register saturates ({VOLTAGE_MAX}) "
                               f"and then fires early; {consumer} has no such register and would compute other "
                               "spikes: keep --format netx for this network")
