"""Plots people would rather look at than tables: a spike raster of one sample.

Every function returns a matplotlib Figure (Agg backend, no display needed) and
writes a PNG atomically when given a path.
"""
from __future__ import annotations

import numpy as np
import torch

from .ir import Network
from .reference import snn_forward


def _save(fig, path):
    if path:
        from .atomic import atomic_path
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    return fig


def spike_raster(net: Network, x, path: str | None = None, max_neurons: int = 200):
    """Spikes ``s^l(t) ∈ {−1, 0, +1}`` of every hidden layer for one raw input ``x``.

    One panel per hidden layer: time step on the horizontal axis, neuron on the
    vertical axis (the ``max_neurons`` most active neurons), +1 spikes as dark
    ticks and −1 spikes (signed IF retracting an over-fired spike) in red. The
    last panel shows the output layer's accumulated integer current per class.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        tr = snn_forward(net, np.asarray(x)[None], keep_spikes=True)
    hidden = len(tr.spikes)
    fig, axes = plt.subplots(1, hidden + 1, figsize=(2.4 * (hidden + 1), 3.6))
    for i, (ax, s) in enumerate(zip(axes, tr.spikes)):
        s = s[:, 0].reshape(s.shape[0], -1).numpy()  # (T, neurons)
        order = np.argsort(-np.abs(s).sum(0), kind="stable")[:max_neurons]
        s = s[:, order]
        for sign, color in ((1, "black"), (-1, "red")):
            t, n = np.nonzero(s == sign)
            ax.scatter(t + 1, n, marker="|", s=30, color=color, label="+1" if sign > 0 else "−1")
        ax.set_title(f"layer {i + 1} ({net.layers[i].kind})", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_xlim(0.5, s.shape[0] + 0.5)
        ax.set_xticks(range(1, s.shape[0] + 1))
        if i == 0:
            ax.set_ylabel("neuron (most active first)")
    axes[0].legend(loc="upper right", fontsize=7)
    out = tr.out[0].numpy()
    axes[-1].barh(np.arange(len(out)), out, color=["C1" if k == out.argmax() else "C0" for k in range(len(out))])
    axes[-1].set_title("output Σ_t I(t)", fontsize=9)
    axes[-1].set_xlabel("integer current")
    axes[-1].set_yticks(range(len(out)))
    fig.suptitle(f"one sample through the SNN (b = {net.bits}, T = {net.timesteps})")
    fig.tight_layout()
    _save(fig, path)
    return fig
