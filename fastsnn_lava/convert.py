"""Conversion: a trained :class:`~fastsnn_lava.models.QuantNet` → integer :class:`~fastsnn_lava.ir.Network`.

Per layer the integer codes that training used (:meth:`QuantLayer.codes`) become
the weights ``q``, biases ``c`` and thresholds ``θ`` (θ = α / u, i.e. θ = α in
the layer's current unit). BatchNorm was folded into the weights before
quantization-aware training, so nothing is left to fold here. The hidden
neurons are signed IF neurons unless ``neuron="unsigned_if"``; the classifier
accumulates.
"""
from __future__ import annotations

import numpy as np

from .ir import Layer, Network
from .models import QuantNet


def to_network(model: QuantNet, neuron: str = "signed_if", meta: dict | None = None) -> Network:
    layers = []
    for layer, u_in in zip(model.layers, model.units_in()):
        q, c, theta = layer.codes(u_in)
        s = layer.spec
        geometry = {}
        if s["kind"] == "conv":
            st, p = s.get("stride", 1), s.get("padding", 0)
            geometry = dict(stride=(st, st), padding=(p, p), dilation=(1, 1), groups=1)
        layers.append(Layer(
            kind=s["kind"], weight=q.numpy().astype(np.int64), bias=c.numpy().astype(np.int64),
            neuron=neuron if layer.hidden else "accumulate", threshold=theta,
            in_shape=layer.in_shape, out_shape=layer.out_shape, **geometry))
    return Network(input_shape=model.input_shape, layers=layers, bits=model.bits,
                   input_max=model.input_max, meta=dict(meta or {}))
