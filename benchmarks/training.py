"""Benchmark 4 — training: one quantization-aware epoch vs one float epoch (cnn5 and MLP).

Both epochs run the project's own training loop (fastsnn_lava.training.fit) with fastsnn-train's
default learning rates and batch size (fastsnn_lava.options.TrainOptions) on the same ``SAMPLES``
Fashion-MNIST training images, interleaved, ``REPEATS`` times; the ratio is median QAT epoch /
median float epoch.
"""
from __future__ import annotations

import time

import torch

from benchmarks.common import ARCHS, BITS, DATASET, FULL, REPEATS
from fastsnn_lava.data import load_dataset
from fastsnn_lava.models import QuantNet, build_float, resolve_arch
from fastsnn_lava.options import TrainOptions
from fastsnn_lava.runtime import Runtime
from fastsnn_lava.training import fit

SAMPLES = None if FULL else 4000


def run_one(arch: str) -> dict:
    ds = load_dataset(DATASET)
    n = len(ds.x_train) if SAMPLES is None else min(SAMPLES, len(ds.x_train))
    x, y = torch.as_tensor(ds.x_train[:n], dtype=torch.float32), torch.as_tensor(ds.y_train[:n])
    spec = resolve_arch(arch)
    torch.manual_seed(0)
    float_net = build_float(spec, ds.input_shape, ds.n_classes)
    qann = QuantNet(spec, ds.input_shape, ds.n_classes, BITS, ds.input_max)
    qann.init_from_float(float_net, x[:1000])
    rt = Runtime(torch.device("cpu"))  # one process on the CPU, as the CLI without torchrun
    o = TrainOptions()  # fastsnn-train's learning rates and batch size
    t_float, t_qat = [], []
    for r in range(REPEATS):
        t0 = time.perf_counter()
        fit(float_net, lambda a: a / ds.input_max, x, y, 1, o.lr, o.batch_size, "float", r, rt, False)
        t_float.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fit(qann, lambda a: a, x, y, 1, o.qat_lr, o.batch_size, "qat", r, rt, False)
        t_qat.append(time.perf_counter() - t0)
    mf, mq = sorted(t_float)[len(t_float) // 2], sorted(t_qat)[len(t_qat) // 2]
    return {"arch": arch, "bits": BITS, "train_samples": n, "float_epoch_s": t_float, "qat_epoch_s": t_qat,
            "float_epoch_median_s": mf, "qat_epoch_median_s": mq, "ratio": mq / mf,
            "full_epoch_estimate_s": {"float": mf * len(ds.x_train) / n, "qat": mq * len(ds.x_train) / n}}


def run() -> dict:
    return {"nets": [run_one(arch) for arch in ARCHS]}
