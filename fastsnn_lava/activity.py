"""Activity of a network per inference, counted on the reference simulation.

For each synaptic layer l, averaged over the samples (one inference = the T active
steps of one sample):

* ``input_events``: messages into the layer, ``Σ_t Σ_i |s_i(t)|`` over its input
  neurons i (a signed spike counts once whichever its sign); for the first layer the
  graded input, one message per nonzero input value per step (``T · nnz(x)``);
* ``synops``: synaptic operations, ``Σ_t Σ_i |s_i(t)| · fanout_i`` (every synapse of
  the layer's connectivity, zero weights included, as a dense encoding stores them);
* ``spikes_pos`` / ``spikes_neg``: the layer's +1 and −1 spikes (0 for a read-out layer
  that never fires);
* ``neuron_updates``: ``neurons · T``;
* ``qann_macs`` / ``qann_macs_nonzero``: the quantized ANN's multiply-accumulates on a
  conventional accelerator, all of them (= synapses) or only those with a nonzero input
  activation; ``qann_adds``: one bias add per neuron; ``qann_zero_fraction``: the share
  of zero activations entering the layer.

Works on a signed/unsigned IF :class:`~fastsnn_lava.ir.Network` (spikes from
:func:`~fastsnn_lava.reference.snn_forward`, levels from ``qann_forward``) and on a
CUBA :class:`~fastsnn_lava.lif.LifNetwork` (spikes from :func:`~fastsnn_lava.lif.lif_forward`;
its "QANN" inputs are the spike counts).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .ir import Network
from .lif import LifNetwork, lif_forward
from .reference import qann_forward, snn_forward

KEYS = ("input_events", "synops", "spikes_pos", "spikes_neg", "neuron_updates", "qann_macs", "qann_macs_nonzero",
        "qann_adds", "qann_zero_fraction")


def fanout(layer) -> torch.Tensor:
    """Synapses leaving each input neuron of ``layer``, shaped like one input sample."""
    if layer.kind == "identity":
        return torch.ones(layer.in_shape, dtype=torch.float64)
    if layer.kind == "dense":
        return torch.full(layer.in_shape, float(layer.num_neurons), dtype=torch.float64)
    with torch.enable_grad():  # d(Σ conv(x, 1))/dx_i = the number of outputs x_i reaches
        x = torch.ones(1, *layer.in_shape, dtype=torch.float64, requires_grad=True)
        F.conv2d(x, torch.ones(layer.weight.shape, dtype=torch.float64), None, layer.stride, layer.padding,
                 layer.dilation, layer.groups).sum().backward()
    return x.grad[0]


def _sum_per_sample(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[0], -1).sum(1)


def _layer_counts(layer, events: torch.Tensor, nonzero_in: torch.Tensor, pos, neg, T: int) -> dict:
    """Per-sample counts (B,) for one layer; ``events`` (B, *in): Σ_t |s_in|; ``nonzero_in`` (B, *in): QANN input ≠ 0."""
    fo = fanout(layer).reshape(1, -1)
    ev = events.reshape(len(events), -1).to(torch.float64)
    nz = nonzero_in.reshape(len(nonzero_in), -1).to(torch.float64)
    n_in = ev.shape[1]
    synapses = float(fo.sum())
    return {"input_events": ev.sum(1), "synops": (ev * fo).sum(1), "spikes_pos": pos, "spikes_neg": neg,
            "neuron_updates": torch.full((len(ev),), float(layer.num_neurons * T)),
            "qann_macs": torch.full((len(ev),), synapses), "qann_macs_nonzero": (nz * fo).sum(1),
            "qann_adds": torch.full((len(ev),), float(layer.num_neurons)),
            "qann_zero_fraction": 1 - nz.sum(1) / n_in}


def _batch(net, x) -> list:
    T = net.timesteps
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    rows = []
    if isinstance(net, Network):
        x = x.reshape(-1, *net.input_shape)
        tr = snn_forward(net, x, keep_spikes=True)
        levels = qann_forward(net, x).levels
        ins = [T * (x != 0)] + [s.abs().sum(0) for s in tr.spikes]
        nonzero = [x != 0] + [k != 0 for k in levels]
        for i, layer in enumerate(net.layers):
            if i < len(tr.spikes):
                s = tr.spikes[i]
                pos, neg = _sum_per_sample((s > 0).sum(0)), _sum_per_sample((s < 0).sum(0))
            else:
                pos = neg = torch.zeros(len(x))
            rows.append(_layer_counts(layer, ins[i], nonzero[i], pos, neg, T))
        return rows
    tr = lif_forward(net, x, keep_spikes=True)
    seq = tr.inputs.to(torch.float64)  # (T, B, *input)
    ins = [(seq != 0).sum(0)] + [s.sum(0) for s in tr.spikes]
    for i, layer in enumerate(net.layers):
        last_silent = i == len(net.layers) - 1 and net.readout == "voltage"
        pos = torch.zeros(len(tr.out)) if last_silent else _sum_per_sample(tr.spikes[i].sum(0)).to(torch.float64)
        rows.append(_layer_counts(layer, ins[i], ins[i] != 0, pos, torch.zeros(len(tr.out)), T))
    return rows


def measure(net: Network | LifNetwork, x, batch_size: int = 256) -> list[dict]:
    """Mean per-inference activity per layer over the samples ``x`` (see the module docstring)."""
    sums, n = None, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            rows = _batch(net, x[start:start + batch_size])
            rows = [{k: float(v.sum()) for k, v in r.items()} for r in rows]
            sums = rows if sums is None else [{k: a[k] + b[k] for k in a} for a, b in zip(sums, rows)]
            n += len(x[start:start + batch_size])
    return [{k: v / n for k, v in r.items()} for r in sums]
