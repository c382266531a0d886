"""Vanilla netx files of CUBA LIF layers: write (``--neuron cuba``) and read (also slayer's).

The written file is what unmodified ``lava.lib.dl.netx.hdf5.Network`` loads: every
layer has ``neuron/{type='CUBA', iDecay, vDecay, vThMant, refDelay=1, gradedSpike=False}``
(as netx's ``get_neuron_params`` reads it, lava-dl v0.6.0 ``src/lava/lib/dl/netx/hdf5.py``),
integer weights and ``bias`` (netx's ``bias_mant``, 6-bit
units), a ``flatten`` group before the first dense after a conv. The ``/fastsnn``
group (ignored by netx) records ``timesteps``, ``reset_interval``, ``input_max``,
``input_shape``, ``bits`` and ``meta`` with ``neuron = "cuba"``.

:func:`read_lif_network` reads such a file or one exported by lava-dl's slayer
(``CUBA`` or ``LOIHI`` neurons; float weights holding integers; an ``input`` layer
with a neuron becomes an identity layer, a dense layer without a neuron netx's
default non-leaky integrator; a dense layer's ``delay`` as netx's ``DelayDense``). A slayer file
has no ``/fastsnn``: pass ``timesteps``. Before anything else it refuses, in one line naming the
feature, what the LIF reference does not simulate: SDNN (sigma-delta) and resonate-and-fire
neurons, complex-valued or recurrent dense layers, delays on conv layers, and the layer types netx
cannot build either (``pool``, ``convT``, ``unpool``, ``average``, ``concat``).
"""
from __future__ import annotations

import json
import os

import h5py
import numpy as np

from ..errors import FastSNNError
from ..ir import MAX_DELAY, Layer, Network
from ..neuron import CubaLIF
from .h5 import int_array, read_geometry, scalar, text
from .lava_weights import synapse_verdict
from .layout import write_layout
from .schema import (BIAS_KEY, CUBA_KEYS, DEFAULT_NEURON, DELAY_KEY, FLATTEN_TYPE, INPUT_TYPE, IR_NEURONS,
                     LAYER_GROUP, LIF_TYPES, META_GROUP, NETX_UNBUILT, NEURON_GROUP, SHAPE_KEY, TYPE_KEY, WEIGHT_KEY)

ONLY_LIF = "the LIF reference simulates CUBA/LOIHI neurons only"


def check_lif_file(net: Network) -> None:
    """Refuse what a vanilla CUBA netx file cannot hold or netx would not load exactly."""
    net.require("cuba", "a vanilla CUBA netx file (--neuron cuba)")
    for i, layer in enumerate(net.layers, start=1):
        if layer.kind == "identity" or layer.delay is not None:
            what = "identity (input-neuron) layers" if layer.kind == "identity" else "synaptic delays"
            raise FastSNNError(f"layer {i}: {what} are read, not written")
        if not np.any(layer.weight):
            raise FastSNNError(f"layer {i}: all weights are zero, which netx cannot load: retrain or drop the layer")
        if layer.kind == "dense" and (layer.weight.max() > 254 or layer.weight.min() < -256):
            raise FastSNNError(f"layer {i}: dense weights outside [-256, 254] are clipped by netx: quantize to 8 bits")
        # what netx + Lava's Dense/Conv really compute (lava_weights.py): raw inputs, then binary spikes
        verdict = synapse_verdict(layer.kind, layer.weight, 0, net.input_max if i == 1 else 1)
        if not verdict.exact:
            raise FastSNNError(f"layer {i}: {verdict.reason}")


def write_lif_network(net: Network, path) -> None:
    """Write a CUBA network as a vanilla netx file (:mod:`.layout`, neuron group ``CUBA``)."""
    check_lif_file(net)
    write_layout(net, path)


