"""Benchmark 3 — Lava's cost per time step: the SignedIF network vs the equivalent vanilla CUBA network.

Both are built by netx from the same integer network: the project's net.h5 (SIGNED_IF /
ACCUMULATE neurons, this project's processes) and a copy whose neurons are Lava's standard
CUBA LIF (``iDecay = 4096``, ``vDecay = 0``, ``vThMant = θ − 1`` so that its strict ``>`` fires at
``v ≥ θ``, reset to zero; the classifier a CUBA with the largest threshold). Same weights, same
synapse processes, same input source and run configuration, so the ratio isolates the neuron
models. Each network is compiled once, warmed up, then ``REPEATS`` chunks of ``STEPS`` steps are
timed; the figure is the median seconds per step.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

from benchmarks.common import ARCHS, FULL, REPEATS, network, test_set
from fastsnn_lava.netx import write_network

STEPS = {"cnn5": 120 if FULL else 40, "mlp": 600 if FULL else 200}


def to_cuba(src: Path, dst: Path) -> None:
    """Copy the netx file, replacing every neuron by a vanilla CUBA neuron."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for k in f["layer"]:
            g = f["layer"][k]
            if "neuron" not in g:
                continue
            theta = int(g["neuron/theta"][()]) if "theta" in g["neuron"] else 2 ** 17
            del g["neuron"]
            n = g.create_group("neuron")
            n.create_dataset("type", data="CUBA", dtype=h5py.string_dtype("ascii"))
            for key, val in (("iDecay", 4096), ("vDecay", 0), ("vThMant", min(theta, 2 ** 17) - 1), ("refDelay", 1)):
                n.create_dataset(key, data=np.int64(val))
            n.create_dataset("gradedSpike", data=False)


def seconds_per_step(h5: Path, net, x: np.ndarray, steps: int) -> list:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from fastsnn_lava.lava.loader import INPUT_MESSAGE_BITS, build_netx, lava_input
    from fastsnn_lava.lava.process import SampleSource, model_map
    R = net.reset_interval
    # both files through netx with the same arguments; an IF file's θ comes from ``net`` (the CUBA one is netx's)
    lava_net = build_netx(h5, net, INPUT_MESSAGE_BITS, R)
    total = steps * (REPEATS + 1)
    data = lava_input(net, x[:total // R + 2])
    src = SampleSource(data=data, timesteps=net.timesteps, reset_interval=R)
    src.s_out.connect(lava_net.inp)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map("fixed_pt"))
    times = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Cannot import module")
            lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)  # compile + warm-up
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                times.append((time.perf_counter() - t0) / steps)
    finally:
        lava_net.stop()
    return times


def run_one(arch: str) -> dict:
    net, _ = network(arch)
    x, _ = test_set(1000)
    with tempfile.TemporaryDirectory() as tmp:
        signed, cuba = Path(tmp) / "signed.h5", Path(tmp) / "cuba.h5"
        write_network(net, signed)
        to_cuba(signed, cuba)
        t_signed = seconds_per_step(signed, net, x, STEPS[arch])
        t_cuba = seconds_per_step(cuba, net, x, STEPS[arch])
    ms, mc = float(np.median(t_signed)), float(np.median(t_cuba))
    return {"arch": arch, "steps_per_chunk": STEPS[arch], "signed_if_s_per_step": t_signed,
            "cuba_s_per_step": t_cuba, "signed_if_ms_per_step": 1e3 * ms, "cuba_ms_per_step": 1e3 * mc,
            "ratio": ms / mc}


def run() -> dict:
    from fastsnn_lava.lava import require_lava
    require_lava()
    return {"nets": [run_one(arch) for arch in ARCHS]}
