"""Vanilla netx files of CUBA LIF layers: write (``--neuron cuba``) and read (also slayer's).

The written file is what unmodified ``lava.lib.dl.netx.hdf5.Network`` loads: every
layer has ``neuron/{type='CUBA', iDecay, vDecay, vThMant, refDelay=1, gradedSpike=False}``
(lava-netx.md §3, §5), integer weights and ``bias`` (netx's ``bias_mant``, 6-bit
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

from ..atomic import atomic_path
from ..errors import FastSNNError
from .lava_weights import synapse_verdict
from ..lif import MAX_DELAY, LifLayer, LifNetwork
from .read import _int_array, _scalar, _str
from .schema import FORMAT_VERSION, IR_NEURONS, META_GROUP
from .write import _type

LIF_TYPES = ("CUBA", "LOIHI")
# netx's neuron for a dense layer without a neuron group (hdf5.py create_dense): iDecay 0, vDecay 4096
DEFAULT_NEURON = {"vth": 1 << 18 - 1, "i_decay": 0, "v_decay": 4096}
NETX_UNBUILT = ("pool", "convT", "unpool", "average", "concat")  # hdf5.py raises NotImplementedError for these
ONLY_LIF = "the LIF reference simulates CUBA/LOIHI neurons only"


def write_lif_network(net: LifNetwork, path) -> None:
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
    first_dense = net.layers[0].kind == "dense"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _type(g, "input")
        g.create_dataset("shape", data=np.array((int(np.prod(net.input_shape)),) if first_dense else net.input_shape,
                                                dtype=np.int64))
        k, prev = 1, None
        for layer in net.layers:
            if layer.kind == "dense" and prev == "conv":
                _type(layers.create_group(str(k)), "flatten")
                k += 1
            g = layers.create_group(str(k))
            k, prev = k + 1, layer.kind
            _type(g, layer.kind)
            g.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
            g.create_dataset("weight", data=layer.weight.astype(np.int32))
            g.create_dataset("bias", data=layer.bias.astype(np.int32))
            if layer.kind == "conv":
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.array(getattr(layer, key), dtype=np.int64))
                g.create_dataset("groups", data=np.int64(layer.groups))
            n = g.create_group("neuron")
            n.create_dataset("type", data="CUBA", dtype=h5py.string_dtype("ascii"))
            for key, value in (("iDecay", layer.i_decay), ("vDecay", layer.v_decay), ("vThMant", layer.vth),
                               ("refDelay", 1)):
                n.create_dataset(key, data=np.int64(value))
            n.create_dataset("gradedSpike", data=False)
        m = f.create_group(META_GROUP)
        m.create_dataset("format_version", data=np.int64(FORMAT_VERSION))
        if net.bits is not None:
            m.create_dataset("bits", data=np.int64(net.bits))
        m.create_dataset("timesteps", data=np.int64(net.timesteps))
        m.create_dataset("reset_interval", data=np.int64(net.reset_interval))
        m.create_dataset("input_max", data=np.int64(net.input_max))
        m.create_dataset("input_shape", data=np.array(net.input_shape, dtype=np.int64))
        m.create_dataset("meta", data=json.dumps(net.meta), dtype=h5py.string_dtype("utf-8"))


def is_lif_file(path) -> bool:
    """Whether :func:`read_lif_network` (not the IF reader) reads this netx file: one whose first neuron
    type is CUBA/LOIHI, or any file without the ``/fastsnn`` group (a lava-dl export, whose neurons
    that reader simulates or refuses by name). False for this project's IF files and non-netx files."""
    try:
        with h5py.File(path, "r") as f:
            if "layer" not in f:
                return False
            if META_GROUP not in f:
                return True
            for g in f["layer"].values():
                if "neuron" in g and "type" in g["neuron"]:
                    return _str(g["neuron"]["type"]) in LIF_TYPES
                if _str(g["type"]) in ("dense", "conv"):
                    return False
    except Exception:
        return False
    return False


def _unsupported_neuron(n, where: str, has_meta: bool) -> str | None:
    ntype = _str(n["type"]) if "type" in n else "?"
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
    kind = _str(g["type"])
    if kind in NETX_UNBUILT:
        return f"{where}: layer type '{kind}' is not supported (netx cannot build it either): export without it"
    if kind == "dense_comp" or (kind == "dense" and isinstance(g.get("weight"), h5py.Group)):
        return (f"{where}: complex-valued dense synapses (weight/real, weight/imag) are not supported: "
                f"{ONLY_LIF} with real weights")
    if kind == "dense_rec":
        return f"{where}: recurrent dense layers ('dense_rec') are not supported: export a feed-forward network"
    if kind not in ("input", "dense", "conv", "flatten"):
        return f"{where}: layer type '{kind}' is not supported: use dense, conv or flatten"
    if kind == "conv" and "delay" in g:
        return f"{where}: synaptic delays on a conv layer are not supported (netx ignores them): export without them"
    return _unsupported_neuron(g["neuron"], where, has_meta) if "neuron" in g else None


