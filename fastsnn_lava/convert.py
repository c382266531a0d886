"""Conversion: a trained :class:`~fastsnn_lava.models.QuantNet` → integer :class:`~fastsnn_lava.ir.Network`.

Per layer the integer codes that training used (:meth:`QuantLayer.codes`) become
the weights ``q``, biases ``c`` and thresholds ``θ`` (θ = α / u, i.e. θ = α in
the layer's current unit). Training's forward pass computed its levels from these
integers (:meth:`QuantLayer.accumulator`), so the network's QANN
(:func:`~fastsnn_lava.reference.qann_forward`) gives the levels and predictions training
computed, ties included (``tests/test_ties.py``). BatchNorm was folded into the weights before
quantization-aware training, so nothing is left to fold here. The hidden
neurons are signed IF neurons unless ``neuron="unsigned_if"``; the classifier
accumulates.

A dense layer after global average pooling becomes a dense layer over the
flattened ``(C, H, W)`` input with its code ``q[o, c]`` repeated at the H·W
positions (the 1/(H·W) lives in the layer's unit, see :mod:`~fastsnn_lava.models`).
A shortcut becomes an :class:`~fastsnn_lava.ir.Skip`: a projection keeps its
codes; an identity becomes a diagonal synapse (1×1 conv, or square dense) whose
diagonal is its one code ``round(α^j/u)``.
"""
from __future__ import annotations

import numpy as np

from .ir import Layer, Network, Skip
from .errors import FastSNNError
from .models import QuantNet


def to_network(model: QuantNet, neuron: str = "signed_if", meta: dict | None = None) -> Network:
    layers = []
    for k, (layer, u_in) in enumerate(zip(model.layers, model.units_in())):
        alphas = model.skip_alphas(k)
        q, c, theta = layer.codes(u_in, alphas)
        s = layer.spec
        if s.get("pool"):
            q = q.repeat_interleave(layer.pool, dim=1)
        skips = [_skip(sk, q_s, layers[sk["from"] - 1].out_shape)
                 for sk, (q_s, _) in zip(layer.skips, layer.skip_codes(u_in, alphas))]
        geometry = {}
        if s["kind"] == "conv":
            st, p = s.get("stride", 1), s.get("padding", 0)
            geometry = dict(stride=(st, st), padding=(p, p), dilation=(1, 1), groups=1)
        layers.append(Layer(
            kind=s["kind"], weight=q.numpy().astype(np.int64), bias=c.numpy().astype(np.int64),
            neuron=neuron if layer.hidden else "accumulate", threshold=theta,
            in_shape=layer.in_shape, out_shape=layer.out_shape, skips=skips, **geometry))
    return Network(input_shape=model.input_shape, layers=layers, bits=model.bits,
                   input_max=model.input_max, meta=dict(meta or {}))


def _skip(sk: dict, q_s, src_shape: tuple) -> Skip:
    q_s = q_s.numpy().astype(np.int64)
    kind = sk.get("kind", "identity")
    if kind == "identity":
        n = src_shape[0]
        diag = np.zeros((n, n), np.int64)
        diag[np.arange(n), np.arange(n)] = int(q_s.ravel()[0])
        if len(src_shape) == 1:
            return Skip(source=sk["from"], kind="dense", weight=diag, in_shape=src_shape)
        return Skip(source=sk["from"], kind="conv", weight=diag[:, :, None, None], in_shape=src_shape)
    if kind == "dense":
        return Skip(source=sk["from"], kind="dense", weight=q_s, in_shape=src_shape)
    st, p = sk.get("stride", 1), sk.get("padding", 0)
    return Skip(source=sk["from"], kind="conv", weight=q_s, in_shape=src_shape, stride=(st, st), padding=(p, p))


def from_checkpoint(model_path: str, neuron: str = "signed", trust_pickle: bool = False, finetuned: bool = True) -> Network:
    """The integer network of a checkpoint (``neuron``: signed or unsigned IF).

    A fine-tuned checkpoint gives its tuned weights unless ``finetuned=False``.
    """
    neurons = {"signed": "signed_if", "unsigned": "unsigned_if"}
    if neuron not in neurons:
        raise FastSNNError(f"--neuron must be 'signed' or 'unsigned', got {neuron!r}")
    from . import checkpoint
    qann, _, meta = checkpoint.load(model_path, trust_pickle=trust_pickle)
    keep = ("dataset", "arch", "bits", "seed", "classes", "float_test_accuracy", "qann_test_accuracy", "test_samples",
            "finetune")
    net = to_network(qann, neurons[neuron], {k: meta[k] for k in keep if k in meta})
    return checkpoint.apply_snn(net, meta) if finetuned else net
