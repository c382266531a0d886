"""Activity of a network per inference, counted on the reference simulation.

For each synaptic layer l, averaged over the samples (one inference = the T active
steps of one sample):

* ``input_events``: messages into the layer, ``Σ_t Σ_i |s_i(t)|`` over its input
  neurons i (a signed spike counts once whichever its sign); for the first layer the
  graded input, one message per nonzero input value per step (``T · nnz(x)``);
* ``synops``: synaptic operations, ``Σ_t Σ_i |s_i(t)| · fanout_i`` (every synapse of
  the layer's connectivity, zero weights included, as a dense encoding stores them);
* ``skip_input_events`` / ``skip_synops``: the part of the two above that arrives through
  the layer's residual shortcuts (:class:`~fastsnn_lava.ir.Skip`, 0 without any). A skip
  ``S^{l,j}`` from layer j is one more synapse of layer l with input ``s^j``:
  ``skip_input_events = Σ_j Σ_t Σ_i |s^j_i(t)|`` and
  ``skip_synops = Σ_j Σ_t Σ_i |s^j_i(t)| · fanout(S^{l,j})_i``; ``input_events`` and
  ``synops`` include them, as do the QANN counts below (a skip's MACs are its synapses,
  the nonzero ones those whose source level ``k^j_i ≠ 0``);
* ``spikes_pos`` / ``spikes_neg``: the layer's +1 and −1 spikes (0 for a read-out layer
  that never fires);
* ``neuron_updates``: ``neurons · T``;
* ``qann_macs`` / ``qann_macs_nonzero``: the quantized ANN's multiply-accumulates on a
  conventional accelerator, all of them (= synapses) or only those with a nonzero input
  activation; ``qann_adds``: one bias add per neuron; ``qann_zero_fraction``: the share
  of zero activations entering the layer (over the main input and each skip's source together).

Works on a :class:`~fastsnn_lava.ir.Network` of either neuron family: signed/unsigned IF
(spikes from :func:`~fastsnn_lava.reference.snn_forward`, levels from ``qann_forward``) and
CUBA LIF (spikes from :func:`~fastsnn_lava.lif.lif_forward`; its "QANN" inputs are the spike counts).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .ir import Network
from .engine import Engine
from .lif import lif_forward, run_lif_batches
from .reference import qann_forward, snn_forward

KEYS = ("input_events", "synops", "skip_input_events", "skip_synops", "spikes_pos", "spikes_neg", "neuron_updates",
        "qann_macs", "qann_macs_nonzero", "qann_adds", "qann_zero_fraction")


def fanout(layer) -> torch.Tensor:
    """Synapses leaving each input neuron of ``layer`` (a layer or a skip), shaped like one input sample."""
    if layer.kind == "identity":
        return torch.ones(layer.in_shape, dtype=torch.float64)
    if layer.kind == "dense":  # every output: the rows of the (out, in) weight
        return torch.full(layer.in_shape, float(layer.weight.shape[0]), dtype=torch.float64)
    with torch.enable_grad():  # d(Σ conv(x, 1))/dx_i = the number of outputs x_i reaches
        x = torch.ones(1, *layer.in_shape, dtype=torch.float64, requires_grad=True)
        F.conv2d(x, torch.ones(layer.weight.shape, dtype=torch.float64), None, layer.stride, layer.padding,
                 layer.dilation, layer.groups).sum().backward()
    return x.grad[0]


def _sum_per_sample(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[0], -1).sum(1)


def _layer_counts(layer, inputs: list, pos, neg, T: int) -> dict:
    """Per-sample counts (B,) for one layer.

    ``inputs``: ``(synapse, events, nonzero)`` for the layer's own synapse first, then each skip;
    ``events`` (B, *in): Σ_t |s_in|; ``nonzero`` (B, *in): QANN input ≠ 0.
    """
    B = len(pos)
    c = {k: torch.zeros(B, dtype=torch.float64) for k in ("input_events", "synops", "skip_input_events",
                                                          "skip_synops", "qann_macs", "qann_macs_nonzero")}
    nz_sum, n_in = torch.zeros(B, dtype=torch.float64), 0
    for k, (syn, events, nonzero) in enumerate(inputs):
        fo = fanout(syn).reshape(1, -1)
        ev = events.reshape(B, -1).to(torch.float64)
        nz = nonzero.reshape(B, -1).to(torch.float64)
        ins, ops = ev.sum(1), (ev * fo).sum(1)
        c["input_events"] += ins
        c["synops"] += ops
        if k:
            c["skip_input_events"] += ins
            c["skip_synops"] += ops
        c["qann_macs"] += float(fo.sum())
        c["qann_macs_nonzero"] += (nz * fo).sum(1)
        nz_sum += nz.sum(1)
        n_in += nz.shape[1]
    return {**c, "spikes_pos": pos, "spikes_neg": neg,
            "neuron_updates": torch.full((B,), float(layer.num_neurons * T)),
            "qann_adds": torch.full((B,), float(layer.num_neurons)), "qann_zero_fraction": 1 - nz_sum / n_in}


def _batch(net, x) -> list:
    T = net.timesteps
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    rows = []
    if net.family == "if":
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
            skips = [(sk, ins[sk.source], nonzero[sk.source]) for sk in layer.skips]
            rows.append(_layer_counts(layer, [(layer, ins[i], nonzero[i])] + skips, pos, neg, T))
        return rows
    tr = lif_forward(net, x, keep_spikes=True)
    seq = tr.inputs.to(torch.float64)  # (T, B, *input)
    ins = [(seq != 0).sum(0)] + [s.sum(0) for s in tr.spikes]
    for i, layer in enumerate(net.layers):
        last_silent = i == len(net.layers) - 1 and net.readout == "voltage"
        pos = torch.zeros(len(tr.out)) if last_silent else _sum_per_sample(tr.spikes[i].sum(0)).to(torch.float64)
        rows.append(_layer_counts(layer, [(layer, ins[i], ins[i] != 0)], pos, torch.zeros(len(tr.out)), T))
    return rows


def simulate(net: Network, x) -> np.ndarray:
    """Integer outputs ``(N, n_out)`` of the reference simulation of ``net``'s neuron family: the batched
    IF engine (:mod:`fastsnn_lava.engine`, bit-exact with :func:`~fastsnn_lava.reference.snn_forward`)
    or the CUBA LIF reference (:func:`~fastsnn_lava.lif.run_lif_batches`)."""
    if net.family == "cuba":
        return run_lif_batches(net, x)
    return Engine(net).run(x)


def measure(net: Network, x, batch_size: int = 256) -> list[dict]:
    """Mean per-inference activity per layer over the samples ``x`` (see the module docstring)."""
    sums, n = None, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            rows = _batch(net, x[start:start + batch_size])
            rows = [{k: float(v.sum()) for k, v in r.items()} for r in rows]
            sums = rows if sums is None else [{k: a[k] + b[k] for k in a} for a, b in zip(sums, rows)]
            n += len(x[start:start + batch_size])
    return [{k: v / n for k, v in r.items()} for r in sums]