def _delay(g, where: str, weight: np.ndarray) -> np.ndarray | None:
    """A dense layer's delays as netx's ``DelayDense`` gets them (hdf5.py ``create_dense``): a matrix like
    ``weight`` from one value, one per receiving neuron (length n_out, tried first), one per input
    (length n_in) or a full matrix; clamped to 0..62 when the largest exceeds 62, as netx does."""
    if "delay" not in g:
        return None
    d = _int_array(g, "delay", where)
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


def _neuron(g, where) -> dict:
    if "neuron" not in g:
        return dict(DEFAULT_NEURON)
    n = g["neuron"]
    return {"vth": _scalar(n, "vThMant", where + "/neuron"), "i_decay": _scalar(n, "iDecay", where + "/neuron"),
            "v_decay": _scalar(n, "vDecay", where + "/neuron")}


def read_lif_network(path, timesteps: int | None = None, input_max: int | None = None) -> LifNetwork:
    if not os.path.isfile(path):
        raise FastSNNError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, str(path), timesteps, input_max)
    except FastSNNError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise FastSNNError(f"{path} is not a readable CUBA netx network ({type(e).__name__}: {str(e)[:100]})") from None


def _read(f, path, timesteps, input_max) -> LifNetwork:
    meta_g = f[META_GROUP] if META_GROUP in f else None
    groups = [f["layer"][str(i)] for i in range(len(f["layer"]))]
    for i, g in enumerate(groups):
        problem = _unsupported(g, f"/layer/{i}", meta_g is not None)
        if problem:
            raise FastSNNError(problem)
    if timesteps is None:
        if meta_g is None:
            raise FastSNNError(f"{path} has no /{META_GROUP} group (a slayer export?): pass the time steps per "
                               "sample (--steps)")
        timesteps = _scalar(meta_g, "timesteps", f"/{META_GROUP}")
    R = _scalar(meta_g, "reset_interval", f"/{META_GROUP}") if meta_g is not None and "reset_interval" in meta_g \
        else int(2 ** np.ceil(np.log2(timesteps + 1)))
    meta = json.loads(_str(meta_g["meta"])) if meta_g is not None and "meta" in meta_g else {}
    if input_max is None:
        input_max = _scalar(meta_g, "input_max", f"/{META_GROUP}") if meta_g is not None and "input_max" in meta_g \
            else 255
    bits = _scalar(meta_g, "bits", f"/{META_GROUP}") if meta_g is not None and "bits" in meta_g else None
    if _str(groups[0]["type"]) != "input":
        raise FastSNNError(f"{path}: /layer/0 must be the input layer")
    shape0 = tuple(int(a) for a in _int_array(groups[0], "shape", "/layer/0"))
    input_shape = tuple(int(a) for a in _int_array(meta_g, "input_shape", f"/{META_GROUP}")) \
        if meta_g is not None and "input_shape" in meta_g else shape0
    layers, prev = [], input_shape
    if "neuron" in groups[0]:
        p = _neuron(groups[0], "/layer/0")
        layers.append(LifLayer("identity", None, np.zeros(int(np.prod(shape0)), np.int64), in_shape=prev,
                               out_shape=shape0, **p))
        prev = shape0
    for i, g in enumerate(groups[1:], start=1):
        where, kind = f"/layer/{i}", _str(g["type"])
        if kind == "flatten":
            continue
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{where}: a second '{kind}' layer is not supported: use dense, conv or flatten")
        out_shape = tuple(int(a) for a in _int_array(g, "shape", where))
        w = _int_array(g, "weight", where)
        geo = {}
        if kind == "conv":
            w = w.reshape(w.shape[:4])  # slayer's trailing time axis of size 1
            geo = {k: tuple(int(a) for a in np.broadcast_to(_int_array(g, k, where), (2,)))
                   for k in ("stride", "padding", "dilation")}
            geo["groups"] = _scalar(g, "groups", where)
        else:
            w = w.reshape(int(np.prod(out_shape)), -1)
            geo["delay"] = _delay(g, where, w)
        bias = _int_array(g, "bias", where) if "bias" in g else np.zeros(1, np.int64)
        if bias.size == 1:
            bias = np.full(out_shape[0] if kind == "conv" else int(np.prod(out_shape)), int(bias.ravel()[0]))
        try:
            layers.append(LifLayer(kind, w, bias, in_shape=prev, out_shape=out_shape, **geo, **_neuron(g, where)))
        except FastSNNError as e:
            raise FastSNNError(f"{where}: {e}") from None
        prev = out_shape
    return LifNetwork(input_shape, layers, int(timesteps), int(R), int(input_max), bits, meta)
