"""A one-page PNG of a hardware report (matplotlib, Agg backend): where the energy goes, per layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_report(rec: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path
    layers = rec["layers"]
    names = [f"{layer['layer']}\n{layer['kind']}" + "".join(f"\n+skip {j}" for j in layer.get("skips_from", []))
             for layer in layers]
    x = np.arange(len(layers))
    loihi2 = rec["estimates"]["loihi2"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax = axes[0, 0]
    bottom = np.zeros(len(layers))
    for part, color in (("synops", "#4c72b0"), ("neuron_updates", "#dd8452"), ("messages", "#55a868")):
        vals = np.array([e[part] for e in loihi2["energy_per_layer_pj"]]) * 1e-3
        ax.bar(x - 0.2, vals, 0.4, bottom=bottom, color=color, label=f"Loihi 2: {part.replace('_', ' ')}")
        bottom += vals
    ax.bar(x + 0.2, np.array(rec["estimates"]["qann_baseline"]["energy_per_layer_pj"]) * 1e-3, 0.4,
           color="#8c8c8c", label="QANN, 45 nm MACs")
    ax.set(xticks=x, xticklabels=names, ylabel="nJ per inference (estimate)", title="Energy per layer")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    pos = [layer["activity"]["spikes_pos"] for layer in layers]
    neg = [layer["activity"]["spikes_neg"] for layer in layers]
    ax.bar(x - 0.2, pos, 0.4, color="#4c72b0", label="+1 spikes")
    ax.bar(x + 0.2, neg, 0.4, color="#c44e52", label="-1 spikes")
    ax.set(xticks=x, xticklabels=names, ylabel="spikes per inference (measured, reference simulation)",
           title=f"Spikes per layer (T = {rec['timesteps']})")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    targets = [n for n in ("loihi2", "loihi1") if n in rec["estimates"]]
    for j, n in enumerate(targets):
        ax.bar(x + (j - 0.5) * 0.4, [layer["cores"][n] for layer in layers], 0.4, label=n)
    ax.set(xticks=x, xticklabels=names, ylabel="cores", title="Cores per layer (partition estimate)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    labels, dyn, static = [], [], []
    for n in targets:
        labels.append(n)
        dyn.append(rec["estimates"][n]["dynamic_energy_uj"])
        static.append(rec["estimates"][n]["static_energy_uj"])
    q = rec["estimates"]["qann_baseline"]
    labels += ["QANN 45 nm", "QANN 45 nm\nnonzero only"]
    dyn += [q["energy_uj"], q["energy_nonzero_uj"]]
    static += [0, 0]
    xs = np.arange(len(labels))
    ax.bar(xs, dyn, color="#4c72b0", label="dynamic")
    ax.bar(xs, static, bottom=dyn, color="#bbbbbb", label="static (board)")
    for xi, d, s in zip(xs, dyn, static):
        ax.text(xi, d + s, f"{d + s:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set(xticks=xs, xticklabels=labels, ylabel="µJ per inference (estimate, log scale)",
           title=f"Total: Loihi 2 latency {loihi2['latency_us']:.3g} µs, {loihi2['throughput_per_s']:.3g} inf/s")
    ax.legend(fontsize=8)
    fig.suptitle(f"{Path(rec['network']).name}: {rec['samples']} samples, estimates from Loihi 1 per-op figures "
                 "(Davies 2018) and 45 nm arithmetic (Horowitz 2014)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
