"""``fastsnn-export --neuron cuba --format nir``: the CUBA LIF network as a NIR graph.

NIR (the Neuromorphic Intermediate Representation, PyPI ``nir``, https://neuroir.org) describes a
network as a graph of continuous-time primitives that snnTorch, Norse, Rockpool, Sinabs, SpiNNaker2,
Xylo … import. This module writes the network that :func:`fastsnn_lava.cuba.to_cuba` builds (Lava's
CUBA LIF with ``iDecay = 4096``, ``vDecay = 0``, reset to zero, binary spikes, a never-firing read-out;
the integers of :mod:`fastsnn_lava.lif`) as a ``nir.NIRGraph`` in NIR's HDF5 file (``nir.write``).
It needs no Lava.

**Nodes** (layer l = 1..L, the names as written; shapes carry no batch axis, as NIR's never do)::

    input       Input, the sample's shape: (C, H, W) or (N,)
    flatten<l>  Flatten(start_dim=0, end_dim=-1) before a dense layer whose input is not flat
    conv<l>     Conv2d(weight W int64 (C_out, C_in/groups, kH, kW), bias b int64 (C_out,), stride,
                padding, dilation, groups, input_shape = (H, W))
    affine<l>   Affine(weight W int64 (N_out, N_in), bias b int64 (N_out,))
    if<l>       IF(r = 1, v_threshold = vThMant + 1/2, v_reset = 0), one value per neuron, the
                layer's output shape: (C, H, W) after a conv, (N,) after a dense synapse
    readout     the output layer's IF: v_threshold = 2^17 - 1/2 (Lava's vThMant 2^17 - 1: never fires)
    output      Output, the read-out's shape

``W`` and ``b`` are the netx file's integers (``bias`` = netx's ``bias_mant``), edges are a chain.

**Time step and units.** The time unit of the graph is one Lava step: ``dt = 1``. NIR's IF is
``dv/dt = R·I`` with ``I`` the synapse node's output ``W·x + b``; integrated over one step with the
input held for the step (the raw sample ``x`` and the bias are currents, constant over a step; a spike
is a Dirac pulse of unit area that moves ``v`` by ``R·W_ij`` at once), it gives
``v(t) = v(t-1) + W·s(t) + b``. Lava computes, with ``iDecay = 4096`` and ``vDecay = 0``
(``cuba_step``: ``u = a_in << 6``, ``v += u + (b << 6)``), the same sum in 6-bit units, so
**NIR's v = Lava's v / 64**, ``R = 1``, and weights and biases stay the file's integers.

**Threshold.** Lava fires when ``v > vThMant << 6``; v being a multiple of 64, that is
``v/64 >= vThMant + 1 = ϑ``. NIR's IF fires when ``v > v_threshold``; with
``v_threshold = vThMant + 1/2 = ϑ - 1/2`` an integer v fires exactly when Lava's does, whether a
consumer compares with ``>`` (NIR's definition) or ``>=``, and half-integers are exact in float32.

**Reset.** ``v_reset = 0``: Lava's LIF resets to zero and the overshoot is lost, as in NIR's IF.
Every state starts at 0 for each sample (netx's ``LIFReset`` every ``reset_interval`` steps): a
consumer resets all nodes before each sample and feeds the raw integer sample (0..``input_max``)
to ``input`` at each of the ``timesteps`` steps.

**Read-out.** Lava's output layer never fires: its membrane after T steps, ``64·Σ_t (W·s(t) + b)``,
is the result. In the graph that layer is the IF node ``readout`` (it does not fire within the
bound :func:`~fastsnn_lava.cuba.to_cuba` checks, ``|Σ_t| < 2^17 - 1``); **the class scores are its
membrane v after ``timesteps`` steps** (= Lava's v / 64), the ``output`` node carries its (zero)
spikes. NIR's integrator ``I`` would output v itself, but neither Norse 1.1.0 nor snnTorch 1.0.0
imports an ``I`` node, while both import IF. The graph's ``metadata`` repeats this
(``readout``, ``readout_node``, ``timesteps``, ``dt``, ``lava_voltage_scale``).

**Where NIR's continuous time differs from Lava's discrete update.** A simulator that steps the
graph with ``dt = 1`` (Norse's IF, any forward-Euler or per-step integrator of NIR's IF) computes the
integers of :mod:`fastsnn_lava.lif`, Lava's (``tests/test_nir.py`` runs Norse on the digits test set;
snnTorch 1.0.0 imports an IF node as a leaky ``snn.Leaky(beta=0.9)``, not NIR's IF). A consumer that solves
NIR's ODEs in continuous time would differ in these respects, all of them Lava's discretisation:

1. *Crossing inside a step.* The first layer's current ``W·x + b`` and every layer's bias are
   constant over a step. Continuous time fires at the instant v crosses ``v_threshold``, resets and
   keeps integrating the rest of the step: a constant current I > 0 fires every
   ``(ϑ - 1/2)/I`` time units, possibly several times in one step. Lava tests only at the end of the
   step and drops what arrived after the crossing: one spike every ``⌈ϑ/I⌉`` steps. Spike-driven
   currents without a bias arrive at once and agree.
2. *Simultaneous pulses.* Lava sums all spikes of a step before the threshold test; in continuous
   time pulses of mixed sign at one instant have no defined order (one could fire before the other
   arrives). NIR leaves it open; a stepped simulator sums, as Lava does.
3. *No synaptic delay.* NIR edges are instantaneous: layer l's spike at step t drives layer l+1 at
   step t, so T steps suffice. Lava's netx pipeline delays each layer by one step (T + L steps per
   sample); :mod:`fastsnn_lava.lif` indexes each layer's own steps, which is what NIR computes.
4. *Unbounded arithmetic.* Lava's 24-bit current wraps and its voltage saturates; NIR has neither.
   ``to_cuba`` refuses a network whose current could wrap, and :func:`check` one whose voltage could
   saturate low and climb back to fire (:func:`fastsnn_lava.cuba.check_voltage`; the netx export keeps
   it, Lava and the reference saturating alike), so they agree on what it exports.

**Refused** (one line, :class:`~fastsnn_lava.errors.FastSNNError`): the signed IF (its -1 spikes and
reset by subtracting θ are neither in NIR's IF, LIF nor CubaLIF, which spike {0, 1} and reset to
v_reset), the unsigned IF (reset by subtraction and the initial membrane θ/2 have no NIR parameter),
residual networks (their shortcuts exist only with the signed IF: the CUBA mapping has none), and in a
:class:`~fastsnn_lava.ir.Network` of CUBA LIF neurons: leaky layers (``iDecay != 4096`` or ``vDecay != 0``, whose
fixed-point decay NIR's LIF/CubaLIF reproduce only approximately), synaptic delays, identity input
layers, a conv bias that varies within a channel (NIR's Conv2d has one bias per channel), and a hidden
voltage that could saturate Lava's register and still fire (item 4).
"""
from __future__ import annotations

