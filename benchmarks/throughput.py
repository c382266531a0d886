"""Benchmark 1 — throughput (images/s): the reference engine vs Lava's CPU simulator.

Same net.h5, same samples. Lava's figure is its marginal throughput,
``(n_big − n_small) / (t_big − t_small)``, so its one-off compile and process start do not
count against it; the engine must agree with Lava on every output integer of the
n_big samples. The physical bound is a plain float32 GEMM ``(B × K)·(K × K)`` with
``K² ≈`` the network's multiply-accumulates per image (first layer once, the last on
counts, hidden layers T times), timed in the same run: bound = GEMM MAC/s ÷ MACs per image.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ARCHS, FULL, macs_per_image, median_time, network, test_set
from fastsnn_lava.engine import Engine
from fastsnn_lava.netx import write_network

ENGINE_SAMPLES = None  # the whole test set: a few seconds, and long enough to time the MLP's ~50 ms
# (small, big): the marginal rate is a difference of two timings, so big must dwarf the run-to-run noise
LAVA_SAMPLES = {"cnn5": (2, 64 if FULL else 24), "mlp": (8, 1000 if FULL else 400)}


def gemm_bound(macs: int, batch: int = 256) -> dict:
    """Images/s of a plain dense float32 matrix multiply doing ``macs`` MACs per image."""
    k = max(16, int(round(math.sqrt(macs))))
    a, w = torch.randn(batch, k), torch.randn(k, k)
    a @ w  # warm-up
    reps = max(1, int(2e10 // (batch * k * k)))
    sec, _, _ = median_time(lambda: [a @ w for _ in range(reps)])
    rate = reps * batch * k * k / sec
    return {"gemm_shape": [batch, k, k], "gemm_mac_per_s": rate, "bound_images_per_s": rate / macs}


def lava_throughput(h5: Path, x: np.ndarray, small: int, big: int) -> dict:
    from fastsnn_lava.lava.runner import run_lava
    t_small, _, _ = median_time(lambda: run_lava(h5, x[:small], progress=False))
    t_big, _, (out, info) = median_time(lambda: run_lava(h5, x[:big], progress=False))
    return {"lava_samples": [small, big], "lava_seconds": [t_small, t_big],
            "lava_images_per_s": (big - small) / max(t_big - t_small, 1e-9),
            "lava_images_per_s_with_startup": big / t_big, "lava_steps_per_sample": info["steps_per_sample"],
            "lava_out": out}


def run_one(arch: str) -> dict:
    net, _ = network(arch)
    x, _ = test_set(ENGINE_SAMPLES)
    eng = Engine(net)
    eng.run(x[:eng.batch_size()])  # warm-up
    sec, times, out = median_time(lambda: eng.run(x))
    res = {"arch": arch, "bits": net.bits, "timesteps": net.timesteps, "engine_samples": len(x),
           "engine_seconds": times, "engine_images_per_s": len(x) / sec, "device": str(eng.device),
           "batch_size": eng.batch_size(), "macs_per_image": macs_per_image(net),
           "macs_per_image_naive": macs_per_image(net, exploited=False)}
    res.update(gemm_bound(res["macs_per_image"]))
    res["fraction_of_bound"] = res["engine_images_per_s"] / res["bound_images_per_s"]
    try:
        from fastsnn_lava.lava import require_lava
        require_lava()
    except Exception as e:  # noqa: BLE001 - reported in the result
        return dict(res, lava_error=str(e))
    small, big = LAVA_SAMPLES[arch]
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "net.h5"
        write_network(net, h5)
        lava = lava_throughput(h5, x, small, big)
    lava_out = lava.pop("lava_out")
    res.update(lava)
    res["agreement"] = float((lava_out == out[:big]).all(1).mean())
    res["speedup_vs_lava"] = res["engine_images_per_s"] / res["lava_images_per_s"]
    return res


def run() -> dict:
    return {"nets": [run_one(arch) for arch in ARCHS]}
