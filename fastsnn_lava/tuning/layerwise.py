"""Layer-wise fine-tuning: absorb the SNN's sequential error into the weights.

After conversion, a hidden layer ``l`` whose input current varies over the T
steps fires a spike count ``N^l`` that can differ from the quantized ANN's level
``K^l`` (the *sequential error*: the count depends on the order in which the charge arrives;
Hu, Zheng, Jiang, Pan, "Fast-SNN", IEEE TPAMI 2023, arXiv:2305.19868). Fine-tuning
(Fast-SNN's layer-wise fine-tuning, ``snn_ft.py`` in github.com/yangfan-hu/Fast-SNN) tunes
the hidden layers 2..L−1 one at a time, in forward order,
with the already-tuned layers before it fixed. One iteration on a batch:

1. target ``a^l = α^l·K^l / T``: the original QANN's activation (no gradient);
2. run the SNN up to layer ``l−1``; its spike counts ``N^{l−1}`` are the input;
3. the QANN layer on that input, summed over T (integer code units)::

       A = W_q · N^{l−1} + T·c (+ Σ_j S^{l,j}·N^j),      k̃ = A / θ^l

   (a residual layer's shortcuts ``S^{l,j}`` from earlier layers ``j`` add their
   current, frozen: only W and b are tuned)

   and the SNN layer's true count ``N^l`` on the same spike trains;
4. forward value ``N^l``, gradient of ``k̃`` (straight-through, zero outside
   ``0 < k̃ ≤ T``): ``out = α^l/T · (k̃ + (N^l − k̃).detach())``;
5. loss ``mean((out − a^l)²)``, SGD (lr 1e-3, momentum 0.9) on real-valued
   master weights ``W = Δ·q`` and biases ``b = u·c``.

The layer's grid is frozen: θ, Δ and u stay as exported (the paper freezes the
threshold α^l), and the codes ``q = clip(round(W/Δ), ±127)``,
``c = clip(round(b/u), 13-bit)`` are what the fine-tuned network exports, so the
result is still lossless to export.

Acceptance, after every epoch of a layer, or ``checks`` times per epoch (otherwise
the layer reverts to its last accepted state):

* ``"mismatch"`` (default): keep the update only if the layer's mismatch to the
  QANN, ``mean |N^l − K^l|`` (in units of θ) on a held-out part of the
  training data, falls. This measures what fine-tuning is for and is not
  decided by a handful of images.
* ``"accuracy"`` (the paper's rule): keep it only if the whole SNN's accuracy
  on (a subset of) the training data rises.
* ``force=True`` keeps every epoch.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ..engine import Engine
from ..errors import FastSNNError
from ..ir import Network
from ..kernel import Synapse, if_run
from ..models import QuantNet
from ..options import LAYERWISE_LR, RULES
from ..progress import bar as progress_bar
from .common import (HELDOUT, codes, frozen_grid, network_dtype, prefix_spikes, qann_levels, replace_codes,
                     require_signed, split, tuned_start, tuning_dtype)

CPU = torch.device("cpu")


@dataclasses.dataclass
class LayerReport:
    layer: int            # 1-based index of the tuned layer
    epochs_run: int
    epochs_kept: int      # accepted checks (one check per epoch unless checks_per_epoch > 1)
    mismatch_before: float  # mean |N − K| on the held-out data, θ units
    mismatch_after: float
    accuracy_before: float | None  # SNN accuracy on the training subset (rule "accuracy" only)
    accuracy_after: float | None
    seconds: float        # the whole layer: training passes and acceptance checks
    train_seconds: float = 0.0  # the training passes alone (scale with the samples per epoch)
    checks_per_epoch: int = 1


def layer_mismatch(net: Network, ref: Network, x: np.ndarray, layer: int, batch_size: int | None = None) -> float:
    """mean |N^l − K^l| of hidden layer ``layer`` (0-based) over neurons and samples, N from ``net``'s SNN,
    K from ``ref``'s QANN."""
    dtype = network_dtype(ref)
    engine = Engine(net, device="cpu")
    batch_size = batch_size or engine.batch_size()
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[s:s + batch_size])
            counts = []
            engine.forward(xb, counts, upto=layer + 1)
            n = counts[-1].to(dtype)
            k = qann_levels(ref, xb, layer + 1, dtype)[-1]
            total += float((n - k).abs().sum())
            count += n.numel()
    return total / max(count, 1)