import numpy as np

from ..atomic import atomic_path
from ..cuba import check_voltage
from ..errors import FastSNNError
from ..ir import Layer, Network, reset_window
from ..neuron import CubaLIF
from .base import Format, hdf5_keys

DT = 1.0            # the graph's time unit: one Lava step
VOLTAGE_SCALE = 64  # Lava's u and v are in 6-bit units: Lava's v = 64 · NIR's v
READOUT = "readout"

RESIDUAL = ("--format nir cannot hold a residual network: its shortcuts exist only with the signed IF neuron "
            "(the CUBA mapping has no skip synapses), whose -1 spikes and reset by subtraction NIR's IF/LIF/CubaLIF "
            "nodes cannot express: export it with --format netx")


def refusal(neuron: str) -> str:
    """The one-line reason why NIR cannot hold a network of ``neuron`` (``signed`` or ``unsigned``)."""
    if neuron == "unsigned":
        why = ("the unsigned IF resets by subtracting θ and starts at θ/2, while NIR's IF/LIF/CubaLIF nodes reset "
               "to v_reset and start at 0")
    else:
        why = ("the signed IF fires -1 spikes and resets by subtracting θ, while NIR's IF/LIF/CubaLIF nodes spike "
               "{0, 1} and reset to v_reset")
    return f"--format nir cannot hold the {neuron} IF neuron: {why}: export with --neuron cuba or keep --format netx"


