"""Layer-wise fine-tuning: absorb the SNN's sequential error into the weights.

After conversion, a hidden layer ``l`` whose input current varies over the T
steps fires a spike count ``N^l`` that can differ from the quantized ANN's level
``K^l`` (the *sequential error*, see ``fastsnn-method.md`` §7). Fine-tuning
(Fast-SNN §8) tunes the hidden layers 2..L−1 one at a time, in forward order,
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

from .progress import bar as progress_bar
from .errors import FastSNNError
from .ir import Layer, Network
from .models import BIAS_MAX, WEIGHT_QMAX, QuantNet
from .engine import exact_dtype, if_run
from .quant import round_half_up
from .reference import skip_sum
from .reference import synapse as _syn

RULES = ("mismatch", "accuracy")
HELDOUT = 0.1  # share of the training data held out for the acceptance checks (layer-wise and tandem)


def heldout_count(n: int, heldout: float = HELDOUT) -> int:
    """How many of ``n`` training samples the tuners hold out (at least one)."""
    return max(1, int(round(heldout * n)))


def _exact_dtype(net: Network) -> torch.dtype:
    """float32 when every partial sum stays below 2^24 (then exact), else float64 (:func:`engine.exact_dtype`;
    QANN levels ≤ T bound the same sums as T steps of ±1 spikes)."""
    return exact_dtype(net, net.timesteps, net.input_max)


def _tuning_dtype(layer: Layer, steps: int) -> torch.dtype:
    """The dtype of a tuning step of ``layer``: exact for *any* codes it may take
    (|q| ≤ q_max on every synapse, a 13-bit bias), since the codes move during tuning:
    ``θ + T·(fan_in·q_max + 2^12 + Σ_skips fan_in·|S|)`` below 2^24 → float32, else float64
    (θ = 0 for the classifier, which does not fire)."""
    fan_in = int(np.prod(layer.weight.shape[1:]))
    skips = sum(int(np.abs(sk.weight).reshape(sk.weight.shape[0], -1).sum(1).max()) for sk in layer.skips)
    bound = (layer.threshold or 0) + steps * (fan_in * WEIGHT_QMAX + BIAS_MAX + 1 + skips)
    return torch.float32 if bound < 2 ** 24 else torch.float64


def frozen_grid(qann: QuantNet, net: Network, li: int, units: list) -> tuple[int, float, float]:
    """(θ, Δ, u) of hidden layer ``li`` (0-based) from the checkpoint; refuses a network whose threshold
    is not the checkpoint's (it was not converted from it)."""
    theta, delta, unit = qann.layers[li].grid(units[li], qann.skip_alphas(li))
    if theta != net.layers[li].threshold:
        raise FastSNNError(f"layer {li + 1}: the network's threshold {net.layers[li].threshold} is not the "
                           f"checkpoint's {theta}: fine-tune the network converted from this checkpoint")
    return theta, delta, unit


def tuned_start(ref: Network, start: Network | None) -> Network:
    """``start`` (default ``ref``) after checking that it is a tuned copy of the conversion ``ref``:
    the same layers, weight shapes and thresholds (only codes may differ)."""
    if start is None:
        return ref
    if len(start.layers) != len(ref.layers) or any(a.threshold != b.threshold or a.weight.shape != b.weight.shape
                                                   for a, b in zip(start.layers, ref.layers)):
        raise FastSNNError("the starting network is not a tuned copy of the conversion (layers or thresholds differ)")
    return start


