"""Training: a float ANN, then quantization-aware training of its b-bit twin.

1. The float ANN (conv/dense → BatchNorm → ReLU) trains with Adam and cross-entropy.
2. BatchNorm is folded into the weights, each layer's clip α is calibrated on
   training data, and the :class:`~fastsnn_lava.models.QuantNet` trains on the
   integer grid the exporter writes (straight-through gradients).

Both phases show a progress bar; ``seed`` makes a run reproducible on one machine.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .data import Dataset
from .models import QuantNet, build_float


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _fit(model: nn.Module, forward, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int,
         desc: str, seed: int, progress: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    loss_fn = nn.CrossEntropyLoss()
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    with tqdm(total=steps, desc=desc, unit="batch", disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            model.train()
            for idx in _batches(len(x), batch_size, gen):
                loss = loss_fn(forward(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            sched.step()
    model.eval()


@torch.no_grad()
def accuracy(forward, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (forward(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


def train(ds: Dataset, spec: list[dict], bits: int, epochs: int = 30, qat_epochs: int = 30,
          batch_size: int = 64, lr: float = 2e-3, qat_lr: float = 5e-4, seed: int = 0,
          progress: bool = True) -> tuple[QuantNet, nn.Module, dict]:
    """Train the float ANN and the quantized ANN; returns (qann, float_net, metrics)."""
    set_seed(seed)
    t0 = time.time()
    x = torch.as_tensor(ds.x_train, dtype=torch.float32)
    y = torch.as_tensor(ds.y_train)
    xt, yt = torch.as_tensor(ds.x_test, dtype=torch.float32), torch.as_tensor(ds.y_test)
    float_net = build_float(spec, ds.input_shape, ds.n_classes)

    def float_forward(a):
        return float_net(a / ds.input_max)
    _fit(float_net, float_forward, x, y, epochs, lr, batch_size, "float ANN", seed, progress)
    qann = QuantNet(spec, ds.input_shape, ds.n_classes, bits, ds.input_max)
    calib = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:2000]]
    qann.init_from_float(float_net, calib)
    qann_init = accuracy(qann, xt, yt)
    _fit(qann, qann, x, y, qat_epochs, qat_lr, batch_size, f"QAT {bits}-bit", seed + 1, progress)
    metrics = {"float_test_accuracy": accuracy(float_forward, xt, yt),
               "qann_test_accuracy_after_calibration": qann_init,
               "qann_test_accuracy_float_forward": accuracy(qann, xt, yt),
               "train_seconds": round(time.time() - t0, 2)}
    return qann, float_net, metrics
