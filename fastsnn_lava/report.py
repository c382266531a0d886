"""Hardware report: neurons, synapses, cores, activity, and estimated energy and latency.

Every estimate is activity (measured by the reference simulation, :mod:`.activity`)
times a cost constant of a target file (``hardware_configs/*.yaml``), and the record
keeps each constant with its source, so that any number can be recomputed from the
JSON alone (``export/REPORT.md``). Per inference, per target:

    E_dyn    = synops · E_synop + neuron_updates · E_neuron + messages · E_spike
               (messages = Σ_l input_events_l: the graded input and every spike)
    t_step   = max_l [ synops_l / (T · cores_l) · t_synop + neurons_per_core_l · t_neuron ] + t_barrier
    latency  = (T + L) · t_step                   (T active steps + one step per synaptic layer of pipeline fill)
    throughput = 1 / (R · t_step)                  (a new sample every reset interval R)
    E_static = P_static · R · t_step               (static power over one sample's share of time)

A residual shortcut (:class:`~fastsnn_lava.ir.Skip`) is a synapse of the layer it feeds: its
events, synops, synapses and MACs are in that layer's figures (and shown apart as ``skip_*``),
its synapses on that layer's cores; it adds no neuron and no step, so L stays the number of
synaptic layers.

The quantized ANN on a conventional accelerator: ``E_qann = qann_macs · E_mac + qann_adds · E_add``
(every MAC; the zero-skipping variant uses ``qann_macs_nonzero``). The compute-only SNN proxy of
SNN papers, ``synops_1 · E_mac + Σ_{l>1} synops_l · E_add``, is reported beside them, labelled:
it leaves out neuron updates and memory and so under-reports the SNN's energy.
"""
from __future__ import annotations

import numpy as np

from .activity import KEYS, measure, simulate
from .hardware import load_target, need
from .mapping import map_network

TARGETS = ("loihi2", "loihi1")
BASELINE = "cmos45nm"
ESTIMATE = "estimate: activity from the reference simulation × cost constants (sources under 'constants')"


def _constants(target: dict, keys) -> dict:
    return {k: {"value": need(target, "costs", k), **target["sources"].get(k, {})} for k in keys}


def loihi_estimate(layers: list, maps: dict, target: dict, T: int, R: int) -> dict:
    c = {k: need(target, "costs", k) for k in ("energy_per_synop_pj", "energy_per_neuron_update_pj",
                                                "energy_per_spike_pj", "time_per_synop_ns",
                                                "time_per_neuron_update_ns", "barrier_ns", "static_power_w")}
    per_layer, core_times = [], []
    for a, m in zip(layers, maps["layers"]):
        e = {"synops": a["synops"] * c["energy_per_synop_pj"],
             "neuron_updates": a["neuron_updates"] * c["energy_per_neuron_update_pj"],
             "messages": a["input_events"] * c["energy_per_spike_pj"]}
        e["total"] = sum(e.values())
        per_layer.append(e)
        core_times.append(a["synops"] / (T * m["cores"]) * c["time_per_synop_ns"]
                          + m["neurons_per_core"] * c["time_per_neuron_update_ns"])
    step_ns = max(core_times) + c["barrier_ns"]
    dyn_pj = sum(e["total"] for e in per_layer)
    static_pj = c["static_power_w"] * R * step_ns * 1e3  # W · ns = 1e3 pJ
    return {"label": ESTIMATE, "cores": maps["cores"], "chips": maps["chips"],
            "energy_per_layer_pj": per_layer, "dynamic_energy_uj": dyn_pj * 1e-6, "static_energy_uj": static_pj * 1e-6,
            "total_energy_uj": (dyn_pj + static_pj) * 1e-6, "step_time_ns": step_ns,
            "bottleneck_layer": int(np.argmax(core_times)) + 1, "latency_steps": T + len(layers),
            "latency_us": (T + len(layers)) * step_ns * 1e-3, "throughput_per_s": 1e9 / (R * step_ns),
            "constants": _constants(target, c)}


