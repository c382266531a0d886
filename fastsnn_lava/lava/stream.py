"""Stream N samples through one compiled netx network and read each sample's output: the loop of both Lava runners.

Sample k is held by a :class:`~.process.SampleSource` at steps ``k·R + 1 … k·R + T`` (R the reset
interval); the last of the L blocks (reset offset L + 1) ends sample k's T active steps at step
``e_k = k·R + L + T``, so ``(n − 1)·R + L + T`` steps run in all. The output is read at those ends:

* ``sum`` / ``voltage``: the value at step ``e_k`` (the accumulator's running sum sent on ``out``,
  or the never-firing CUBA layer's membrane ``v`` through a ``Monitor`` probe);
* ``spikes``: the spike count of the window's T active steps, ``Σ_{t = e_k − T + 1..e_k} s(t)``.

The runtime runs ``chunk`` windows at a time (all at once when None) with a progress bar, and is
always stopped, also on an exception or Ctrl-C.
"""
from __future__ import annotations

import warnings

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.proc.io.sink import RingBuffer as SinkBuffer
from lava.proc.monitor.process import Monitor

from ..progress import bar as progress_bar
from .process import SampleSource


def stream(lava_net, data: np.ndarray, timesteps: int, reset_interval: int, readout: str, cfg,
           chunk: int | None = None, progress: bool = False) -> tuple[np.ndarray, dict]:
    """``(outputs (n, n_out) int64 in Lava's layout, timing facts)`` of ``data`` (n samples, Lava layout)."""
    T, R, L, n = timesteps, reset_interval, len(lava_net.layers), len(data)
    total = (n - 1) * R + L + T
    src = SampleSource(data=data, timesteps=T, reset_interval=R)
    src.s_out.connect(lava_net.inp)
    out_neuron = lava_net.layers[-1].neuron
    if readout == "voltage":
        probe = Monitor()
        probe.probe(out_neuron.v, total)
    else:
        probe = SinkBuffer(shape=lava_net.out.shape, buffer=total)
        lava_net.out.connect(probe.a_in)
    done, step = 0, total if chunk is None else chunk * R
    try:
        with progress_bar(total=total, unit="step", desc="lava-sim", disable=not progress, leave=False) as bar:
            while done < total:
                steps = min(step, total - done)
                with warnings.catch_warnings():  # model discovery's noise; the map names the models
                    warnings.filterwarnings("ignore", message="Cannot import module")
                    lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                done += steps
                bar.update(steps)
        if readout == "voltage":  # (total, *shape), row t-1 = step t
            trace = np.asarray(probe.get_data()[out_neuron.name]["v"]).reshape(total, -1).T
        else:  # (n_out, total), column t-1 holds step t
            trace = probe.data.get().reshape(-1, total)
    finally:
        lava_net.stop()
    ends = np.arange(n) * R + L + T
    if readout == "spikes":
        out = np.stack([trace[:, e - T:e].sum(1) for e in ends])
    else:
        out = trace[:, ends - 1].T
    return out.astype(np.int64), {"timesteps": T, "reset_interval": R, "synaptic_layers": L, "steps_run": total,
                                  "steps_per_sample": T + L}
