"""Whole-network ("tandem") fine-tuning: all hidden layers at once, distilled from the QANN.

An extension beyond the paper, for deep networks whose accumulated sequential
error the layer-wise rule (:mod:`fastsnn_lava.finetune`) cannot absorb one layer
at a time: there layer ``l`` learns to hit the QANN's levels from noisy inputs,
but never learns which of its errors matter downstream. Here every hidden layer
2..L−1 is tuned together against the network's output.

**Forward: the true SNN.** Every hidden layer's spike trains ``s^l(t)`` come
from the integer IF simulation (exact, as :mod:`fastsnn_lava.engine`), so the
loss sees exactly what Lava will compute.

**Backward, two choices** (``gradient``):

* ``"bptt"`` (default): backpropagation through the T steps of every layer, the
  IF step's jump replaced by a ramp one threshold wide (:mod:`fastsnn_lava.surrogate`)::

      I^l(t) = W_q^l·s^{l−1}(t) + c^l + Σ_j S^{l,j}·s^j(t),     s^l = if_bptt(I^l)
      z      = s·(W_q^L·Σ_t s^{L−1}(t) + T·c^L),     s = u^L / T      (the real logits)

  It sees the order of the spikes within the window, which is where the sequential
  error lives, and on the README's ResNet-20 it tunes further than ``"qann"`` in fewer
  epochs, at about twice the time per batch.
* ``"qann"``: the QANN's graph at the SNN's counts (straight-through, the
  layer-wise rule's step 4 chained through the network)::

      k̃^l = (W_q^l·Ñ^{l−1} + T·c^l + Σ_j S^{l,j}·Ñ^j) / θ^l,     m^l = [0 < k̃^l ≤ T]
      Ñ^l = k̃^l·m^l + (N^l − k̃^l·m^l).detach()                   (value N^l, gradient of k̃^l)
      z   = s·(W_q^L·Ñ^{L−1} + T·c^L)

**Loss: distillation to the QANN**, ``KL(softmax(z_QANN/τ) ‖ softmax(z_SNN/τ))``,
with ``z_QANN`` the QANN's logits on the same batch. The SNN is pulled towards its
QANN, not trained further on the labels, so "within x pp of the QANN" stays a
statement about conversion. Optionally (``label_weight`` w > 0) the loss is
``KL + w·CE(z_SNN, y)``: the paper's own acceptance rule also looks at the labels
(training accuracy); then the SNN may also learn where its QANN was wrong.

As in the layer-wise rule, the grid is frozen (θ, Δ, u as exported; the first
layer is not tuned) and the masters are the integer codes themselves,
``q = round(q̂)``, ``c = round(ĉ)``, so the result exports losslessly. The
classifier's codes ``W_q^L, c^L`` stay as converted unless ``classifier=True``:
then they are tuned too (same grid, same code limits), so the readout can also
adapt to the counts the SNN actually fires; its gradient needs no surrogate.

**Steps: SGD with momentum 0.9 on a fixed scale.** Each tensor's gradient is
divided by its RMS on the first batch, so ``lr`` is the step, in integer codes,
of a typical code on a typical batch, whatever the logits' scale: the default
0.005 moves a code by one after some hundred agreeing batches (with momentum ×10,
after about ten). A per-step normalisation (Adam) instead moved every code at
once and broke the network in three steps.

**Acceptance:** ``checks`` times per epoch, if any code has moved, the whole
SNN's mean KL on a held-out share of the training data is measured; the codes are
kept only if it falls, otherwise the masters go back to the last kept codes (and
the momentum restarts). ``schedule="halve"``: each rejection also halves the
learning rate (the step was too large to improve on them); ``"cosine"``: the step
follows ``lr·½(1 + cos(π·i/n))`` over the run's ``n`` batches whatever the checks say,
so a few early rejections cannot shrink it for the rest of the run.

**Averaging** (``average`` = d > 0, off by default): the candidates judged at the checks
are the codes of an exponential moving average of the masters (Polyak averaging),
``q̄ ← d·q̄ + (1 − d)·q̂`` after every step, ``q = round(q̄)``. A master near a rounding
boundary flips its code back and forth from batch to batch; the average settles it on the side
the recent batches favour. The masters then do not go back at a rejection (the best
averaged codes are still what is returned): the training trajectory is not thrown away when
a noisy held-out measurement says no. Only a check worse than the network the run started
from means the run has diverged: then masters and average go back to the kept codes, the
momentum restarts and the step is halved from there on (under ``"cosine"`` too).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .progress import bar as progress_bar
from .errors import FastSNNError
from .finetune import (HELDOUT, _codes, _exact_dtype, _if_layer, _t, _tuning_dtype, frozen_grid, heldout_count,
                       qann_levels, snn_prefix, tuned_start)
from .reference import skip_sum
from .reference import synapse as _syn
from .ir import Network
from .surrogate import if_bptt
from .models import QuantNet


LR = 0.005  # SGD step in codes per typical batch (see the module)
SCHEDULES = ("halve", "cosine")
GRADIENTS = ("bptt", "qann")


@dataclasses.dataclass
class TandemReport:
    epochs: int
    checks_per_epoch: int
    checks_kept: int
    heldout_kl_before: float   # mean KL(QANN ‖ SNN) on the held-out share, nats
    heldout_kl_after: float
    heldout_agreement_before: float  # share of held-out samples where SNN and QANN predict the same class
    heldout_agreement_after: float
    codes_changed: int         # weight and bias codes that differ from the conversion's
    seconds: float
    train_seconds: float
    final_lr: float            # the last step's learning rate (after the halvings, or the cosine's end)
    label_weight: float = 0.0  # weight of the label cross-entropy beside the KL (0: pure distillation)
    gradient: str = "qann"     # the backward: "bptt" (surrogate through the steps) or "qann" (count-level)
    classifier: bool = False   # whether the classifier's codes were tuned too
    average: float = 0.0       # EMA decay of the judged code masters per step (0: the masters themselves)
    # the checks: epoch, batch, held-out criterion, KL, agreement and decide()'s verdict; first the start ("start")
    history: list = dataclasses.field(default_factory=list)


KEEP, GO_ON, RESTORE, DIVERGED = "keep", "go on", "restore", "diverged"


def decide(criterion: float, best: float, start: float, averaging: bool) -> str:
    """The acceptance rule at a check (see the module), on the held-out criterion of the candidate codes.

    ``KEEP`` when it is below ``best`` (the last kept network's); otherwise without averaging
    ``RESTORE`` (masters back to the kept codes); with averaging ``GO_ON`` (the trajectory goes on)
    unless it is worse than ``start`` (the network the run started from): then ``DIVERGED``.
    """
    if criterion < best:
        return KEEP
    if not averaging:
        return RESTORE
    return GO_ON if criterion <= start else DIVERGED


class _Tuner:
    """The network's integer layers with real-valued code masters for the hidden layers 2..L−1 (and L with ``classifier``)."""

    def __init__(self, qann: QuantNet, net: Network, gradient: str = "bptt", classifier: bool = False):
        self.net, self.T, self.gradient, self.classifier = net, net.timesteps, gradient, classifier
        units = qann.units_in()
        for li in range(1, len(net.layers) - 1):
            frozen_grid(qann, net, li, units)
        self.scale = qann.layers[-1].grid(units[-1])[2] / self.T
        self.in_dtype = _exact_dtype(net)
        hidden = net.layers[1:] if classifier else net.layers[1:-1]
        exact32 = all(_tuning_dtype(layer, self.T) == torch.float32 for layer in hidden)
        self.dtype = torch.float32 if exact32 and self.in_dtype == torch.float32 else torch.float64
        self.w = [torch.nn.Parameter(_t(layer.weight, self.dtype)) for layer in hidden]
        self.b = [torch.nn.Parameter(_t(layer.bias, self.dtype)) for layer in hidden]
        last = net.layers[-1]
        self.frozen_out = (_t(last.weight, self.dtype), _t(last.bias, self.dtype))  # the classifier as converted
        if last.skips:
            raise FastSNNError("the classifier cannot receive shortcuts: end with a hidden layer")

    def params(self) -> list:
        return self.w + self.b

    def codes(self, state: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Straight-through integer codes (q, c) of every tuned layer (the classifier last, if tuned),
        from the masters or from ``state`` (a list like :meth:`params`, e.g. their average)."""
        n = len(self.w)
        w, b = (self.w, self.b) if state is None else (state[:n], state[n:])
        return [_codes(wi, 1.0, bi, 1.0) for wi, bi in zip(w, b)]

    def logits(self, counts: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``s·(W_q^L·N^{L−1} + T·c^L)``, with the classifier's tuned codes ``out`` if given."""
        last = self.net.layers[-1]
        w, b = out if out is not None else self.frozen_out
        return self.scale * (_syn(last, counts, w) + self.T * b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real logits whose value is the SNN's; the gradient is BPTT's through the surrogate, or the QANN
        graph's at the SNN's counts (see the module)."""
        T, dt = self.T, self.dtype
        first = snn_prefix(self.net, x, 1, self.in_dtype)[0].to(dt)
        spikes, counts = [first], [first.sum(0)]
        bptt = self.gradient == "bptt"
        codes = self.codes()
        out = codes.pop() if self.classifier else None
        for layer, (q, c) in zip(self.net.layers[1:-1], codes):
            bshape = (-1, 1, 1) if layer.kind == "conv" else (-1,)
            with contextlib.nullcontext() if bptt else torch.no_grad():  # the per-step currents: in BPTT's graph
                cur = _syn(layer, spikes[-1].reshape(-1, *spikes[-1].shape[2:]), q)
                cur = cur.view(T, len(x), *cur.shape[1:]) + c.view(bshape) + skip_sum(layer, spikes, T, dt)
                s = if_bptt(cur, layer.threshold, layer.neuron == "signed_if") if bptt else _if_layer(cur, layer)
            spikes.append(s)
            if bptt:
                counts.append(s.sum(0))
                continue
            acc = _syn(layer, counts[-1], q) + T * c.view(bshape) + skip_sum(layer, counts, dtype=dt)
            k = acc / layer.threshold
            k = k * ((k > 0) & (k <= T)).to(dt)
            counts.append(k + (s.sum(0) - k).detach())
        return self.logits(counts[-1], out)

    def network(self, state: list[torch.Tensor] | None = None) -> Network:
        layers = list(self.net.layers)
        for i, (q, c) in enumerate(self.codes(state), start=1):
            layers[i] = dataclasses.replace(layers[i], weight=q.detach().round().long().numpy(),
                                            bias=c.detach().round().long().numpy())
        return dataclasses.replace(self.net, layers=layers)


def qann_logits(net: Network, x: torch.Tensor, scale: float, dtype) -> torch.Tensor:
    """The QANN's real logits ``s·A^L`` (integer arithmetic, :func:`reference.qann_forward`)."""
    levels = qann_levels(net, x, len(net.layers) - 1, _exact_dtype(net))
    last = net.layers[-1]
    a = _syn(last, levels[-1], _t(last.weight, levels[-1].dtype)) + net.timesteps * _t(last.bias, levels[-1].dtype)
    return (scale * a).to(dtype)


def _kl(z_snn: torch.Tensor, z_ref: torch.Tensor, tau: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(z_snn / tau, 1), F.log_softmax(z_ref / tau, 1), log_target=True,
                    reduction="batchmean")


def tandem(qann: QuantNet, net: Network, x: np.ndarray, epochs: int = 1, lr: float = LR,
           batch_size: int = 128, heldout: float = HELDOUT, max_samples: int | None = None, seed: int = 0,
           progress: bool = True, checks: int = 1, tau: float = 1.0, schedule: str = "halve",
           y: np.ndarray | None = None, label_weight: float = 0.0,
           start: Network | None = None, gradient: str = "bptt",
           classifier: bool = False, average: float = 0.0) -> tuple[Network, TandemReport]:
    """Tune hidden layers 2..L−1 of ``net`` (the signed-IF conversion of ``qann``) together; see the module.

    ``net`` is the teacher (its integer QANN) and fixes the grid; the codes start from ``start``
    (default ``net``; e.g. a bias-calibrated copy, :mod:`fastsnn_lava.calibrate`).
    ``x``: raw training inputs (no labels needed: the QANN is the teacher). A seeded ``heldout`` share
    decides acceptance; the rest (at most ``max_samples``) trains. ``lr``: the step of a typical code per
    batch, in integer codes (gradients scaled by their first-batch RMS); ``tau``: the distillation temperature.
    ``label_weight`` > 0 (needs the labels ``y``): the loss, and the held-out criterion, gain
    ``label_weight·CE(z_SNN, y)`` beside the KL. ``gradient``: ``"bptt"`` or ``"qann"`` (see the module).
    ``classifier``: also tune the classifier's codes (default: they stay as converted).
    ``average``: judge the codes of the masters' moving average with this decay per step (0: off; see the module).
    """
    if any(layer.neuron == "unsigned_if" for layer in net.layers):
        raise FastSNNError("fine-tuning runs on the signed IF network: convert with --neuron signed")
    if schedule not in SCHEDULES:
        raise FastSNNError(f"--schedule must be one of {SCHEDULES}, got {schedule!r}")
    if gradient not in GRADIENTS:
        raise FastSNNError(f"--gradient must be one of {GRADIENTS}, got {gradient!r}")
    if epochs < 1 or lr <= 0 or not 0 < heldout < 1 or checks < 1 or tau <= 0:
        raise FastSNNError("--epochs and --checks must be ≥ 1, --lr > 0 and the held-out share in (0, 1)")
    if not 0 <= average < 1:
        raise FastSNNError(f"--average must be in [0, 1) (an EMA decay per step; 0: off), got {average}")
    if label_weight < 0 or (label_weight > 0 and y is None):
        raise FastSNNError("--labels must be ≥ 0, and a label term needs the training labels")
    if len(net.layers) < 3:
        raise FastSNNError("the network has no hidden layer after the first: nothing to fine-tune")
    start = tuned_start(net, start)
    t0 = time.time()
    tuner = _Tuner(qann, start, gradient, classifier)
    dt = tuner.dtype
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen).numpy()
    n_held = heldout_count(len(x), heldout)
    x_held = torch.as_tensor(x[perm[:n_held]])
    fit = perm[n_held:][:max_samples] if max_samples is not None else perm[n_held:]
    x_fit = torch.as_tensor(x[fit])
    y_held, y_fit = (torch.as_tensor(y[i]).long() if y is not None else None for i in (perm[:n_held], fit))
    with torch.no_grad():  # the teacher's logits, once (integer arithmetic: the same in any batching)
        z_held, z_fit = (torch.cat([qann_logits(net, v[s:s + 512], tuner.scale, dt) for s in range(0, len(v), 512)])
                         for v in (x_held, x_fit))

    def loss_of(z: torch.Tensor, z_ref: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        kl = _kl(z, z_ref, tau)
        return (kl + label_weight * F.cross_entropy(z, labels) if label_weight else kl), kl

    def evaluate(candidate: Network) -> tuple[float, float, float]:
        from .engine import Engine
        out = torch.as_tensor(Engine(candidate, device="cpu").run(x_held.numpy()), dtype=dt)
        z = tuner.scale * out
        crit, kl = loss_of(z, z_held, y_held)
        return float(crit), float(kl), float((z.argmax(1) == z_held.argmax(1)).double().mean())

    best, kl_before, agree_before = evaluate(start)
    history = [{"epoch": 0, "batch": 0, "criterion": best, "kl": kl_before, "agreement": agree_before,
                "decision": "start"}]
    best_kl, best_agree, kept, best_net = kl_before, agree_before, 0, start
    best_state = [p.detach().clone() for p in tuner.params()]
    mean = [p.detach().clone() for p in tuner.params()] if average else None
    step_lr, base_lr, start_crit = lr, lr, best
    opt = torch.optim.SGD(tuner.params(), lr=step_lr, momentum=0.9)
    n_batches = -(-len(x_fit) // batch_size)
    every = -(-n_batches // checks)
    t_train, rms = 0.0, None
    for epoch in range(epochs):
        t1 = time.time()
        order = torch.randperm(len(x_fit), generator=gen)
        bar = progress_bar(range(0, len(order), batch_size), desc=f"tandem fine-tune epoch {epoch + 1}", unit="batch",
                   disable=not progress, leave=False)
        for j, s in enumerate(bar):
            if schedule == "cosine":  # lr·½(1 + cos(π·step/steps)) over the whole run
                step_lr = base_lr * 0.5 * (1 + math.cos(math.pi * (epoch * n_batches + j) / (epochs * n_batches)))
                for g in opt.param_groups:
                    g["lr"] = step_lr
            idx = order[s:s + batch_size]
            loss, kl = loss_of(tuner.forward(x_fit[idx]), z_fit[idx], y_fit[idx] if label_weight else None)
            opt.zero_grad()
            loss.backward()
            if rms is None:  # the first batch's gradient RMS of each tensor fixes its scale for the whole run
                rms = [float(p.grad.pow(2).mean().sqrt()) or 1.0 for p in tuner.params()]
            for p, r in zip(tuner.params(), rms):
                p.grad.div_(r)
            opt.step()
            if mean is not None:
                with torch.no_grad():
                    for m, p in zip(mean, tuner.params()):
                        m.mul_(average).add_(p, alpha=1 - average)
            bar.set_postfix(kl=f"{kl.item():.3f}", heldout=f"{best:.4f}", lr=f"{step_lr:.2g}")
            if (j + 1) % every == 0 or j == n_batches - 1:
                t_train += time.time() - t1
                cand = tuner.network(mean)
                if all(a.equals(b) for a, b in zip(cand.layers, best_net.layers)):
                    t1 = time.time()  # no code has moved yet: keep accumulating, nothing to judge
                    continue
                crit, kl, agree = evaluate(cand)
                verdict = decide(crit, best, start_crit, mean is not None)
                history.append({"epoch": epoch + 1, "batch": j + 1, "criterion": crit, "kl": kl,
                                "agreement": agree, "decision": verdict})
                if verdict == KEEP:
                    best, best_kl, best_agree, kept, best_net = crit, kl, agree, kept + 1, cand
                    best_state = [p.detach().clone() for p in (mean or tuner.params())]  # the judged state
                elif verdict == GO_ON:  # averaging: the trajectory goes on
                    if schedule == "halve":
                        step_lr /= 2
                        for g in opt.param_groups:
                            g["lr"] = step_lr
                else:  # RESTORE, or DIVERGED (averaging, and worse than the start)
                    with torch.no_grad():
                        for p, v in zip(tuner.params(), best_state):
                            p.copy_(v)
                        for m, v in zip(mean or [], best_state):
                            m.copy_(v)
                    if schedule == "halve":
                        step_lr /= 2  # a rejected check: restart from the kept codes with half the step, no momentum
                    elif verdict == DIVERGED:
                        base_lr /= 2
                    opt = torch.optim.SGD(tuner.params(), lr=step_lr, momentum=0.9)
                t1 = time.time()
    changed = sum(int((a.weight != b.weight).sum() + (a.bias != b.bias).sum())
                  for a, b in zip(net.layers, best_net.layers))
    return best_net, TandemReport(epochs, checks, kept, kl_before, best_kl, agree_before, best_agree, changed,
                                  round(time.time() - t0, 2), round(t_train, 2), step_lr, label_weight,
                                  gradient, classifier, average, history)
