"""Train the Fashion-MNIST 'cnn5' models at b = 4, 3, 2 with progressive precision.

One float ANN, then QAT at b = 4 from it, b = 3 from the 4-bit QANN, b = 2 from
the 3-bit one (the paper's progressive initialisation). Writes
``build/models/fashion_cnn5_b{b}.pt``. Used by ``scripts/fashion_table.py``.

    .venv/bin/python scripts/train_fashion.py [--epochs 8] [--qat-epochs 5] [--out build/models]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.models import QuantNet, build_float, resolve_arch
from fastsnn_lava.reference import qann_forward, run_batches
from fastsnn_lava.train import _fit, accuracy, set_seed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="cnn5")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--qat-epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--bits", default="4,3,2")
    ap.add_argument("--out", default="build/models")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    set_seed(a.seed)
    ds = load_dataset("fashion-mnist")
    spec = resolve_arch(a.arch)
    x, y = torch.as_tensor(ds.x_train, dtype=torch.float32), torch.as_tensor(ds.y_train)
    xt, yt = torch.as_tensor(ds.x_test, dtype=torch.float32), torch.as_tensor(ds.y_test)
    t0 = time.time()
    float_net = build_float(spec, ds.input_shape, ds.n_classes)

    def float_forward(v):
        return float_net(v / ds.input_max)
    _fit(float_net, float_forward, x, y, a.epochs, 2e-3, a.batch_size, "float ANN", a.seed, True)
    float_acc = accuracy(float_forward, xt, yt)
    print(f"float ANN: {float_acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    prev = None
    for bits in map(int, a.bits.split(",")):
        t1 = time.time()
        qann = QuantNet(spec, ds.input_shape, ds.n_classes, bits, ds.input_max)
        if prev is None:
            calib = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(a.seed))[:2000]]
            qann.init_from_float(float_net, calib)
        else:
            qann.load_state_dict(prev.state_dict())
        _fit(qann, qann, x, y, a.qat_epochs, 5e-4, a.batch_size, f"QAT {bits}-bit", a.seed + bits, True)
        qout = run_batches(to_network(qann), ds.x_test, qann_forward)
        meta = {"float_test_accuracy": float_acc, "qann_test_accuracy": float((qout.argmax(1) == ds.y_test).mean()),
                "dataset": "fashion-mnist", "arch": a.arch, "seed": a.seed, "classes": ds.classes,
                "test_samples": len(ds.y_test), "epochs": a.epochs, "qat_epochs": a.qat_epochs,
                "init": "float ANN" if prev is None else f"{bits + 1}-bit QANN",
                "qat_seconds": round(time.time() - t1, 1)}
        path = Path(a.out) / f"fashion_{a.arch}_b{bits}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(path, qann, float_net, meta)
        print(json.dumps({"bits": bits, **{k: meta[k] for k in ("qann_test_accuracy", "qat_seconds")}}), flush=True)
        prev = qann


if __name__ == "__main__":
    main()
