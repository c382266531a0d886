"""Lava's CUBA LIF neuron in exact integer arithmetic, and networks made of it.

A vanilla netx network (neuron type ``CUBA`` or ``LOIHI``, as lava-dl's slayer
exports it, or as ``fastsnn-export --neuron cuba`` writes it) is described by
:class:`~fastsnn_lava.ir.Network` of :class:`~fastsnn_lava.neuron.CubaLIF` layers;
:func:`lif_forward` simulates it batched in torch int64,
bit for bit as Lava's ``PyLifResetModelBitAcc`` (lava-nc 0.10.0,
``src/lava/proc/lif/models.py``) with netx's parameters
(``du = iDecay − 1``, ``dv = vDecay``, ``vth = vThMant``, ``bias_exp = 6``):

    decay(x, d) = sign(x) · (|x| · (4096 − d) >> 12)
    u ← wrap₂₄( decay(u, iDecay) + (a_in << 6) )              (u wraps modulo 2^24)
    v ← clip( decay(v, vDecay) + u + (bias << 6), ±(2^23 − 1) )
    s = [v > vThMant << 6];   v ← 0 where s                    (reset to zero, binary spikes)

with u = v = 0 at the start of every sample window (``LIFReset``). ``a_in`` is the
synapse's integer sum ``W·s`` (the first layer: ``W·x`` of the raw graded input).
netx's ``optimize_weight_bits`` makes that sum exact for dense weights that are
integers in [−256, 254] (lava-dl v0.6.0 ``src/lava/lib/dl/netx/utils.py``), except a matrix with no
positive code and a least code
−2^j (and a few more, :mod:`fastsnn_lava.netx.lava_weights`); conv weights are used as written.

The last layer is read out as its membrane ``v`` after the last step when it never
fires (``readout = "voltage"``: a ``vThMant`` of at least 2^17 − 1, or a layer
without a neuron group, for which netx builds a non-leaky integrator), otherwise
as its spike counts (``readout = "spikes"``).

A dense layer may carry netx's synaptic delays ``D`` (``DelayDense``, 0..62 steps):

    a_i(t) = Σ_j W_ij · s_j(t − D_ij),   s_j(t) = 0 for t < 0   (D = 0 without delays)

Time here is the layer's own step within the sample window. Lava runs the layers as a
pipeline (each synapse adds one step, layer l is reset at step l of the window), so
Lava's layer l at window step l + k is this reference's step k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FastSNNError
from .ir import Layer, Network
from .neuron import NEVER_FIRES, VTH_MAX, CubaLIF  # noqa: F401  (the CUBA constants, where the simulation's users look)

STATE_BITS = 24


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    return torch.sign(x) * ((x.abs() * (4096 - d)) >> 12)


def cuba_step(u, v, a_in, neuron: CubaLIF, bias: torch.Tensor):
    """One step of Lava's fixed-point CUBA LIF (:class:`~fastsnn_lava.neuron.CubaLIF`).
    Returns ``(u, v, s)`` (int64 tensors, s in {0, 1})."""
    m = 2 ** (STATE_BITS - 1)
    c = _decay(u, neuron.i_decay) + (a_in << 6)
    w = torch.where(c > m, c - 2 * m, c)
    u = torch.where(w <= -m, c + 2 * m, w)
    v = (_decay(v, neuron.v_decay) + u + (bias << 6)).clamp(-m + 1, m - 1)
    s = v > (neuron.vth << 6)
    return u, torch.where(s, torch.zeros_like(v), v), s.to(torch.int64)


def synapse(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    """``a_in`` of a layer for a batch ``x`` (int64): W·x, or x itself for an identity layer."""
    if layer.kind == "identity":
        return x.reshape(len(x), *layer.out_shape)
    w = torch.as_tensor(layer.weight)
    if layer.kind == "dense":
        return (x.flatten(1) @ w.T).reshape(len(x), *layer.out_shape)
    # conv2d has no int64 kernel on the CPU: float64 holds these sums exactly (|sum| < 2^53)
    out = F.conv2d(x.reshape(-1, *layer.in_shape).double(), w.double(), None, layer.stride, layer.padding,
                   layer.dilation, layer.groups)
    return out.round().to(torch.int64)


def _shift(a: torch.Tensor, d: np.ndarray) -> torch.Tensor:
    """``a`` (T, B, F) with feature f delayed by ``d[f]`` steps: out[t, :, f] = a[t − d_f, :, f], 0 before."""
    out = torch.zeros_like(a)
    for k in np.unique(d):
        idx = torch.as_tensor(np.flatnonzero(d == k))
        if k < len(a):
            out[int(k):, :, idx] = a[:len(a) - int(k), :, idx]
    return out


def synapse_seq(layer: Layer, seq: torch.Tensor) -> torch.Tensor:
    """``a_in`` of a layer for its whole input sequence ``seq`` (T, B, *in_shape) → (T, B, *out_shape):
    ``a_i(t) = Σ_j W_ij · x_j(t − D_ij)`` (see the module docstring; D = 0 without delays)."""
    T, B = seq.shape[:2]
    if layer.delay is None:
        return synapse(layer, seq.reshape(T * B, *seq.shape[2:])).reshape(T, B, *layer.out_shape)
    x, w, d = seq.reshape(T, B, -1), torch.as_tensor(layer.weight), layer.delay
    if (d == d[:, :1]).all():  # one delay per receiving neuron (netx's 1-D "axonal" delays)
        cur = _shift(x @ w.T, d[:, 0])
    elif (d == d[:1, :]).all():  # one delay per input
        cur = _shift(x, d[0]) @ w.T
    else:
        cur = sum(_shift(x, np.full(x.shape[2], k)) @ torch.as_tensor(np.where(d == k, layer.weight, 0)).T
                  for k in np.unique(d))
    return cur.reshape(T, B, *layer.out_shape)


@dataclass
class LifTrace:
    out: torch.Tensor       # (B, n_out): last layer's v (readout voltage) or spike counts
    counts: list            # spike count per neuron per layer, (B, *shape)
    spikes: list | None     # (T, B, *shape) per layer, when asked for
    inputs: torch.Tensor    # the graded input per step, (T, B, *input_shape)
    currents: list | None = None  # u per layer, (T, B, *shape), when asked for
    voltages: list | None = None  # v per layer (after the spike reset), (T, B, *shape), when asked for


def lif_forward(net: Network, x, keep_spikes: bool = False, keep_state: bool = False) -> LifTrace:
    """Simulate ``net`` on raw integer inputs: ``(B, *input_shape)`` held for T steps,
    or a time series ``(B, T', *input_shape)`` (T' = the network's steps).
    ``keep_state`` also keeps every layer's ``u`` and ``v`` at every step."""
    net.require("cuba", "the CUBA LIF reference (lif_forward)")
    x = torch.as_tensor(np.asarray(x)).to(torch.int64)
    T = net.timesteps
    if x.dim() == len(net.input_shape) + 2:
        if x.shape[1] != T:
            raise FastSNNError(f"the input time series has {x.shape[1]} steps, the network runs {T}")
        seq = x.transpose(0, 1)
    else:
        x = x.reshape(-1, *net.input_shape)
        seq = x.unsqueeze(0).expand(T, *x.shape)
    a = seq
    counts, spikes_all, us, vs = [], [], [], []
    for layer in net.layers:
        cur = synapse_seq(layer, a)
        bias = torch.as_tensor(np.broadcast_to(layer.bias.reshape(_bias_shape(layer)), layer.out_shape).copy())
        u = torch.zeros_like(cur[0])
        v = torch.zeros_like(u)
        s = torch.empty_like(cur)
        u_t, v_t = (torch.empty_like(cur), torch.empty_like(cur)) if keep_state else (None, None)
        for t in range(T):
            u, v, s[t] = cuba_step(u, v, cur[t], layer.neuron, bias)
            if keep_state:
                u_t[t], v_t[t] = u, v
        counts.append(s.sum(0))
        if keep_spikes:
            spikes_all.append(s)
        us.append(u_t)
        vs.append(v_t)
        a = s
    out = v.flatten(1) if net.readout == "voltage" else counts[-1].flatten(1)
    return LifTrace(out, counts, spikes_all if keep_spikes else None, seq, us if keep_state else None,
                    vs if keep_state else None)


def _bias_shape(layer: Layer) -> tuple:
    """A conv layer's bias is per channel or per neuron; every other layer's per neuron."""
    return (-1, 1, 1) if layer.kind == "conv" and layer.bias.size == layer.out_shape[0] else layer.out_shape


def run_lif_batches(net: Network, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    outs = [lif_forward(net, x[i:i + batch_size]).out.numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs).astype(np.int64)
