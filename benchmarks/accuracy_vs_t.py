"""Benchmark 2 — latency against accuracy.

Accuracy vs T on the same test samples for (a) Fast-SNN with signed IF neurons, (b) the same
network with unsigned IF neurons (both with T steps of the exported thresholds, v(0) = θ/2,
simulated by the bit-exact engine; further bit widths of the same architecture from
``$FASTSNN_BENCH_CNN_MORE``), and (c) the peer method, a rate-coded max-normalised IF
conversion of the same float network (benchmarks/rate_conversion.py). For each: the smallest T
of the grid at which the accuracy is within 0.5 percentage points of the float ANN on these samples.
"""
from __future__ import annotations

import torch

from benchmarks import rate_conversion
from benchmarks.common import ARCHS, DATASET, FULL, more_networks, network, test_set
from fastsnn_lava import checkpoint
from fastsnn_lava.data import load_dataset
from fastsnn_lava.engine import Engine

SAMPLES = None if FULL else 2000
FAST_GRID = [1, 2, 3, 4, 5, 6, 7, 8, 16, 32] + ([64] if FULL else [])
RATE_GRID = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128] + ([192, 256, 384, 512] if FULL else [])
TOLERANCE = 0.005


def smallest_t(acc: dict, target: float, tolerance: float = TOLERANCE):
    """The smallest T of the grid whose accuracy is within ``tolerance`` of ``target`` (None: never).

    The first crossing, not "from there on": a Fast-SNN network is built for T = 2^b − 1 and run
    there; longer runs with the same thresholds are a sweep, not its operating point.
    """
    return next((t for t, a in sorted(acc.items()) if a >= target - tolerance - 1e-12), None)


def run_one(arch: str) -> dict:
    net, path = network(arch)
    x, y = test_set(SAMPLES)
    _, float_net, meta = checkpoint.load(str(path))
    with torch.no_grad():
        logits = float_net(torch.as_tensor(x, dtype=torch.float32).reshape(-1, *net.input_shape) / net.input_max)
    ann = float((logits.argmax(1).numpy() == y).mean())
    curves = {}
    for name, n in (("fastsnn_signed", net), ("unsigned_if", net.with_neuron("unsigned_if")),
                    *((f"fastsnn_signed_b{m.bits}", m) for m in more_networks(arch) if m.bits != net.bits)):
        grid = sorted(set(FAST_GRID) | {n.timesteps})
        curves[name] = {t: float((Engine(n, timesteps=t).run(x).argmax(1) == y).mean()) for t in grid}
    train_x = load_dataset(DATASET).x_train[:2000]
    layers = rate_conversion.normalise(float_net, torch.as_tensor(train_x).reshape(-1, *net.input_shape),
                                       net.input_max, percentile=100.0)
    curves["rate_maxnorm"] = rate_conversion.accuracy_vs_t(layers, x, y, net.input_max, net.input_shape, RATE_GRID)
    return {"arch": arch, "bits": net.bits, "timesteps": net.timesteps, "samples": len(x), "ann_accuracy": ann,
            "qann_test_accuracy": meta.get("qann_test_accuracy"),
            "curves": {k: {str(t): a for t, a in v.items()} for k, v in curves.items()},
            "smallest_t_within_0.5pp": {k: smallest_t(v, ann) for k, v in curves.items()},
            "smallest_t_within_1pp": {k: smallest_t(v, ann, 0.01) for k, v in curves.items()},
            "peer": "max-normalised rate-coded IF conversion (Diehl 2015 / Rueckauer 2017), "
                    "analog input, reset by subtraction; SpikingJelly not installed"}


def run() -> dict:
    return {"nets": [run_one(arch) for arch in ARCHS]}
