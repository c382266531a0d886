"""Tables the commands print and the scripts write into the README, rendered from their records.

``demo_table`` (fastsnn-demo, ``scripts/update_readme.py``) and ``report_summary`` (fastsnn-report,
``scripts/hardware_reports.py``): library code, so that no script or library module imports the
command-line layer (:mod:`fastsnn_lava.cli`).
"""
from __future__ import annotations


def demo_table(rows: list[dict]) -> str:
    """The README's demo table: one row per ``demo.json`` record (accuracies in %, agreements to 0.1 %)."""
    head = ("| model | b | T | float ANN | QANN | SNN reference | SNN on Lava | Lava = reference | "
            "SNN = QANN | wall time |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['bits']} | {r['timesteps']} | {r['ann_accuracy']:.2%} | {r['qann_accuracy']:.2%} | "
            f"{r['reference_accuracy']:.2%} | {r['lava_accuracy']:.2%} ({r['lava_samples']} samples) | "
            f"{r['lava_reference_agreement']:.1%} | {r['qann_agreement']:.1%} | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def report_summary(rec: dict) -> str:
    """fastsnn-report's printout of a report record: one line per layer, then the per-target estimates."""
    est, q = rec["estimates"], rec["estimates"]["qann_baseline"]
    lines = [f"{rec['network']}: {rec['samples']} samples ({rec['inputs']}), T = {rec['timesteps']}, "
             f"{rec['synaptic_layers']} synaptic layers, neurons {rec['neuron']}",
             "| layer | neurons | synapses | cores L2 | +spikes | -spikes | synops | L2 energy (nJ, est.) |",
             "|---|---|---|---|---|---|---|---|"]
    for layer in rec["layers"]:
        a = layer["activity"]
        skip = f" ({layer['skip_synapses']} shortcut)" if layer.get("skip_synapses") else ""
        lines.append(f"| {layer['layer']} {layer['kind']} | {layer['neurons']} | {layer['synapses']}{skip} | "
                     f"{layer['cores'].get('loihi2', '-')} | {a['spikes_pos']:.1f} | {a['spikes_neg']:.1f} | "
                     f"{a['synops']:.0f} | {layer['energy_pj']['loihi2']['total'] * 1e-3:.3g} |")
    for n in ("loihi2", "loihi1"):
        if n in est:
            e = est[n]
            lines.append(f"{n} (estimate): {e['cores']} cores on {e['chips']} chip(s); {e['dynamic_energy_uj']:.4g} µJ "
                         f"dynamic + {e['static_energy_uj']:.4g} µJ static per inference; latency "
                         f"{e['latency_us']:.4g} µs ({e['latency_steps']} steps); {e['throughput_per_s']:.4g} inf/s")
    lines.append(f"QANN on a 45 nm accelerator (estimate): {q['energy_uj']:.4g} µJ ({q['macs']:.0f} MACs); "
                 f"QANN / Loihi 2 dynamic = {rec['ratio_qann_over_loihi2']['dynamic']:.3g}")
    if "accuracy" in rec:
        lines.append("accuracy: " + ", ".join(f"{k} {v:.2%}" for k, v in rec["accuracy"].items()))
    return "\n".join(lines)
