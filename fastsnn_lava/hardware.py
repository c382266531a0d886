"""Hardware targets (``hardware_configs/*.yaml``) and the range checks of export.

A target file lists limits, each with its value and source. :func:`violations`
lists every limit an integer network breaks (layer, quantity, value, limit:
:class:`~fastsnn_lava.violations.Violation`), :func:`limits_report` one line of them per
target (``fastsnn-export --hw none``), and :func:`check_network` raises the first as a
one-line :class:`~fastsnn_lava.errors.FastSNNError` naming the layer, the limit and what
to change. Users can pass their own YAML file for another target.
"""
from __future__ import annotations

from pathlib import Path

import yaml

import numpy as np

from .errors import FastSNNError
from .ir import Network
from .violations import Violation

CONFIG_DIRS = (Path(__file__).resolve().parent.parent / "hardware_configs",
               Path(__file__).resolve().parent / "hardware_configs")


REQUIRED = ("weight_bits", "threshold_bits", "bias_bits", "state_bits")  # what the range checks read
BIT_RANGE = (0, 64)             # a "*_bits" limit: a register or field width
COUNT_RANGE = (1, 2 ** 40)      # any other integer limit: cores, neurons, memory, fan-in/out
MAX_CONFIG_BYTES = 1 << 20      # a target file is a few KiB


