"""Batched PyTorch simulation of an integer :class:`~fastsnn_lava.ir.Network`.

Two forward passes over the same integers:

* :func:`qann_forward`, the quantized ANN: layer ``l`` sums its input over the
  T steps in one go, ``A^l = W^l·k^{l-1} + Σ_j S^{l,j}·k^j + T·b^l`` (first layer:
  ``A^1 = T·(W^1·x + b^1)``; ``S^{l,j}`` are the layer's skip synapses), and quantizes
  ``k^l = clip(floor((A^l + θ^l/2) / θ^l), 0, T)``; the last layer returns ``A^L``. A tie
  (``A^l + θ^l/2`` a multiple of θ^l) rounds up. These are the integers the training forward
  pass computes (:meth:`fastsnn_lava.models.QuantLayer.accumulator`), ties included.
* :func:`snn_forward`, the spiking network: the same synapses applied to each
  step's spikes, the IF step of :mod:`fastsnn_lava.neuron` per step, and the last
  layer accumulating ``Σ_t I^L(t)``. A skip synapse from layer ``j`` adds
  ``S^{l,j}·s^j(t)``: the source's spikes of the same step t (the Lava loader
  delays the shortcut so that this holds there too). This is the reference that Lava's
  ``fixed_pt`` models must equal exactly.

Where no sequential error occurs, the SNN's spike counts ``N^l`` equal the QANN's
levels ``k^l`` and the outputs are identical. Every value is an integer held in
float64, which represents integers exactly up to 2^53.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .ir import Layer, Network
from .neuron import if_step

DTYPE = torch.float64


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=DTYPE)


def synapse(layer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Synaptic current of ``layer`` (or of a skip) without bias, for a (B, ...) input and ``weight`` as a tensor."""
    if layer.kind == "dense":
        return x.flatten(1) @ weight.T
    return F.conv2d(x.reshape(-1, *layer.in_shape), weight, None, layer.stride, layer.padding,
                    layer.dilation, layer.groups)


class _Synapse:
    """A layer's (or a skip's) weights as torch tensors, applied without bias."""

    def __init__(self, layer):
        self.layer = layer
        self.weight = _tensor(layer.weight)
        shape = (1, -1, 1, 1) if layer.kind == "conv" else (1, -1)
        self.bias = _tensor(layer.bias).view(shape) if isinstance(layer, Layer) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return synapse(self.layer, x, self.weight)


def as_input(net: Network, x) -> torch.Tensor:
    """Raw integer input ``(B, *input_shape)`` as a float64 tensor."""
    x = _tensor(x) if not torch.is_tensor(x) else x.to(DTYPE)
    return x.reshape(-1, *net.input_shape)


@dataclass
class QannTrace:
    levels: list   # k^l per hidden layer, (B, *shape)
    out: torch.Tensor  # A^L, (B, n_out)
    accs: list     # A^l per hidden layer: the integer sum over T steps before quantization


@dataclass
class SnnTrace:
    counts: list   # N^l = Σ_t s^l(t) per hidden layer
    out: torch.Tensor  # Σ_t I^L(t), (B, n_out)
    spikes: list | None = None  # s^l(t), (T, B, *shape), when asked for
    neg_spikes: list | None = None  # number of −1 spikes per hidden layer, (B,)


def skip_sum(layer: Layer, outputs: list, steps: int | None = None, dtype: torch.dtype = DTYPE):
    """Σ_j S^{l,j}·y^j over the layer's skips; ``outputs[j-1]`` is y^j: levels or counts (B, ...), or
    spike trains (T, B, ...) when ``steps`` is given."""
    total = 0
    for skip in layer.skips:
        y, w = outputs[skip.source - 1], torch.as_tensor(np.asarray(skip.weight), dtype=dtype)
        if steps is None:
            total = total + synapse(skip, y, w)
        else:
            cur = synapse(skip, y.reshape(-1, *y.shape[2:]), w)
            total = total + cur.view(steps, -1, *cur.shape[1:])
    return total


def qann_forward(net: Network, x) -> QannTrace:
    """Integer forward pass of the quantized ANN."""
    T = net.timesteps
    a = as_input(net, x)
    levels, accs = [], []
    for i, layer in enumerate(net.layers):
        syn = _Synapse(layer)
        acc = T * (syn(a) + syn.bias) if i == 0 else syn(a) + T * syn.bias
        if layer.skips:
            acc = acc + skip_sum(layer, levels)
        if layer.accumulates:
            return QannTrace(levels, acc, accs)
        a = ((acc + layer.threshold // 2) // layer.threshold).clip(0, T)
        levels.append(a)
        accs.append(acc)
    raise AssertionError("unreachable: the last layer accumulates")


def snn_forward(net: Network, x, keep_spikes: bool = False, timesteps: int | None = None) -> SnnTrace:
    """Simulate the spiking network for T steps on a batch of raw inputs.

    Each layer runs over all T steps before the next one; for a feed-forward
    network this equals step-by-step simulation, also with skips (a skip's source
    has been simulated completely before its target). ``timesteps`` runs T' steps
    instead of ``T = 2^b - 1`` (same thresholds and initial membrane θ/2), for
    accuracy-against-latency sweeps; counts then range over 0..T'.
    """
    T = net.timesteps if timesteps is None else int(timesteps)
    a = as_input(net, x)
    counts, spikes_all, negs = [], [], []
    spikes = None
    sources = {s.source for layer in net.layers for s in layer.skips}
    kept = []  # s^j per hidden layer j while a later skip needs it, else None
    for i, layer in enumerate(net.layers):
        syn = _Synapse(layer)
        if i == 0:
            const = syn(a) + syn.bias
            currents = const.unsqueeze(0).expand(T, *const.shape)
        else:
            flat = spikes.reshape(T * spikes.shape[1], *spikes.shape[2:])
            cur = syn(flat)
            currents = cur.view(T, -1, *cur.shape[1:]) + syn.bias
        if layer.skips:
            currents = currents + skip_sum(layer, kept, T)
        if layer.accumulates:
            return SnnTrace(counts, currents.sum(0), spikes_all if keep_spikes else None, negs)
        v = torch.full_like(currents[0], layer.v_init)
        n = torch.zeros_like(v)
        out = torch.empty_like(currents)
        for t in range(T):
            v, n, out[t] = if_step(v, n, currents[t], layer.threshold, layer.signed)
        spikes = out
        kept.append(out if i + 1 in sources else None)
        counts.append(n)
        negs.append((out < 0).flatten(2).sum((0, 2)))
        if keep_spikes:
            spikes_all.append(out)
    raise AssertionError("unreachable: the last layer accumulates")


def predict(out: torch.Tensor) -> np.ndarray:
    """Class predictions from integer outputs (argmax; the first index wins ties)."""
    return out.argmax(1).cpu().numpy()


def run_batches(net: Network, x: np.ndarray, fn, batch_size: int = 256) -> np.ndarray:
    """Integer outputs ``(N, n_out)`` of ``fn`` (qann_forward or snn_forward), in batches."""
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            outs.append(fn(net, x[start:start + batch_size]).out.numpy())
    return np.concatenate(outs).astype(np.int64)