def _t(a, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def snn_prefix(net: Network, x: torch.Tensor, upto: int, dtype=torch.float64) -> list[torch.Tensor]:
    """Spike trains ``s^l(t)`` (T, B, *shape) of hidden layers ``0..upto-1`` (integers in ``dtype``)."""
    T = net.timesteps
    a = x.to(dtype).reshape(-1, *net.input_shape)
    out, spikes = [], None
    for i, layer in enumerate(net.layers[:upto]):
        w, b = _t(layer.weight, dtype), _t(layer.bias, dtype)
        bshape = (-1, 1, 1) if layer.kind == "conv" else (-1,)
        if i == 0:
            cur = _syn(layer, a, w) + b.view(bshape)
            currents = cur.unsqueeze(0).expand(T, *cur.shape)
        else:
            cur = _syn(layer, spikes.reshape(-1, *spikes.shape[2:]), w)
            currents = cur.view(T, -1, *cur.shape[1:]) + b.view(bshape) + skip_sum(layer, out, T, dtype)
        spikes = _if_layer(currents, layer)
        out.append(spikes)
    return out


def _if_layer(currents: torch.Tensor, layer: Layer) -> torch.Tensor:
    """Spike trains (T, B, …) of ``layer``'s IF neurons: the engine's in-place form of ``if_step``."""
    return if_run(currents, layer.threshold, layer.neuron == "signed_if", False, len(currents))


def qann_levels(net: Network, x: torch.Tensor, upto: int, dtype=torch.float64) -> list[torch.Tensor]:
    """QANN levels ``K^l`` of hidden layers ``0..upto-1`` (see :func:`reference.qann_forward`)."""
    T = net.timesteps
    a = x.to(dtype).reshape(-1, *net.input_shape)
    out = []
    for i, layer in enumerate(net.layers[:upto]):
        w, b = _t(layer.weight, dtype), _t(layer.bias, dtype)
        bshape = (-1, 1, 1) if layer.kind == "conv" else (-1,)
        acc = (T * (_syn(layer, a, w) + b.view(bshape)) if i == 0
               else _syn(layer, a, w) + T * b.view(bshape) + skip_sum(layer, out, dtype=dtype))
        a = torch.div(acc + layer.threshold // 2, layer.threshold, rounding_mode="floor").clamp(0, T)
        out.append(a)
    return out


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
    from .engine import Engine
    dtype = _exact_dtype(ref)
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
    from .engine import Engine
    return float((Engine(net).run(x).argmax(1) == y).mean())


def _codes(w: torch.Tensor, delta: float, b: torch.Tensor, unit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through integer codes of real-valued weights and biases on the frozen grid."""
    q = (w / delta).clamp(-WEIGHT_QMAX, WEIGHT_QMAX)
    q = q + (round_half_up(q) - q).detach()
    c = (b / unit).clamp(-BIAS_MAX - 1, BIAS_MAX)
    c = c + (round_half_up(c) - c).detach()
    return q, c


def finetune(qann: QuantNet, net: Network, x: np.ndarray, y: np.ndarray, epochs: int = 1, lr: float = 1e-3,
             momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 128, rule: str = "mismatch",
             force: bool = False, heldout: float = HELDOUT, accuracy_samples: int = 10000, max_samples: int | None = None,
             seed: int = 0, progress: bool = True, checks: int = 1,
             start: Network | None = None) -> tuple[Network, list[LayerReport]]:
    """Fine-tune the hidden layers 2..L−1 of ``net`` (the signed-IF conversion of ``qann``).

    ``net`` gives the QANN targets and the grid; the codes start from ``start`` (default ``net``;
    e.g. a bias-calibrated copy, :mod:`fastsnn_lava.calibrate`).
    ``x, y``: the training data (raw integers). A seeded ``heldout`` share of it
    decides the "mismatch" rule; the rest (at most ``max_samples``) trains. The
    "accuracy" rule measures the SNN on at most ``accuracy_samples`` training
    samples. ``checks``: acceptance checks per epoch, evenly spaced (1: at the end of
    each epoch, as the paper); more keep the best point within an epoch, at the cost of
    one held-out evaluation each. Returns the tuned network and one report per tuned layer.
    """
    if rule not in RULES:
        raise FastSNNError(f"--accept must be one of {RULES}, got {rule!r}")
    if any(layer.neuron == "unsigned_if" for layer in net.layers):
        raise FastSNNError("fine-tuning runs on the signed IF network: convert with --neuron signed")
    if epochs < 1 or lr <= 0 or not 0 < heldout < 1 or checks < 1:
        raise FastSNNError("--epochs and --checks must be ≥ 1, --lr > 0 and the held-out share in (0, 1)")
    ref, net = net, tuned_start(net, start)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen).numpy()
    n_held = heldout_count(len(x), heldout)
    x_held = x[perm[:n_held]]
    fit = perm[n_held:]
    if max_samples is not None:
        fit = fit[:max_samples]
    x_fit, y_fit = torch.as_tensor(x[fit]), torch.as_tensor(y[fit])
    acc_idx = perm[n_held:][:accuracy_samples]
    x_acc, y_acc = x[acc_idx], y[acc_idx]
    units = qann.units_in()
    T = net.timesteps
    reports = []
    for li in range(1, len(net.layers) - 1):
        t0 = time.time()
        layer = net.layers[li]
        theta, delta, unit = frozen_grid(qann, net, li, units)
        alpha = theta * unit
        w = torch.nn.Parameter(torch.as_tensor(layer.weight, dtype=torch.float64) * delta)
        b = torch.nn.Parameter(torch.as_tensor(layer.bias, dtype=torch.float64) * unit)
        opt = torch.optim.SGD([w, b], lr=lr, momentum=momentum, weight_decay=weight_decay)
        dtype = _exact_dtype(net)
        step_dtype = _tuning_dtype(layer, T)
        best = layer_mismatch(net, ref, x_held, li)
        before = best
        acc_best = snn_accuracy(net, x_acc, y_acc) if rule == "accuracy" else None
        acc_before, kept = acc_best, 0
        best_state = (w.detach().clone(), b.detach().clone())
        bshape = (-1, 1, 1) if layer.kind == "conv" else (-1,)
        t_train = 0.0

        def check():
            """Keep the current codes if they pass the rule, else go back to the last kept ones."""
            nonlocal net, best, acc_best, kept, best_state
            q, c = _codes(w.detach(), delta, b.detach(), unit)
            cand = _replace(net, li, q, c)
            m = layer_mismatch(cand, ref, x_held, li)
            a = snn_accuracy(cand, x_acc, y_acc) if rule == "accuracy" else None
            better = m < best if rule == "mismatch" else a > acc_best
            if force or better:
                net, best, acc_best, kept = cand, m, a, kept + 1
                best_state = (w.detach().clone(), b.detach().clone())
            else:
                with torch.no_grad():
                    w.copy_(best_state[0])
                    b.copy_(best_state[1])

        n_batches = -(-len(x_fit) // batch_size)
        every = -(-n_batches // checks)
        for epoch in range(epochs):
            t1 = time.time()
            order = torch.randperm(len(x_fit), generator=gen)
            bar = progress_bar(range(0, len(order), batch_size), desc=f"fine-tune layer {li + 1} epoch {epoch + 1}",
                       unit="batch", disable=not progress, leave=False)
            for j, s in enumerate(bar):
                idx = order[s:s + batch_size]
                xb = x_fit[idx]
                with torch.no_grad():
                    prefix = [p.to(step_dtype) for p in snn_prefix(net, xb, li, dtype)]
                    spikes = prefix[-1]
                    target = qann_levels(ref, xb, li + 1, dtype)[-1].to(step_dtype)
                    skip_t = skip_sum(layer, prefix, T, step_dtype)  # frozen shortcut currents
                    skip_total = skip_t.sum(0) if layer.skips else 0
                q, c = _codes(w, delta, b, unit)
                q, c = q.to(step_dtype), c.to(step_dtype)  # integer values: exact in step_dtype
                n_in = spikes.sum(0)
                acc = _syn(layer, n_in, q) + T * c.view(bshape) + skip_total
                k_soft = acc / theta
                with torch.no_grad():
                    cur = _syn(layer, spikes.reshape(-1, *spikes.shape[2:]), q.detach()).view(T, len(xb), *acc.shape[1:])
                    n_out = _if_layer(cur + c.detach().view(bshape) + skip_t, layer).sum(0)
                inside = ((k_soft > 0) & (k_soft <= T)).to(step_dtype)
                k_ste = k_soft * inside + (n_out - k_soft * inside).detach()
                loss = ((alpha / T) * (k_ste - target)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.2e}")
                if (j + 1) % every == 0 or j == n_batches - 1:
                    t_train += time.time() - t1
                    check()
                    t1 = time.time()
        reports.append(LayerReport(li + 1, epochs, kept, before, best, acc_before, acc_best,
                                   round(time.time() - t0, 2), round(t_train, 2), checks))
    return net, reports


def _replace(net: Network, li: int, q: torch.Tensor, c: torch.Tensor) -> Network:
    layers = list(net.layers)
    layers[li] = dataclasses.replace(layers[li], weight=q.round().long().numpy(), bias=c.round().long().numpy())
    return dataclasses.replace(net, layers=layers)