def qann_estimate(layers: list, target: dict) -> dict:
    mac, add = need(target, "costs", "energy_per_mac_pj"), need(target, "costs", "energy_per_add_pj")
    per_layer = [a["qann_macs"] * mac + a["qann_adds"] * add for a in layers]
    nonzero = [a["qann_macs_nonzero"] * mac + a["qann_adds"] * add for a in layers]
    proxy = layers[0]["synops"] * mac + sum(a["synops"] for a in layers[1:]) * add
    return {"label": "estimate: the quantized ANN's MACs and bias adds × 45 nm arithmetic energies (no memory)",
            "macs": sum(a["qann_macs"] for a in layers), "adds": sum(a["qann_adds"] for a in layers),
            "energy_per_layer_pj": per_layer, "energy_uj": sum(per_layer) * 1e-6,
            "energy_nonzero_uj": sum(nonzero) * 1e-6,
            "snn_compute_only_proxy_uj": proxy * 1e-6,
            "snn_compute_only_proxy_label": "SNN-paper proxy: first-layer synops as MACs, the rest as adds; "
                                            "no neuron updates or memory, so it under-reports the SNN",
            "constants": _constants(target, ("energy_per_mac_pj", "energy_per_add_pj"))}


def build_report(net, x, y=None, source: str = "", hw: str = "loihi2", targets=TARGETS) -> dict:
    """The report record (see ``export/REPORT.md``) of ``net`` on raw inputs ``x`` (labels ``y`` optional)."""
    T, L = net.timesteps, len(net.layers)
    R = net.reset_interval
    acts = measure(net, x)
    tgts = {name: load_target(name) for name in dict.fromkeys((hw,) + tuple(targets))}
    maps = {name: map_network(net, t) for name, t in tgts.items()}
    est = {name: loihi_estimate(acts, maps[name], t, T, R) for name, t in tgts.items()}
    base = load_target(BASELINE)
    qann = qann_estimate(acts, base)
    layers = []
    for i, (layer, a) in enumerate(zip(net.layers, acts)):
        m = maps[hw]["layers"][i]
        layers.append({"layer": i + 1, "kind": layer.kind, "neuron": _neuron(net, layer),
                       "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
                       "skips_from": [skip.source for skip in layer.skips],
                       "neurons": m["neurons"], "synapses": m["synapses"], "skip_synapses": m["skip_synapses"],
                       "fan_in": m["fan_in"],
                       "cores": {n: maps[n]["layers"][i]["cores"] for n in tgts},
                       "neurons_per_core": {n: maps[n]["layers"][i]["neurons_per_core"] for n in tgts},
                       "limited_by": {n: maps[n]["layers"][i]["limited_by"] for n in tgts},
                       "activity": a,
                       "energy_pj": {**{n: est[n]["energy_per_layer_pj"][i] for n in tgts},
                                     "qann": qann["energy_per_layer_pj"][i]}})
    totals = {k: sum(a[k] for a in acts) for k in KEYS if k != "qann_zero_fraction"}
    totals.update({k: sum(layer[k] for layer in layers) for k in ("neurons", "synapses", "skip_synapses")})
    rec = {"network": source, "neuron": sorted({_neuron(net, layer) for layer in net.layers}),
           "bits": net.bits, "timesteps": T, "reset_interval": R, "synaptic_layers": L,
           "samples": int(len(x)), "hw": hw, "layers": layers, "totals": totals,
           "estimates": {**est, "qann_baseline": qann},
           "ratio_qann_over_loihi2": {
               "dynamic": qann["energy_uj"] / est["loihi2"]["dynamic_energy_uj"] if "loihi2" in est else None,
               "total": qann["energy_uj"] / est["loihi2"]["total_energy_uj"] if "loihi2" in est else None},
           "notes": ["Every energy and time is an estimate (label and constants with sources in each "
                     "'estimates' entry); no number here is measured on a chip.",
                     "Loihi 2 has no published per-operation energies: loihi2.yaml uses Loihi 1 figures "
                     "(Davies et al. 2018), so the two targets differ only in their mapping and static power.",
                     "Spike alphabet: " + ("signed ternary {-1,0,+1}" if net.family == "if" else "binary {0,1}")
                     + f" at T = {T}; the first layer receives graded input values."]}
    if y is not None:
        from .reference import qann_forward, run_batches
        rec["accuracy"] = {"snn": float((simulate(net, x).argmax(1) == y).mean())}
        if net.family == "if":  # the integer QANN of the file's codes: the trained one unless fine-tuned
            key = "tuned_qann" if "finetune" in net.meta else "qann"
            rec["accuracy"][key] = float((run_batches(net, x, qann_forward).argmax(1) == y).mean())
    return rec


def _neuron(net, layer) -> str:
    if layer is net.layers[-1] and net.readout == "voltage":
        return f"{layer.neuron.name} (read-out voltage)"
    return layer.neuron.name