def _nir():
    try:
        import nir
    except ImportError:
        raise FastSNNError("--format nir needs the 'nir' package: pip install nir") from None
    return nir


def check(net: Network) -> None:
    """Refuse, in one line, what a NIR graph cannot hold: IF neurons, residual networks, leaky or delayed layers,
    a voltage whose saturation could change a spike."""
    if net.family == "if":
        if net.has_skips:
            raise FastSNNError(RESIDUAL)
        raise FastSNNError(refusal("signed" if net.layers[0].signed else "unsigned"))
    for i, layer in enumerate(net.layers, start=1):
        where = f"layer {i} ({layer.kind})"
        if layer.kind == "identity":
            raise FastSNNError(f"{where}: an identity (input-neuron) layer has no NIR synapse: export the network "
                               "with fastsnn-export --neuron cuba")
        if layer.delay is not None:
            raise FastSNNError(f"{where}: synaptic delays are not exported to NIR: export without delays")
        if layer.neuron.i_decay != 4096 or layer.neuron.v_decay != 0:
            raise FastSNNError(f"{where}: a leaky CUBA layer (iDecay {layer.neuron.i_decay}, vDecay "
                               f"{layer.neuron.v_decay}) is not "
                               "exported: NIR's IF is exact only for iDecay 4096 and vDecay 0 (as --neuron cuba "
                               "writes), and NIR's LIF/CubaLIF approximate Lava's fixed-point decay")
        if layer.kind == "conv" and _channel_bias(layer) is None:
            raise FastSNNError(f"{where}: its bias varies within a channel, but NIR's Conv2d has one bias per "
                               "channel: export a per-channel bias")
    check_voltage(net, "NIR's IF")


def _channel_bias(layer) -> np.ndarray | None:
    """A conv layer's bias per channel (None when a per-neuron bias varies within a channel)."""
    b = layer.bias
    c = layer.out_shape[0]
    if b.size == c:
        return b.reshape(c)
    per = b.reshape(layer.out_shape).reshape(c, -1)
    return per[:, 0].copy() if (per == per[:, :1]).all() else None


def _neurons(nir, shape: tuple, vth: int):
    full = np.full(shape, vth + 0.5, dtype=np.float64)
    return nir.IF(r=np.ones(shape, dtype=np.float64), v_threshold=full, v_reset=np.zeros(shape, dtype=np.float64))


