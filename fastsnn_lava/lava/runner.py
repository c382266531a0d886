"""Run N samples through one compiled Lava network and read the integer outputs.

One compile, one runtime: the samples stream through the pipelined network
(sample k enters at step ``k·R + 1``) in chunks of ``RunSteps`` on the same
runtime, with a progress bar. The runtime is always stopped, also on an
exception or Ctrl-C.
"""
from __future__ import annotations

import warnings

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer as SinkBuffer

from ..progress import bar as progress_bar
from .loader import lava_input, load_network
from .process import SampleSource, model_map


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
    T, L = net.timesteps, len(net.layers)
    data = lava_input(net, x)
    n = len(data)
    # the accumulator (block L-1, offset L+1) ends sample k's window at step k·R + L + T
    total = (n - 1) * R + L + T
    src = SampleSource(data=data, timesteps=T, reset_interval=R)
    sink = SinkBuffer(shape=lava_net.out.shape, buffer=total)
    src.s_out.connect(lava_net.inp)
    lava_net.out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map("fixed_pt"))
    done = 0
    try:
        with progress_bar(total=total, unit="step", desc="lava-sim", disable=not progress, leave=False) as bar:
            while done < total:
                steps = min(chunk * R, total - done)
                with warnings.catch_warnings():  # model discovery's noise; the map names the models
                    warnings.filterwarnings("ignore", message="Cannot import module")
                    lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                done += steps
                bar.update(steps)
        trace = sink.data.get()  # (n_out, total), column t-1 holds step t
    finally:
        lava_net.stop()
    ends = np.arange(n) * R + L + T  # step of each sample's last accumulation
    out = trace[:, ends - 1].T.astype(np.int64)
    return out, {"timesteps": T, "reset_interval": R, "synaptic_layers": L, "steps_run": total,
                 "steps_per_sample": T + L}
