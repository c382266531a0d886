"""fastsnn-report: neurons, synapses, cores, activity and estimated energy/latency of a netx network."""
from __future__ import annotations

import sys

from .common import check_outputs, integer, parser, real, run_cli


def summary(rec: dict) -> str:
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


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    p = parser("fastsnn-report", "Per-layer neurons, synapses, cores, measured activity and estimated energy, "
               "latency and throughput on Loihi 2 and Loihi 1, against the quantized ANN on a 45 nm accelerator.",
               "fastsnn-report net.h5 --dataset digits --hw loihi2 --json r.json --plot r.png")
    p.add_argument("network", help="netx HDF5 file: fastsnn-export's (any --neuron) or a slayer CUBA export")
    p.add_argument("--dataset", default="digits", metavar="NAME", help=f"simulate its test set: {DATASET_HELP}")
    p.add_argument("--input", default=None, help="a .npy array of raw integer inputs (N, *input_shape) instead")
    p.add_argument("--samples", type=integer(1), default=None, help="first N samples (default: all)")
    p.add_argument("--steps", type=integer(1), default=None, help="time steps per sample, for files without /fastsnn")
    p.add_argument("--hw", default="loihi2", help="target whose mapping is checked (name or YAML path)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--plot", default=None, help="write a PNG here")
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import report
        check_outputs({"--json": a.json, "--plot": a.plot}, {"network": a.network, "--input": a.input, "--hw": a.hw})
        rec = report(a.network, a.dataset, a.input, a.hw, a.samples, a.steps, a.json, a.plot)
        print(summary(rec))
    return run_cli("fastsnn-report", go, args)


if __name__ == "__main__":
    sys.exit(main())
