"""Build a Lava network from a fastsnn-lava netx file with netx's own blocks.

netx's ``Network`` builds every layer through ``Network.get_neuron_params``,
called by class name, so a subclass override has no effect (lava-dl v0.6.0 ``src/lava/lib/dl/netx/hdf5.py``).
:func:`install_neuron_types` wraps that static method once: the neuron types
``SIGNED_IF``, ``UNSIGNED_IF`` and ``ACCUMULATE`` map to this project's
processes, every other type goes to netx's original. The file is validated
by :func:`fastsnn_lava.netx.read_network` before any Lava process is built.

netx connects blocks strictly in sequence and does not know the residual
extension (``/layer/k/skip``, export/FORMAT.md). :func:`connect_skips` adds each
shortcut after netx has built the blocks: the source block's neurons →
:class:`~fastsnn_lava.lava.process.SpikeDelay` (``d = l − j − 1`` steps, absent
when 0) → a Lava ``Conv`` or ``Dense`` synapse → the target block's neurons,
whose ``a_in`` then sums two synapses (as netx's own recurrent block does).
Timing: block j−1 (IR layer j) sends the spikes of its window phase p at step
``k·R + j + 1 + p``; after d delay steps and one synapse they arrive at
``k·R + j + d + 2 + p``, which is phase p of block l−1 (offset ``l + 1``) exactly
when ``d = l − j − 1``. So the target sums ``W·s^{l−1}(t) + S·s^j(t)`` of the
same step t, as the reference does.
"""
from __future__ import annotations

import numpy as np
from lava.lib.dl.netx import hdf5

from ..hardware import check_network, input_message_bits, load_target
from ..netx import read_network
from ..netx.write import check_netx_weights
from ..netx.layout import layer_groups
from ..netx.schema import IR_NEURONS, SKIP_GROUP
from .process import Accumulator, SignedIF, SpikeDelay

# graded spikes: ±1 needs > 0 message bits on the receiving synapse (with 0, lava-nc v0.10.0
# src/lava/proc/dense/models.py and conv/models.py cast the input to bool: −1 would act as +1)
SPIKE_MESSAGE_BITS = 2
INPUT_MESSAGE_BITS = 8  # netx's default graded input width; a wider input range gets hardware.input_message_bits

_original = hdf5.Network.get_neuron_params
# while build_netx builds a network: its validated ir.Network and {/layer number: ir.Layer}
_BUILDING = {"layers": None, "net": None}


def _get_neuron_params(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6):
    """netx's neuron parameters of one block: this project's types from the validated network (θ, signed,
    T, R), every other type from netx's original."""
    if neuron_config["type"] not in IR_NEURONS:
        return _original(neuron_config, input=input, reset_interval=reset_interval, reset_offset=reset_offset,
                         spike_exp=spike_exp)
    group = neuron_config.f.parent
    layers = _BUILDING["layers"]
    if layers is None:  # netx alone: refuse, naming what it would get wrong
        skips = any(SKIP_GROUP in g for g in group.parent.values())
        what = "residual skips, which netx alone would drop" if skips else "this project's neuron types"
        raise NotImplementedError(f"{group.file.filename} has {what}: load it with "
                                  "fastsnn_lava.lava.loader.load_network")
    layer, net = layers[int(group.name.rsplit("/", 1)[1])], _BUILDING["net"]
    params = {"timesteps": net.timesteps,
              "reset_interval": int(reset_interval if reset_interval is not None else net.reset_interval),
              "reset_offset": int(reset_offset), "bias_key": "bias"}
    if layer.accumulates:
        return dict(params, neuron_proc=Accumulator, num_message_bits=24)
    return dict(params, neuron_proc=SignedIF, theta=layer.threshold, signed=layer.signed,
                num_message_bits=SPIKE_MESSAGE_BITS)


def install_neuron_types() -> None:
    """Teach netx the project's neuron types (idempotent)."""
    if hdf5.Network.get_neuron_params is not _get_neuron_params:
        hdf5.Network.get_neuron_params = staticmethod(_get_neuron_params)


def build_netx(path, net, message_bits: int, reset_interval: int):
    """netx's Network of the file at ``path``, whose validated description is ``net`` (the source of θ)."""
    install_neuron_types()
    _BUILDING.update(layers={k: net.layers[i - 1] for i, k in layer_groups(net).items()}, net=net)
    try:
        return hdf5.Network(net_config=str(path), input_message_bits=message_bits,
                            reset_interval=reset_interval, reset_offset=1)
    finally:
        _BUILDING.update(layers=None, net=None)