def to_nir(lif_net: Network):
    """The NIR graph of a CUBA network (see the module docstring for the mapping); refuses what NIR
    cannot hold (an ``ir.Network`` of IF neurons, residual networks, leaky or delayed layers)."""
    check(lif_net)
    nir = _nir()
    nodes = {"input": nir.Input(input_type={"input": np.array(lif_net.input_shape)})}
    names = ["input"]
    prev = lif_net.input_shape
    last = len(lif_net.layers)
    for i, layer in enumerate(lif_net.layers, start=1):
        w = np.asarray(layer.weight, dtype=np.int64)
        if layer.kind == "dense":
            if len(prev) > 1:
                nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": np.array(prev)}, start_dim=0, end_dim=-1)
                names.append(f"flatten{i}")
            syn = f"affine{i}"
            nodes[syn] = nir.Affine(weight=w.reshape(layer.num_neurons, -1),
                                    bias=np.asarray(layer.bias, dtype=np.int64).reshape(-1))
        else:
            syn = f"conv{i}"
            nodes[syn] = nir.Conv2d(input_shape=tuple(int(a) for a in prev[1:]), weight=w,
                                    stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                                    groups=layer.groups, bias=_channel_bias(layer).astype(np.int64))
        neuron = READOUT if i == last and layer.neuron.never_fires else f"if{i}"
        nodes[neuron] = _neurons(nir, layer.out_shape, layer.neuron.vth)
        names += [syn, neuron]
        prev = layer.out_shape
    nodes["output"] = nir.Output(output_type={"output": np.array(prev)})
    names.append("output")
    meta = {
        "producer": "fastsnn-lava",
        "neuron": "cuba",
        "timesteps": int(lif_net.timesteps),
        "dt": DT,
        "input_max": int(lif_net.input_max),
        "input": "the raw integer sample (0..input_max) as a current, the same at each of the timesteps steps; "
                 "every state 0 before each sample",
        "readout": "voltage" if lif_net.readout == "voltage" else "spikes",
        "readout_node": READOUT if lif_net.readout == "voltage" else f"if{last}",
        "readout_note": (f"the class scores are the membrane v of node '{READOUT}' after timesteps steps "
                         "(it never fires); Lava's v is lava_voltage_scale times it")
        if lif_net.readout == "voltage" else "the class scores are the spike counts of the last IF node",
        "lava_voltage_scale": VOLTAGE_SCALE,
        "threshold": "v_threshold = Lava's vThMant + 1/2 (integer v: > and >= agree)",
    }
    if lif_net.bits is not None:
        meta["bits"] = int(lif_net.bits)
    if "cuba_threshold" in lif_net.meta:
        meta["cuba_threshold"] = str(lif_net.meta["cuba_threshold"])
    edges = list(zip(names[:-1], names[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(lif_net: Network, path) -> None:
    """Write :func:`to_nir`'s graph to ``path`` (NIR's HDF5 file, ``nir.write``), atomically."""
    graph = to_nir(lif_net)
    nir = _nir()
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)


def from_nir(graph) -> Network:
    """The CUBA network of a graph :func:`to_nir` wrote (its node names, ``IF`` nodes, metadata)."""
    meta, nodes = dict(graph.metadata), graph.nodes
    if meta.get("producer") != "fastsnn-lava" or "timesteps" not in meta:
        raise FastSNNError("this NIR graph was not written by fastsnn-export --format nir: only those are read")
    T = int(meta["timesteps"])
    layers, prev = [], tuple(int(a) for a in np.asarray(nodes["input"].input_type["input"]).ravel())
    input_shape, i = prev, 1
    while f"affine{i}" in nodes or f"conv{i}" in nodes:
        neuron = nodes.get(f"if{i}", nodes.get(READOUT))
        out_shape = tuple(int(a) for a in np.shape(neuron.v_threshold))
        cell = CubaLIF(int(np.asarray(neuron.v_threshold).ravel()[0] - 0.5), 4096, 0)
        if f"affine{i}" in nodes:
            syn = nodes[f"affine{i}"]
            layers.append(Layer("dense", np.asarray(syn.weight), np.asarray(syn.bias), cell, prev, out_shape))
        else:
            syn = nodes[f"conv{i}"]
            geo = {k: tuple(int(a) for a in np.broadcast_to(getattr(syn, k), (2,)))
                   for k in ("stride", "padding", "dilation")}
            layers.append(Layer("conv", np.asarray(syn.weight), np.asarray(syn.bias), cell, prev, out_shape,
                                groups=int(syn.groups), **geo))
        prev, i = out_shape, i + 1
    info = {k: meta[k] for k in ("cuba_threshold",) if k in meta}
    return Network(input_shape, layers, meta.get("bits"), int(meta["input_max"]), dict(info, neuron="cuba"),
                   timesteps=T, reset_interval=reset_window(T))


def read_nir(path) -> Network:
    """Read a NIR file :func:`write_nir` wrote back into its CUBA network."""
    try:
        graph = _nir().read(str(path))
    except FastSNNError:
        raise
    except Exception as e:  # h5py/nir errors of a file that is not a NIR graph
        raise FastSNNError(f"{path} is not a readable NIR graph ({type(e).__name__}: {str(e)[:100]})") from None
    return from_nir(graph)


__all__ = ["to_nir", "write_nir", "from_nir", "read_nir", "check", "refusal", "RESIDUAL"]


class NirGraph(Format):
    name = "nir"
    summary = "NIR graph"

    def detect(self, path) -> bool:
        return "node" in hdf5_keys(path)

    def read(self, path, **options) -> Network:
        return read_nir(path)

    def check(self, net: Network) -> None:
        check(net)

    def save(self, net: Network, path) -> None:
        write_nir(net, path)


HANDLER = NirGraph()
