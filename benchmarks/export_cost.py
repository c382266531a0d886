"""Benchmark 5 — export: seconds of ``pipeline.export`` (checkpoint → checked net.h5) and the file size."""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import ARCHS, median_time, model_path
from fastsnn_lava.pipeline import export


def run_one(arch: str) -> dict:
    ckpt = model_path(arch)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "net.h5"
        sec, times, net = median_time(lambda: export(str(ckpt), str(out)))
        size = out.stat().st_size
    weights = sum(layer.weight.size + layer.bias.size for layer in net.layers)
    return {"arch": arch, "export_s": times, "export_median_s": sec, "file_bytes": size, "parameters": int(weights),
            "checkpoint_bytes": ckpt.stat().st_size}


def run() -> dict:
    return {"nets": [run_one(arch) for arch in ARCHS]}
