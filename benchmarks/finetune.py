"""Benchmark 7 — fine-tuning time: one epoch per layer on the Fashion-MNIST CNN (issue 3's budget: 30 min).

``fastsnn_lava.tuning.finetune`` on the benchmark's cnn5 checkpoint, default rule (held-out
mismatch, 10 % of the training set = 6,000 images, checked before and after each layer), one
epoch per hidden layer 2..L−1, ``REPEATS`` runs. Reduced: ``SAMPLES`` training images per layer,
and the full-epoch time estimated as (acceptance checks, which do not depend on the epoch size)
+ (training passes × full epoch / ``SAMPLES``); ``FULL=1`` runs the full epoch (54,000 images per layer).
"""
from __future__ import annotations

import time

from benchmarks.common import BITS, DATASET, FULL, REPEATS, model_path
from fastsnn_lava import checkpoint
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.tuning import finetune

SAMPLES = None if FULL else 2000
HELDOUT = 0.1
LR = 0.1  # the rate the README's table uses; the time does not depend on it


def run() -> dict:
    path = model_path("cnn5")
    qann, _, _ = checkpoint.load(path)
    net = to_network(qann)
    ds = load_dataset(DATASET)
    n_fit_full = len(ds.x_train) - int(round(HELDOUT * len(ds.x_train)))
    runs = []
    for r in range(REPEATS):
        t0 = time.perf_counter()
        _, reports = finetune(qann, net, ds.x_train, ds.y_train, epochs=1, lr=LR, heldout=HELDOUT,
                              max_samples=SAMPLES, seed=r, progress=False)
        wall = time.perf_counter() - t0
        n_fit = n_fit_full if SAMPLES is None else min(SAMPLES, n_fit_full)
        train = sum(rep.train_seconds for rep in reports)
        runs.append({"wall_s": wall, "train_s": train, "checks_s": wall - train,
                     "full_epoch_estimate_s": (wall - train) + train * n_fit_full / n_fit,
                     "layers": [rep.__dict__ for rep in reports]})
    med = sorted(runs, key=lambda x: x["full_epoch_estimate_s"])[len(runs) // 2]
    return {"nets": [{"arch": "cnn5", "bits": BITS, "model": str(path), "samples_per_layer": SAMPLES or n_fit_full,
                      "full_epoch_samples_per_layer": n_fit_full, "heldout_samples": len(ds.x_train) - n_fit_full,
                      "tuned_layers": len(med["layers"]), "lr": LR, "runs": runs,
                      "median_wall_s": med["wall_s"], "median_full_epoch_estimate_s": med["full_epoch_estimate_s"],
                      "measured_full_epoch": SAMPLES is None}]}
