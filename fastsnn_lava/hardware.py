"""Hardware targets (``hardware_configs/*.yaml``) and the range checks of export.

A target file lists limits, each with its value and source. :func:`check_network`
compares an integer network with them and raises a one-line
:class:`~fastsnn_lava.errors.FastSNNError` naming the layer, the limit and what
to change. Users can pass their own YAML file for another target.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import FastSNNError
from .ir import Network

CONFIG_DIRS = (Path(__file__).resolve().parent.parent / "hardware_configs",
               Path(__file__).resolve().parent / "hardware_configs")


def load_target(name_or_path: str) -> dict:
    """A target by name (``loihi2``) or by the path of a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        found = [d / f"{name_or_path}.yaml" for d in CONFIG_DIRS if (d / f"{name_or_path}.yaml").exists()]
        if not found:
            raise FastSNNError(f"unknown hardware target {name_or_path!r}: pass a name from hardware_configs/ "
                               "or the path of a YAML file")
        path = found[0]
    if not path.exists():
        raise FastSNNError(f"{path}: no such hardware config")
    try:
        cfg = yaml.safe_load(path.read_text())
        limits = {k: v["value"] for k, v in cfg["limits"].items()}
    except Exception as e:
        raise FastSNNError(f"{path} is not a hardware config ({type(e).__name__}): see hardware_configs/loihi2.yaml")
    return {"name": cfg.get("name", path.stem), "limits": limits, "path": str(path)}


def check_network(net: Network, target: dict) -> None:
    lim, name = target["limits"], target["name"]
    wmax = 2 ** (lim["weight_bits"] - 1)
    tmax = 2 ** lim["threshold_bits"] - 1
    bmax = 2 ** (lim["bias_bits"] - 1)
    for i, layer in enumerate(net.layers, start=1):
        w, b = layer.weight, layer.bias
        if w.size and (w.max() > wmax - 1 or w.min() < -wmax):
            raise FastSNNError(f"layer {i} ({layer.kind}): weights in [{w.min()}, {w.max()}] exceed {name}'s "
                               f"{lim['weight_bits']}-bit weights: retrain with 8-bit weight codes")
        if layer.threshold is not None and layer.threshold > tmax:
            raise FastSNNError(f"layer {i} ({layer.kind}): threshold {layer.threshold} exceeds {name}'s "
                               f"{lim['threshold_bits']}-bit threshold: lower the weight resolution of this layer")
        if b.size and (b.max() > bmax - 1 or b.min() < -bmax):
            raise FastSNNError(f"layer {i} ({layer.kind}): biases in [{b.min()}, {b.max()}] exceed {name}'s "
                               f"{lim['bias_bits']}-bit bias: retrain (bias codes are clipped during training)")