def snn_accuracy(net: Network, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    return float((Engine(net).run(x).argmax(1) == y).mean())


@dataclasses.dataclass
class Acceptance:
    """The acceptance rule of one layer (see the module): the last kept network, its held-out mismatch
    (and accuracy), and the masters it came from."""
    net: Network
    ref: Network
    li: int
    rule: str
    force: bool
    x_held: np.ndarray
    x_acc: np.ndarray
    y_acc: np.ndarray
    best: float = 0.0
    accuracy: float | None = None
    kept: int = 0
    state: tuple = ()

    def start(self, w: torch.Tensor, b: torch.Tensor) -> "Acceptance":
        self.best = layer_mismatch(self.net, self.ref, self.x_held, self.li)
        self.accuracy = snn_accuracy(self.net, self.x_acc, self.y_acc) if self.rule == "accuracy" else None
        self.state = (w.detach().clone(), b.detach().clone())
        return self

    def check(self, w: torch.nn.Parameter, b: torch.nn.Parameter, delta: float, unit: float) -> None:
        """Keep the current codes if they pass the rule, else put the masters back to the last kept ones."""
        q, c = codes(w.detach(), delta, b.detach(), unit)
        cand = replace_codes(self.net, {self.li: (q, c)})
        m = layer_mismatch(cand, self.ref, self.x_held, self.li)
        a = snn_accuracy(cand, self.x_acc, self.y_acc) if self.rule == "accuracy" else None
        better = m < self.best if self.rule == "mismatch" else a > self.accuracy
        if self.force or better:
            self.net, self.best, self.accuracy, self.kept = cand, m, a, self.kept + 1
            self.state = (w.detach().clone(), b.detach().clone())
        else:
            with torch.no_grad():
                w.copy_(self.state[0])
                b.copy_(self.state[1])


def tuning_loss(net: Network, ref: Network, li: int, xb: torch.Tensor, q: torch.Tensor, c: torch.Tensor,
                alpha: float) -> torch.Tensor:
    """Steps 2–5 of the module on a batch: the SNN prefix and the QANN target from the kernel, the layer's
    true count ``N^l`` and its QANN twin ``k̃ = A/θ``, and the loss of the straight-through output."""
    layer, T, dtype = net.layers[li], net.timesteps, network_dtype(net)
    step_dtype = q.dtype
    with torch.no_grad():
        prefix = {i + 1: p.to(step_dtype) for i, p in enumerate(prefix_spikes(net, xb, li, dtype))}
        target = qann_levels(ref, xb, li + 1, dtype)[-1].to(step_dtype)
        frozen = Synapse(layer, CPU, step_dtype, False, (q.detach(), c.detach()))  # the codes' values, no gradient
        n_out = if_run(frozen.step_currents(prefix[li], prefix), layer.threshold, layer.signed, False, T).sum(0)
    syn = Synapse(layer, CPU, step_dtype, False, (q, c), frozen.skips)  # frozen shortcut currents
    k_soft = syn.summed_current(prefix[li].sum(0), {j: p.sum(0) for j, p in prefix.items()}, T) / layer.threshold
    inside = ((k_soft > 0) & (k_soft <= T)).to(step_dtype)
    k_ste = k_soft * inside + (n_out - k_soft * inside).detach()
    return ((alpha / T) * (k_ste - target)).pow(2).mean()


def finetune(qann: QuantNet, net: Network, x: np.ndarray, y: np.ndarray, epochs: int = 1, lr: float = LAYERWISE_LR,
             momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 128, rule: str = "mismatch",
             force: bool = False, heldout: float = HELDOUT, accuracy_samples: int = 10000, max_samples: int | None = None,
             seed: int = 0, progress: bool = True, checks: int = 1,
             start: Network | None = None) -> tuple[Network, list[LayerReport]]:
    """Fine-tune the hidden layers 2..L−1 of ``net`` (the signed-IF conversion of ``qann``).

    ``net`` gives the QANN targets and the grid; the codes start from ``start`` (default ``net``;
    e.g. a bias-calibrated copy, :mod:`fastsnn_lava.tuning.calibration`).
    ``x, y``: the training data (raw integers). A seeded ``heldout`` share of it
    decides the "mismatch" rule; the rest (at most ``max_samples``) trains. The
    "accuracy" rule measures the SNN on at most ``accuracy_samples`` training
    samples. ``checks``: acceptance checks per epoch, evenly spaced (1: at the end of
    each epoch, as the paper); more keep the best point within an epoch, at the cost of
    one held-out evaluation each. Returns the tuned network and one report per tuned layer.
    """
    if rule not in RULES:
        raise FastSNNError(f"--accept must be one of {RULES}, got {rule!r}")
    require_signed(net)
    if epochs < 1 or lr <= 0 or not 0 < heldout < 1 or checks < 1:
        raise FastSNNError("--epochs and --checks must be ≥ 1, --lr > 0 and the held-out share in (0, 1)")
    ref, net = net, tuned_start(net, start)
    gen = torch.Generator().manual_seed(seed)
    held, rest = split(len(x), heldout, gen)
    fit = rest if max_samples is None else rest[:max_samples]
    x_fit = torch.as_tensor(x[fit])
    acc_idx = rest[:accuracy_samples]
    units = qann.units_in()
    T = net.timesteps
    reports = []
    for li in range(1, len(net.layers) - 1):
        t0 = time.time()
        layer = net.layers[li]
        theta, delta, unit = frozen_grid(qann, net, li, units)
        w = torch.nn.Parameter(torch.as_tensor(layer.weight, dtype=torch.float64) * delta)
        b = torch.nn.Parameter(torch.as_tensor(layer.bias, dtype=torch.float64) * unit)
        opt = torch.optim.SGD([w, b], lr=lr, momentum=momentum, weight_decay=weight_decay)
        step_dtype = tuning_dtype(layer, T)
        judge = Acceptance(net, ref, li, rule, force, x[held], x[acc_idx], y[acc_idx]).start(w, b)
        before, acc_before = judge.best, judge.accuracy
        t_train = 0.0
        n_batches = -(-len(x_fit) // batch_size)
        every = -(-n_batches // checks)
        for epoch in range(epochs):
            t1 = time.time()
            order = torch.randperm(len(x_fit), generator=gen)
            bar = progress_bar(range(0, len(order), batch_size), desc=f"fine-tune layer {li + 1} epoch {epoch + 1}",
                               unit="batch", disable=not progress, leave=False)
            for j, s in enumerate(bar):
                q, c = codes(w, delta, b, unit)  # integer values: exact in step_dtype
                loss = tuning_loss(judge.net, ref, li, x_fit[order[s:s + batch_size]], q.to(step_dtype),
                                   c.to(step_dtype), theta * unit)
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.2e}")
                if (j + 1) % every == 0 or j == n_batches - 1:
                    t_train += time.time() - t1
                    judge.check(w, b, delta, unit)
                    t1 = time.time()
        net = judge.net
        reports.append(LayerReport(li + 1, epochs, judge.kept, before, judge.best, acc_before, judge.accuracy,
                                   round(time.time() - t0, 2), round(t_train, 2), checks))
    return net, reports
