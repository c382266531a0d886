"""Run N samples through one compiled Lava network of a netx IF file and read the integer outputs.

One compile, one runtime: the samples stream through the pipelined network
(sample k enters at step ``k·R + 1``) in chunks of ``RunSteps`` on the same
runtime, with a progress bar (:func:`.stream.stream`, the loop shared with
:mod:`.vanilla`).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.run_configs import Loihi2SimCfg

from .loader import lava_input, load_network
from .process import model_map
from .stream import stream


def run_lava(path, x: np.ndarray, chunk: int = 32, progress: bool = True,
             hw: str | None = "loihi2", hw_run: bool = False) -> tuple[np.ndarray, dict]:
    """Integer outputs ``(N, n_out)`` of the netx network at ``path`` for raw inputs ``x``.

    Also returns timing facts: T, the reset interval R, the number of synaptic
    layers L, and the steps run.
    """
    if hw_run:
        from ..errors import FastSNNError
        raise FastSNNError("SIGNED_IF and ACCUMULATE have no NeuroCore model: running them on Loihi 2 needs a "
                           "microcode neuron model that only Intel's lava-loihi can supply; export with "
                           "--neuron cuba for a network Loihi 2 runs natively")
    lava_net, net, R = load_network(path, hw)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map("fixed_pt"))
    # the accumulator (block L-1, offset L+1) sends its running sum: read at each window's last active step
    return stream(lava_net, lava_input(net, x), net.timesteps, R, net.readout, cfg, chunk, progress)