def is_lif_file(path) -> bool:
    """Whether :func:`read_lif_network` (not the IF reader) reads this netx file: one whose first neuron
    type is CUBA/LOIHI, or any file without the ``/fastsnn`` group (a lava-dl export, whose neurons
    that reader simulates or refuses by name). False for this project's IF files and non-netx files."""
    try:
        with h5py.File(path, "r") as f:
            if LAYER_GROUP not in f:
                return False
            if META_GROUP not in f:
                return True
            for g in f[LAYER_GROUP].values():
                if NEURON_GROUP in g and TYPE_KEY in g[NEURON_GROUP]:
                    return text(g[NEURON_GROUP][TYPE_KEY]) in LIF_TYPES
                if text(g[TYPE_KEY]) in ("dense", "conv"):
                    return False
    except Exception:
        return False
    return False


def _unsupported_neuron(n, where: str, has_meta: bool) -> str | None:
    ntype = text(n[TYPE_KEY]) if TYPE_KEY in n else "?"
    if ntype in LIF_TYPES:
        return None
    if ntype == "SDNN":
        return f"{where}: SDNN neurons (sigma-delta, graded messages) are not supported: {ONLY_LIF}"
    if "RF" in ntype:
        return (f"{where}: resonate-and-fire neurons ('{ntype}', complex/resonator dynamics) are not supported: "
                f"{ONLY_LIF}")
    if ntype in IR_NEURONS and not has_meta:
        return (f"{where}: neuron type '{ntype}' is this project's IF neuron, but the file has no /{META_GROUP} "
                "group: re-export it with fastsnn-export")
    return f"{where}: neuron type '{ntype}' is not supported: {ONLY_LIF}"


def _unsupported(g, where: str, has_meta: bool) -> str | None:
    """Why the LIF reference cannot simulate the group ``/layer/<i>`` (one line naming the feature), or None."""
    kind = text(g[TYPE_KEY])
    if kind in NETX_UNBUILT:
        return f"{where}: layer type '{kind}' is not supported (netx cannot build it either): export without it"
    if kind == "dense_comp" or (kind == "dense" and isinstance(g.get(WEIGHT_KEY), h5py.Group)):
        return (f"{where}: complex-valued dense synapses (weight/real, weight/imag) are not supported: "
                f"{ONLY_LIF} with real weights")
    if kind == "dense_rec":
        return f"{where}: recurrent dense layers ('dense_rec') are not supported: export a feed-forward network"
    if kind not in (INPUT_TYPE, "dense", "conv", FLATTEN_TYPE):
        return f"{where}: layer type '{kind}' is not supported: use dense, conv or flatten"
    if kind == "conv" and DELAY_KEY in g:
        return f"{where}: synaptic delays on a conv layer are not supported (netx ignores them): export without them"
    return _unsupported_neuron(g[NEURON_GROUP], where, has_meta) if NEURON_GROUP in g else None


def _delay(g, where: str, weight: np.ndarray) -> np.ndarray | None:
    """A dense layer's delays as netx's ``DelayDense`` gets them (hdf5.py ``create_dense``): a matrix like
    ``weight`` from one value, one per receiving neuron (length n_out, tried first), one per input
    (length n_in) or a full matrix; clamped to 0..62 when the largest exceeds 62, as netx does."""
    if DELAY_KEY not in g:
        return None
    d = int_array(g, DELAY_KEY, where)
    n_out, n_in = weight.shape
    if d.size and d.max() > MAX_DELAY:
        d = np.clip(d, 0, MAX_DELAY)
    if d.size and d.min() < 0:
        raise FastSNNError(f"{where}: negative delays ({d.min()}) cannot run: delays are 0..{MAX_DELAY} steps")
    if d.size == 1:
        return np.full(weight.shape, int(d.ravel()[0]))
    if d.ndim == 1 and d.size in (n_out, n_in):
        return np.repeat(d.reshape(-1, 1), n_in, 1) if d.size == n_out else np.repeat(d.reshape(1, -1), n_out, 0)
    if d.shape == weight.shape:
        return d
    raise FastSNNError(f"{where}: delay of shape {d.shape} fits neither the {n_out} neurons nor the {n_in} inputs "
                       f"of the weight {weight.shape}: export one delay per neuron")


