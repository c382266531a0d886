"""Conversion: a trained :class:`~fastsnn_lava.models.QuantNet` → integer :class:`~fastsnn_lava.ir.Network`.

Per layer the integer codes that training used (:meth:`QuantNet.codes`, on the grid of
:mod:`~fastsnn_lava.grid`) become
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
positions (the 1/(H·W) lives in the layer's unit, see :mod:`~fastsnn_lava.grid`).
A shortcut becomes an :class:`~fastsnn_lava.ir.Skip`: a projection keeps its
codes; an identity becomes a diagonal synapse (1×1 conv, or square dense) whose
diagonal is its one code ``round(α^j/u)``.

A checkpoint stores these integers when it is written (:mod:`~fastsnn_lava.checkpoint`):
:func:`checkpoint_network` and :func:`from_checkpoint` assemble the stored codes
(:func:`assemble`, no grid arithmetic), and convert only a checkpoint written before it stored them.
"""
from __future__ import annotations

import numpy as np

from . import checkpoint
from .errors import FastSNNError
from .grid import LayerCodes
from .ir import Layer, Network, Skip
from .models import QuantNet
from .neuron import Accumulator, if_neuron

NEURONS = {"signed": "signed_if", "unsigned": "unsigned_if"}
META_KEYS = ("dataset", "arch", "bits", "seed", "classes", "float_test_accuracy", "qann_test_accuracy", "test_samples",
             "finetune")  # the checkpoint meta a converted network keeps


def to_network(model: QuantNet, neuron: str = "signed_if", meta: dict | None = None) -> Network:
    """The integer network of ``model``: its codes on the grid (:meth:`QuantNet.codes`), assembled."""
    return assemble(model, model.codes(), neuron, meta)


def assemble(model: QuantNet, codes: list[LayerCodes], neuron: str = "signed_if", meta: dict | None = None) -> Network:
    """The integer network of ``model``'s architecture holding ``codes`` (no grid arithmetic: the
    integers are taken as they are; a pooled layer's codes are repeated over its P positions)."""
    layers = []
    for layer, lc in zip(model.layers, codes, strict=True):
        s, q = layer.spec, lc.weight
        if s.get("pool"):
            q = q.repeat(layer.pool, axis=1)
        skips = [_skip(sk, q_s, layers[sk["from"] - 1].out_shape)
                 for sk, q_s in zip(layer.skips, lc.skips, strict=True)]
        geometry = {}
        if s["kind"] == "conv":
            st, p = s.get("stride", 1), s.get("padding", 0)
            geometry = dict(stride=(st, st), padding=(p, p), dilation=(1, 1), groups=s.get("groups", 1))
        layers.append(Layer(
            kind=s["kind"], weight=q.astype(np.int64), bias=lc.bias.astype(np.int64),
            neuron=if_neuron(neuron, lc.threshold) if layer.hidden else Accumulator(),
            in_shape=layer.in_shape, out_shape=layer.out_shape, skips=skips, **geometry))
    return Network(input_shape=model.input_shape, layers=layers, bits=model.bits,
                   input_max=model.input_max, meta=dict(meta or {}))


def _skip(sk: dict, q_s: np.ndarray, src_shape: tuple) -> Skip:
    q_s = np.asarray(q_s).astype(np.int64)
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


def checkpoint_network(qann: QuantNet, meta: dict, neuron: str = "signed_if", net_meta: dict | None = None) -> Network:
    """The integer network a checkpoint stores (:func:`fastsnn_lava.checkpoint.load` puts its codes in
    ``meta["_codes"]``), before fine-tuned weights; a checkpoint written before it stored them is
    converted from its QANN once, as then. ``net_meta`` becomes the network's meta."""
    codes = meta.get("_codes")
    return assemble(qann, codes, neuron, net_meta) if codes is not None else to_network(qann, neuron, net_meta)


def from_checkpoint(model_path: str, neuron: str = "signed", trust_pickle: bool = False, finetuned: bool = True) -> Network:
    """The integer network of a checkpoint (``neuron``: signed or unsigned IF), as stored in it
    (:func:`checkpoint_network`). A fine-tuned checkpoint gives its tuned weights unless ``finetuned=False``.
    """
    if neuron not in NEURONS:
        raise FastSNNError(f"--neuron must be 'signed' or 'unsigned', got {neuron!r}")
    qann, _, meta = checkpoint.load(model_path, trust_pickle=trust_pickle)
    net = checkpoint_network(qann, meta, NEURONS[neuron], {k: meta[k] for k in META_KEYS if k in meta})
    return checkpoint.apply_snn(net, meta) if finetuned else net