def _limit(path, key: str, value):
    """A limit's value, checked: a bool flag, a width in BIT_RANGE or a count in COUNT_RANGE."""
    if isinstance(value, bool):
        return value
    lo, hi = BIT_RANGE if key.endswith("_bits") else COUNT_RANGE
    if not isinstance(value, int) or not lo <= value <= hi:
        raise FastSNNError(f"{path}: limits.{key}.value must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _cost(path, key: str, value) -> float:
    """A cost's value, checked: a finite number ≥ 0 (pJ, ns, W)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise FastSNNError(f"{path}: costs.{key}.value must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _entries(path, cfg: dict, section: str, required: bool) -> dict:
    """``{key: {"value": ..., "source": ...}}`` of a section, each entry a mapping with a value."""
    entries = cfg.get(section)
    if entries is None and not required:
        return {}
    if not isinstance(entries, dict):
        raise FastSNNError(f"{path}: '{section}' must map names to {{value, source}} entries")
    for k, v in entries.items():
        if not isinstance(v, dict) or "value" not in v:
            raise FastSNNError(f"{path}: {section}.{k} must be a mapping with a 'value' (and a 'source')")
    return entries


def load_target(name_or_path: str) -> dict:
    """A target by name (``loihi2``) or by the path of a YAML file, every value checked."""
    from .inputs import regular_file
    path = Path(name_or_path)
    if not path.suffix:
        found = [d / f"{name_or_path}.yaml" for d in CONFIG_DIRS if (d / f"{name_or_path}.yaml").exists()]
        if not found:
            raise FastSNNError(f"unknown hardware target {name_or_path!r}: pass a name from hardware_configs/ "
                               "or the path of a YAML file")
        path = found[0]
    regular_file(path, "hardware config")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise FastSNNError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not a hardware config")
    try:
        cfg = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise FastSNNError(f"{path} is not a YAML file ({type(e).__name__}): see hardware_configs/loihi2.yaml") from None
    if not isinstance(cfg, dict) or "limits" not in cfg:
        raise FastSNNError(f"{path} is not a hardware config (a YAML mapping with 'limits'): "
                           "see hardware_configs/loihi2.yaml")
    raw_limits, raw_costs = _entries(path, cfg, "limits", True), _entries(path, cfg, "costs", False)
    if not raw_limits and not raw_costs:
        raise FastSNNError(f"{path} lists neither limits nor costs: see hardware_configs/loihi2.yaml")
    limits = {k: _limit(path, k, v["value"]) for k, v in raw_limits.items()}
    costs = {k: _cost(path, k, v["value"]) for k, v in raw_costs.items()}
    sources = {k: {"source": str(v.get("source", "")), **({"note": str(v["note"])} if "note" in v else {})}
               for entries in (raw_limits, raw_costs) for k, v in entries.items()}
    return {"name": str(cfg.get("name", path.stem)), "limits": limits, "costs": costs, "sources": sources,
            "path": str(path)}


def need(target: dict, section: str, key: str):
    """``target[section][key]``, or a one-line error saying which key the YAML file lacks."""
    try:
        return target[section][key]
    except KeyError:
        raise FastSNNError(f"hardware target {target['name']!r} ({target.get('path')}) has no {section}.{key}: "
                           f"add it with a value and a source (see hardware_configs/loihi2.yaml)") from None


def membrane_bounds(net: Network) -> list[int]:
    """Per layer, a bound on |v| over the T steps of a sample (integer units).

    A layer's per-step current lies in ``[I_lo, I_hi]``: for the first layer
    ``I = W·x + b`` with ``0 ≤ x ≤ input_max``, for the others ``I = W·s + b`` with
    ``s ∈ {−1, 0, +1}`` (a skip synapse ``S·s^j`` adds its own ``±Σ|S|`` the same way). An IF membrane starts at θ/2, moves by at most
    ``max(|I_lo|, |I_hi|)`` per step and is pulled back by θ when it fires, so
    ``|v| ≤ θ + T·max|I|``; an accumulator's ``|Σ_t I(t)| ≤ T·max|I|``.
    """
    bounds = []
    for i, layer in enumerate(net.layers):
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        pos, neg = np.clip(w, 0, None).sum(1), np.clip(w, None, 0).sum(1)
        if i == 0:
            hi, lo = pos * net.input_max + layer.bias, neg * net.input_max + layer.bias
        else:
            hi, lo = pos - neg + layer.bias, neg - pos + layer.bias
        for skip in layer.skips:
            reach = np.abs(skip.weight.reshape(skip.weight.shape[0], -1)).sum(1)
            hi, lo = hi + reach, lo - reach
        peak = int(max(np.abs(hi).max(), np.abs(lo).max()))
        bounds.append((layer.threshold or 0) + net.timesteps * peak)
    return bounds


def _ranges(target: dict) -> dict:
    """The limits the range checks read; a one-line error naming those a (cost-only) target lacks."""
    missing = [k for k in REQUIRED if k not in target["limits"]]
    if missing:
        raise FastSNNError(f"hardware target {target['name']!r} ({target.get('path')}) has no limits "
                           f"{', '.join(missing)}: it cannot check a network; add them with a value and a source "
                           "(see hardware_configs/loihi2.yaml) or use --hw loihi2")
    return target["limits"]


def _outside(i: int, quantity: str, x: np.ndarray, lo: int, hi: int, message: str) -> Violation | None:
    """A :class:`Violation` of layer ``i`` when a code of ``x`` lies outside ``[lo, hi]`` (its extreme vs the bound)."""
    if not x.size or lo <= x.min() and x.max() <= hi:
        return None
    value, limit = (int(x.max()), hi) if x.max() > hi else (int(x.min()), lo)
    return Violation(i, quantity, value, limit, message)


def _range_violations(net: Network, target: dict):
    """Weight, threshold and bias codes of a signed/unsigned IF network beyond the target's widths."""
    lim, name = _ranges(target), target["name"]
    wmax = 2 ** (lim["weight_bits"] - 1)
    tmax = 2 ** lim["threshold_bits"] - 1
    bmax = 2 ** (lim["bias_bits"] - 1)
    for i, layer in enumerate(net.layers, start=1):
        w, b = layer.weight, layer.bias
        for what, w in [("weights", w)] + [(f"skip weights from layer {s.source}", s.weight) for s in layer.skips]:
            yield _outside(i, what.replace("weights", "weight code"), w, -wmax, wmax - 1,
                           f"layer {i} ({layer.kind}): {what} in [{w.min() if w.size else 0}, "
                           f"{w.max() if w.size else 0}] exceed {name}'s {lim['weight_bits']}-bit weights: retrain "
                           "with 8-bit weight codes")
        if layer.threshold is not None and layer.threshold > tmax:
            yield Violation(i, "threshold", layer.threshold, tmax,
                            f"layer {i} ({layer.kind}): threshold {layer.threshold} exceeds {name}'s "
                            f"{lim['threshold_bits']}-bit threshold: lower the weight resolution of this layer")
        yield _outside(i, "bias code", b, -bmax, bmax - 1,
                       f"layer {i} ({layer.kind}): biases in [{b.min() if b.size else 0}, {b.max() if b.size else 0}] "
                       f"exceed {name}'s {lim['bias_bits']}-bit bias: retrain (bias codes are clipped during training)")


def _if_violations(net: Network, target: dict):
    """Every check of :func:`check_network` on an IF network, in its order (None where one passes)."""
    lim, name = _ranges(target), target["name"]
    yield from _range_violations(net, target)
    yield from message_violations(net, target)
    vmax = 2 ** (lim["state_bits"] - 1) - 1
    for i, (layer, bound) in enumerate(zip(net.layers, membrane_bounds(net)), start=1):
        if bound > vmax:
            yield Violation(i, "membrane bound", bound, vmax,
                            f"layer {i} ({layer.kind}): the membrane could reach {bound} over T = {net.timesteps} "
                            f"steps, beyond {name}'s {lim['state_bits']}-bit state ({vmax}): use fewer bits, "
                            "smaller inputs or a narrower layer")
    yield from mapping_violations(net, target)


def mapping_violations(net: Network, target: dict) -> list[Violation]:
    """The core-mapping limits the network breaks (none checked when the target lists no mapping limits)."""
    from .mapping import MAPPING_LIMITS, map_network
    found: list = []
    if all(k in target["limits"] for k in MAPPING_LIMITS):  # a user's file may list only the integer ranges
        map_network(net, target, found)
    return found


def violations(net: Network, target: dict) -> list[Violation]:
    """Every limit of ``target`` that ``net`` breaks (:class:`~fastsnn_lava.violations.Violation`: layer,
    quantity, value, limit, message), in the order :func:`check_network` checks them; [] when it fits."""
    found = lif_violations(net, target) if net.family == "cuba" else _if_violations(net, target)
    return [v for v in found if v is not None]


def _first(found) -> None:
    """Raise the first violation of ``found`` (an iterable with Nones for checks that pass), if any."""
    v = next((v for v in found if v is not None), None)
    if v is not None:
        raise FastSNNError(v.message)


def check_network(net: Network, target: dict) -> None:
    """Refuse a network whose integers or mapping do not fit ``target`` (a CUBA network: :func:`check_lif`):
    the first of its :func:`violations`."""
    _first(lif_violations(net, target) if net.family == "cuba" else _if_violations(net, target))


def target_names() -> list[str]:
    """The targets ``load_target`` finds by name (``hardware_configs/*.yaml``), sorted."""
    return sorted({p.stem for d in CONFIG_DIRS if d.is_dir() for p in d.glob("*.yaml")})


def limits_report(net: Network, names: list[str] | None = None) -> list[str]:
    """One line per target (default :func:`target_names`): ``loihi2: fits``, ``loihi2: layer 3 fan-in
    8192 > 4096 inputs per core; ...``, or that a cost-only target checks no limits (``--hw none``)."""
    lines = []
    for name in names or target_names():
        target = load_target(name)
        if any(k not in target["limits"] for k in REQUIRED):
            lines.append(f"{target['name']}: no integer limits to check (a cost-only target)")
            continue
        found = violations(net, target)
        lines.append(f"{target['name']}: " + ("; ".join(v.short() for v in found) if found else "fits"))
    return lines


def input_message_bits(input_max: int) -> int:
    """Bits of the graded message that carries a raw input in [0, input_max] (unsigned payload, ≥ 8 as
    netx's default): ``max(8, ⌈log2(input_max + 1)⌉)``."""
    return max(8, int(input_max).bit_length())


def check_messages(net: Network, target: dict) -> None:
    """Refuse the first of :func:`message_violations`."""
    _first(message_violations(net, target))


def message_violations(net: Network, target: dict):
    """(A generator of :class:`Violation`.) The target's message, exponent and delay fields:
    ``graded_spike_bits`` must carry the first layer's raw inputs (:func:`input_message_bits`) and the
    signed ±1 spikes (2 bits); ``weight_exp_bits`` must hold the exponent netx gives each dense synapse
    (:func:`fastsnn_lava.netx.lava_weights.netx_encoding`); ``delay_bits`` must hold every residual
    shortcut's delay ``l − j − 1`` (netx clamps a delay at 2^bits − 2)."""
    lim, name = target["limits"], target["name"]
    if "graded_spike_bits" in lim:
        g = lim["graded_spike_bits"]
        need_in = input_message_bits(net.input_max)
        signed = any(layer.signed for layer in net.layers)
        if need_in > g or (signed and g < 2):
            yield Violation(None, "message bits", max(need_in, 2 if signed else 0), g,
                            f"{name} carries {g}-bit graded spikes, but this network needs {need_in}-bit messages "
                            f"for its raw inputs (up to {net.input_max})"
                            + (" and signed ±1 spikes" if signed else "") + f": it cannot run on {name}",
                            "graded-spike bits")
    if "weight_exp_bits" in lim:  # netx's shared weight exponent of each dense synapse (lava_weights.py)
        from .netx.lava_weights import netx_encoding
        lo, hi = -2 ** (lim["weight_exp_bits"] - 1), 2 ** (lim["weight_exp_bits"] - 1) - 1
        for i, layer in enumerate(net.layers, start=1):
            for what, kind, w in [("", layer.kind, layer.weight)] + [
                    (f"the shortcut from layer {s.source}: ", s.kind, s.weight) for s in layer.skips]:
                if kind != "dense" or not np.any(w):
                    continue
                exp = netx_encoding(w).weight_exp
                if not lo <= exp <= hi:
                    yield Violation(i, "weight exponent", exp, hi if exp > hi else lo,
                                    f"layer {i}: {what}netx encodes these weights with exponent {exp}, outside "
                                    f"{name}'s {lim['weight_exp_bits']}-bit weight exponent [{lo}, {hi}]: "
                                    "requantize the layer's weights")
    if "delay_bits" in lim:
        most = 2 ** lim["delay_bits"] - 2
        for i, layer in enumerate(net.layers, start=1):
            for skip in layer.skips:
                if i - skip.source - 1 > most:
                    yield Violation(i, "shortcut delay", i - skip.source - 1, most,
                                    f"layer {i}: the shortcut from layer {skip.source} waits {i - skip.source - 1} "
                                    f"steps, beyond {name}'s {lim['delay_bits']}-bit synaptic delay (at most "
                                    f"{most}): shorten the shortcut", "steps")


def check_lif(net, target: dict) -> None:
    """Refuse the first of :func:`lif_violations`."""
    _first(lif_violations(net, target))


def lif_violations(net, target: dict) -> list:
    """Integer ranges of a CUBA :class:`~fastsnn_lava.ir.Network` (weights, bias, threshold) and its mapping."""
    net.require("cuba", "the CUBA range check")
    lim, name = _ranges(target), target["name"]
    wmax, bmax, tmax = 2 ** (lim["weight_bits"] - 1), 2 ** (lim["bias_bits"] - 1), 2 ** lim["threshold_bits"] - 1
    found = []
    for i, layer in enumerate(net.layers, start=1):
        w, b = layer.weight if layer.weight is not None else np.zeros(0), layer.bias
        found.append(_outside(i, "weight", w, -2 * wmax, 2 * wmax - 2,
                              f"layer {i} ({layer.kind}): weights in [{w.min() if w.size else 0}, "
                              f"{w.max() if w.size else 0}] exceed {name}'s {lim['weight_bits']}-bit weights with "
                              "netx's weight exponent: quantize weights to 8 bits"))
        found.append(_outside(i, "bias code", b, -bmax, bmax - 1,
                              f"layer {i} ({layer.kind}): biases in [{b.min() if b.size else 0}, "
                              f"{b.max() if b.size else 0}] exceed {name}'s {lim['bias_bits']}-bit bias: retrain "
                              "with smaller biases"))
        if layer.neuron.vth > tmax + 1:  # netx's own default output neuron uses 2^17
            found.append(Violation(i, "vThMant", layer.neuron.vth, tmax + 1,
                                   f"layer {i} ({layer.kind}): vThMant {layer.neuron.vth} exceeds {name}'s "
                                   f"{lim['threshold_bits']}-bit threshold: lower the threshold"))
    return found + mapping_violations(net, target)