def _neuron(g, where) -> CubaLIF:
    if NEURON_GROUP not in g:
        return CubaLIF(**DEFAULT_NEURON)
    n = g[NEURON_GROUP]
    return CubaLIF(**{field: scalar(n, key, f"{where}/{NEURON_GROUP}") for field, key in CUBA_KEYS.items()})


def read_lif_network(path, timesteps: int | None = None, input_max: int | None = None) -> Network:
    if not os.path.isfile(path):
        raise FastSNNError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, str(path), timesteps, input_max)
    except FastSNNError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise FastSNNError(f"{path} is not a readable CUBA netx network ({type(e).__name__}: {str(e)[:100]})") from None


def _read(f, path, timesteps, input_max) -> Network:
    meta_g = f[META_GROUP] if META_GROUP in f else None
    groups = [f[LAYER_GROUP][str(i)] for i in range(len(f[LAYER_GROUP]))]
    for i, g in enumerate(groups):
        problem = _unsupported(g, f"/layer/{i}", meta_g is not None)
        if problem:
            raise FastSNNError(problem)
    if timesteps is None:
        if meta_g is None:
            raise FastSNNError(f"{path} has no /{META_GROUP} group (a slayer export?): pass the time steps per "
                               "sample (--steps)")
        timesteps = scalar(meta_g, "timesteps", f"/{META_GROUP}")
    R = scalar(meta_g, "reset_interval", f"/{META_GROUP}") if meta_g is not None and "reset_interval" in meta_g \
        else int(2 ** np.ceil(np.log2(timesteps + 1)))
    meta = json.loads(text(meta_g["meta"])) if meta_g is not None and "meta" in meta_g else {}
    if input_max is None:
        input_max = scalar(meta_g, "input_max", f"/{META_GROUP}") if meta_g is not None and "input_max" in meta_g \
            else 255
    bits = scalar(meta_g, "bits", f"/{META_GROUP}") if meta_g is not None and "bits" in meta_g else None
    if text(groups[0][TYPE_KEY]) != INPUT_TYPE:
        raise FastSNNError(f"{path}: /layer/0 must be the input layer")
    shape0 = tuple(int(a) for a in int_array(groups[0], SHAPE_KEY, "/layer/0"))
    input_shape = tuple(int(a) for a in int_array(meta_g, "input_shape", f"/{META_GROUP}")) \
        if meta_g is not None and "input_shape" in meta_g else shape0
    layers, prev = [], input_shape
    if NEURON_GROUP in groups[0]:
        layers.append(Layer("identity", None, np.zeros(int(np.prod(shape0)), np.int64), _neuron(groups[0], "/layer/0"),
                            in_shape=prev, out_shape=shape0))
        prev = shape0
    for i, g in enumerate(groups[1:], start=1):
        where, kind = f"/layer/{i}", text(g[TYPE_KEY])
        if kind == FLATTEN_TYPE:
            continue
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{where}: a second '{kind}' layer is not supported: use dense, conv or flatten")
        out_shape = tuple(int(a) for a in int_array(g, SHAPE_KEY, where))
        w = int_array(g, WEIGHT_KEY, where)
        geo = {}
        if kind == "conv":
            w = w.reshape(w.shape[:4])  # slayer's trailing time axis of size 1
            geo = read_geometry(g, where)
        else:
            w = w.reshape(int(np.prod(out_shape)), -1)
            geo[DELAY_KEY] = _delay(g, where, w)
        bias = int_array(g, BIAS_KEY, where) if BIAS_KEY in g else np.zeros(1, np.int64)
        if bias.size == 1:
            bias = np.full(out_shape[0] if kind == "conv" else int(np.prod(out_shape)), int(bias.ravel()[0]))
        try:
            layers.append(Layer(kind, w, bias, _neuron(g, where), in_shape=prev, out_shape=out_shape, **geo))
        except FastSNNError as e:
            raise FastSNNError(f"{where}: {e}") from None
        prev = out_shape
    try:
        return Network(input_shape, layers, bits, int(input_max), meta, timesteps=int(timesteps), reset_interval=int(R))
    except FastSNNError as e:
        raise FastSNNError(f"{path}: {e}") from None