def load_network(path, hw: str | None = "loihi2"):
    """(netx Network, integer Network, reset interval R) for a fastsnn-lava netx file.

    The file is validated (keys, shapes, the synapses netx + Lava carry exactly, and unless ``hw``
    is None the target's integer ranges and membrane bound) before any Lava process is built; the
    neurons' θ and the window come from that validated network, not from the file a second time.

    Block ``j`` (0-based) of the netx network gets reset offset ``j + 2``: the source
    sends sample k from step ``k·R + 1`` and each synapse adds one step of delay.
    """
    net = read_network(path)
    check_netx_weights(net)  # also a file written before export refused what Lava corrupts
    if hw:
        check_network(net, load_target(hw))
    lava_net = build_netx(path, net, input_message_bits(net.input_max), net.reset_interval)
    lava_net.skip_processes = connect_skips(lava_net, net)
    return lava_net, net, net.reset_interval


def _lava_shape(shape) -> tuple:
    """Torch (C,H,W) → Lava (W,H,C); (N,) stays."""
    return tuple(int(a) for a in shape[::-1])


def skip_synapse(skip):
    """The Lava synapse of a shortcut, built as netx builds its blocks (lava-dl v0.6.0
    ``src/lava/lib/dl/netx/hdf5.py``).

    A conv shortcut is built as netx builds a conv block. A dense shortcut is *not* built with
    netx's ``optimize_weight_bits``: netx calls a matrix whose largest code is 0 mixed-sign but does not
    pass the mode on, Lava's Dense then reads it as inhibitory and corrupts it when the least code
    is −2^j (:mod:`fastsnn_lava.netx.lava_weights`). Lava's own ``optimize_weight_bits(W, MIXED)``
    with ``sign_mode=MIXED`` passed to ``Dense`` is exact for every code in [−256, 254].
    """
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.utils.weightutils import SignMode, optimize_weight_bits
    if skip.kind == "dense":
        opt = optimize_weight_bits(np.asarray(skip.weight, dtype=np.int64), SignMode.MIXED)
        return Dense(weights=np.asarray(opt.weights, dtype=np.int64), weight_exp=int(opt.weight_exp),
                     num_weight_bits=int(opt.num_weight_bits), sign_mode=SignMode.MIXED,
                     num_message_bits=SPIKE_MESSAGE_BITS)
    weight = skip.weight[:, :, ::-1, ::-1].transpose((0, 3, 2, 1))  # torch correlation → Lava (out, kW, kH, in)
    return Conv(weight=weight, input_shape=_lava_shape(skip.in_shape), stride=skip.stride[::-1],
                padding=skip.padding[::-1], dilation=skip.dilation[::-1], groups=skip.groups,
                num_message_bits=SPIKE_MESSAGE_BITS)


def skip_delay(index: int, source: int) -> int:
    """Steps a shortcut from layer ``source`` into layer ``index`` must wait: ``index − source − 1``."""
    return index - source - 1


def connect_skips(lava_net, net) -> list:
    """Wire every shortcut of ``net`` into the netx network; returns the added processes."""
    blocks = list(lava_net.layers)
    if len(blocks) != len(net.layers):
        raise AssertionError(f"netx built {len(blocks)} blocks for {len(net.layers)} layers")
    added = []
    for index, layer in enumerate(net.layers, start=1):
        for skip in layer.skips:
            src = blocks[skip.source - 1].neuron.s_out
            delay = skip_delay(index, skip.source)
            if delay:
                line = SpikeDelay(shape=src.shape, delay=delay)
                src.connect(line.a_in)
                src = line.s_out
                added.append(line)
            syn = skip_synapse(skip)
            src.connect(syn.s_in)
            syn.a_out.connect(blocks[index - 1].neuron.a_in)
            added.append(syn)
    return added


def lava_input(net, x: np.ndarray) -> np.ndarray:
    """Raw inputs (N, *input_shape) in the layout netx's first block expects."""
    x = np.asarray(x).reshape(len(x), *net.input_shape)
    if net.layers[0].kind == "dense":
        return x.reshape(len(x), -1).astype(np.int32)
    return x.transpose(0, 3, 2, 1).astype(np.int32)  # (C,H,W) → Lava's (W,H,C)
