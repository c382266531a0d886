"""Run a vanilla CUBA netx file with unmodified ``lava.lib.dl.netx.hdf5.Network``.

No project neuron type is involved: if :func:`.loader.install_neuron_types` patched
netx in this process, the original ``get_neuron_params`` is restored while the
network is built, so what runs is exactly what stock lava-dl 0.6.0 builds. The
samples stream through one compiled network in windows of R steps, as in
:mod:`.runner` (``hdf5.Network(net_config=path, input_message_bits=8,
reset_interval=R, reset_offset=1)``; the source sends sample k at steps
``k·R+1 … k·R+T``; the loop is :func:`.stream.stream`, shared with :mod:`.runner`). The output
layer is read out as in :mod:`fastsnn_lava.lif`:
its membrane ``v`` (a ``Monitor`` probe) at the window's last active step, or its
spike count over the window's T active steps.
"""
from __future__ import annotations

import contextlib

import numpy as np
from lava.lib.dl.netx import hdf5
from lava.magma.core.run_configs import Loihi2SimCfg

from ..hardware import input_message_bits
from ..netx.cuba import read_lif_network
from . import loader
from .process import SampleSource, model_map
from .stream import stream


@contextlib.contextmanager
def stock_netx():
    """netx exactly as shipped: undo the project's neuron-type wrapper for the duration."""
    patched = hdf5.Network.get_neuron_params
    hdf5.Network.get_neuron_params = staticmethod(loader._original)
    try:
        yield
    finally:
        hdf5.Network.get_neuron_params = patched


def build(path, timesteps: int | None = None):
    """(netx Network built by stock netx, its CUBA :class:`~fastsnn_lava.ir.Network`) for a CUBA netx file."""
    net = read_lif_network(path, timesteps)
    with stock_netx():
        lava_net = hdf5.Network(net_config=str(path), input_message_bits=input_message_bits(net.input_max),
                                reset_interval=net.reset_interval, reset_offset=1)
    return lava_net, net


def run_vanilla(path, x: np.ndarray, timesteps: int | None = None, hw_run: bool = False) -> tuple[np.ndarray, dict]:
    """Outputs ``(N, n_out)`` of the CUBA network at ``path`` for raw inputs ``x``.

    On Lava's CPU simulator (``Loihi2SimCfg``), or with ``hw_run`` on Loihi 2
    (``Loihi2HwCfg``, needs lava-loihi; untested here: nobody on the project has a chip).
    """
    lava_net, net = build(path, timesteps)
    if net.layers[0].kind == "identity":
        from ..errors import FastSNNError
        raise FastSNNError(f"{path} has an input layer with a neuron (slayer's input block), whose window offset "
                           "this runner does not align: use the reference simulation for it")
    if any(layer.delay is not None for layer in net.layers):
        from ..errors import FastSNNError
        raise FastSNNError(f"{path} has synaptic delays, which carry spikes across the sample windows this runner "
                           "streams: use the reference simulation for it")
    data = loader.lava_input(net, x)
    n = len(data)
    if hw_run:
        from lava.magma.core.run_configs import Loihi2HwCfg
        cfg = Loihi2HwCfg(exception_proc_model_map={SampleSource: model_map("fixed_pt")[SampleSource]})
    else:
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map("fixed_pt"))
    out, info = stream(lava_net, data, net.timesteps, net.reset_interval, net.readout, cfg)
    if len(net.output_shape) == 3:  # Lava's (W,H,C) back to torch's flatten order
        w_, h_, c_ = net.output_shape[2], net.output_shape[1], net.output_shape[0]
        out = out.reshape(n, w_, h_, c_).transpose(0, 3, 2, 1).reshape(n, -1)
    return out, info
