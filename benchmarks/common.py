"""Shared pieces of the benchmarks: configuration, timing, machine description, models.

``FULL=1`` selects the full test sets and longer runs; the default is a reduced run that fits
in 30 minutes on a 2-core machine. Every timing is the median of ``REPEATS`` (≥ 3) runs;
ratios are taken between figures measured in the same process.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results"))
MODELS = ROOT / "build" / "bench" / "models"
FULL = os.environ.get("FULL", "") not in ("", "0")
REPEATS = max(3, int(os.environ.get("BENCH_REPEATS", "3")))
BITS = int(os.environ.get("FASTSNN_BENCH_BITS", "2"))
DATASET = os.environ.get("FASTSNN_BENCH_DATASET", "fashion-mnist")  # digits: a quick smoke run
# the two networks every benchmark uses: the Fashion-MNIST CNN (cnn5) and an MLP
NETS = {"cnn5": "FASTSNN_BENCH_CNN", "mlp": "FASTSNN_BENCH_MLP"}
# optional further checkpoints of the same architecture at other bit widths, comma-separated:
# accuracy_vs_t adds a Fast-SNN curve for each (e.g. b = 3 and 4 of the Fashion-MNIST CNN)
MORE = {"cnn5": "FASTSNN_BENCH_CNN_MORE", "mlp": "FASTSNN_BENCH_MLP_MORE"}
ARCHS = [a for a in os.environ.get("BENCH_NETS", "cnn5,mlp").split(",") if a]  # for quick partial runs
EPOCHS = {"cnn5": 8 if FULL else 1, "mlp": 10 if FULL else 3}


def median_time(fn, repeats: int = REPEATS) -> tuple[float, list]:
    """(median seconds, all seconds) of ``fn()`` over ``repeats`` runs; also returns fn's last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def machine() -> dict:
    """CPU model, cores, library versions and the date: written into every result file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        from importlib.metadata import version
        versions.update({"lava-nc": version("lava-nc"), "lava-dl": version("lava-dl")})
    except Exception:  # Lava not installed: the Lava benchmarks say so themselves
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "os": platform.platform(), "versions": versions,
            "load_average_1min": round(os.getloadavg()[0], 2),  # > cores: a shared machine, timings not representative
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "full": FULL, "repeats": REPEATS}


def write_result(name: str, data: dict) -> Path:
    from fastsnn_lava.atomic import write_text
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_text(path, json.dumps(dict(data, benchmark=name, machine=machine()), indent=2) + "\n")
    return path


def model_path(arch: str) -> Path:
    """The benchmark's checkpoint for ``arch``: ``$FASTSNN_BENCH_CNN`` / ``$FASTSNN_BENCH_MLP``, or a
    short training on Fashion-MNIST (cached in build/bench/models/)."""
    env = os.environ.get(NETS[arch])
    if env:
        return Path(env)
    from fastsnn_lava.pipeline import train
    path = MODELS / f"{DATASET}-{arch}-b{BITS}-e{EPOCHS[arch]}.pt"
    if not path.exists():
        MODELS.mkdir(parents=True, exist_ok=True)
        print(f"[bench] training {arch} on {DATASET} ({EPOCHS[arch]}+{EPOCHS[arch]} epochs) → {path}", flush=True)
        train(DATASET, arch, BITS, str(path), epochs=EPOCHS[arch], qat_epochs=EPOCHS[arch], seed=0, progress=False)
    return path


def network(arch: str, neuron: str = "signed"):
    """(integer Network, checkpoint path) of ``arch``."""
    from fastsnn_lava.pipeline import convert
    path = model_path(arch)
    return convert(str(path), neuron), path


def more_networks(arch: str) -> list:
    """The integer Networks of ``$FASTSNN_BENCH_CNN_MORE`` / ``$FASTSNN_BENCH_MLP_MORE`` (may be empty)."""
    from fastsnn_lava.pipeline import convert
    return [convert(p.strip()) for p in os.environ.get(MORE[arch], "").split(",") if p.strip()]


def test_set(n: int | None = None):
    from fastsnn_lava.data import load_dataset
    ds = load_dataset(DATASET)
    n = len(ds.x_test) if n is None else min(n, len(ds.x_test))
    return ds.x_test[:n], ds.y_test[:n]


def macs_per_image(net, exploited: bool = True) -> int:
    """Multiply-accumulates per image of the spiking network over its T steps.

    exploited: the first layer once (its input is the same every step) and the last layer
    once on the spike counts; naive: every layer every step.
    """
    T = net.timesteps
    per_layer = []
    for layer in net.layers:
        fan_in = int(np.prod(layer.weight.shape[1:]))
        per_layer.append(layer.num_neurons * fan_in)
    if not exploited:
        return T * sum(per_layer)
    if len(per_layer) == 1:
        return per_layer[0]
    return per_layer[0] + T * sum(per_layer[1:-1]) + per_layer[-1]
