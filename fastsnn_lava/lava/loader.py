"""Build a Lava network from a fastsnn-lava netx file with netx's own blocks.

netx's ``Network`` builds every layer through ``Network.get_neuron_params``,
called by class name, so a subclass override has no effect (lava-netx.md §13).
:func:`install_neuron_types` wraps that static method once: the neuron types
``SIGNED_IF``, ``UNSIGNED_IF`` and ``ACCUMULATE`` map to this project's
processes, every other type goes to netx's original. The file is validated
by :func:`fastsnn_lava.netx.read_network` before any Lava process is built.
"""
from __future__ import annotations

import numpy as np
from lava.lib.dl.netx import hdf5

from ..hardware import check_network, load_target
from ..netx import read_network
from ..netx.schema import IR_NEURONS, META_GROUP
from .process import Accumulator, SignedIF

# graded spikes: ±1 needs > 0 message bits on the receiving synapse (lava-netx.md §9)
SPIKE_MESSAGE_BITS = 2
INPUT_MESSAGE_BITS = 8

_original = hdf5.Network.get_neuron_params


def _get_neuron_params(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6):
    ntype = neuron_config["type"]
    if ntype not in IR_NEURONS:
        return _original(neuron_config, input=input, reset_interval=reset_interval, reset_offset=reset_offset,
                         spike_exp=spike_exp)
    meta = neuron_config.f.file[META_GROUP]
    params = {"timesteps": int(meta["timesteps"][()]),
              "reset_interval": int(reset_interval if reset_interval is not None else meta["reset_interval"][()]),
              "reset_offset": int(reset_offset), "bias_key": "bias"}
    if IR_NEURONS[ntype] == "accumulate":
        return dict(params, neuron_proc=Accumulator, num_message_bits=24)
    return dict(params, neuron_proc=SignedIF, theta=int(neuron_config["theta"]),
                signed=IR_NEURONS[ntype] == "signed_if", num_message_bits=SPIKE_MESSAGE_BITS)


def install_neuron_types() -> None:
    """Teach netx the project's neuron types (idempotent)."""
    if hdf5.Network.get_neuron_params is not _get_neuron_params:
        hdf5.Network.get_neuron_params = staticmethod(_get_neuron_params)


def load_network(path, hw: str | None = "loihi2"):
    """(netx Network, integer Network, reset interval R) for a fastsnn-lava netx file.

    The file is validated (keys, shapes, and unless ``hw`` is None the target's integer
    ranges and membrane bound) before any Lava process is built.

    Block ``j`` (0-based) of the netx network gets reset offset ``j + 2``: the source
    sends sample k from step ``k·R + 1`` and each synapse adds one step of delay.
    """
    net = read_network(path)
    if hw:
        check_network(net, load_target(hw))
    install_neuron_types()
    from ..netx.schema import reset_interval
    R = reset_interval(net.timesteps)
    lava_net = hdf5.Network(net_config=str(path), input_message_bits=INPUT_MESSAGE_BITS,
                            reset_interval=R, reset_offset=1)
    return lava_net, net, R


def lava_input(net, x: np.ndarray) -> np.ndarray:
    """Raw inputs (N, *input_shape) in the layout netx's first block expects."""
    x = np.asarray(x).reshape(len(x), *net.input_shape)
    if net.layers[0].kind == "dense":
        return x.reshape(len(x), -1).astype(np.int32)
    return x.transpose(0, 3, 2, 1).astype(np.int32)  # (C,H,W) → Lava's (W,H,C)
