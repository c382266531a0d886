"""Whole-network ("tandem") fine-tuning: all hidden layers at once, distilled from the QANN.

An extension beyond the paper, for deep networks whose accumulated sequential
error the layer-wise rule (:mod:`fastsnn_lava.tuning.layerwise`) cannot absorb one layer
at a time: there layer ``l`` learns to hit the QANN's levels from noisy inputs,
but never learns which of its errors matter downstream. Here every hidden layer
2..L−1 is tuned together against the network's output.

**Forward: the true SNN.** Every hidden layer's spike trains ``s^l(t)`` come
from the integer IF simulation (exact: the layer loop of :mod:`fastsnn_lava.kernel`), so the
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

**Other neurons.** The :class:`Tuner` is the signed IF's forward; a subclass may run another
neuron on the same codes (:mod:`fastsnn_lava.tuning.cuba_tuning`: Lava's CUBA LIF) through
``tandem(make_tuner=...)``: it overrides :meth:`Tuner.forward`, the exact simulation the checks
judge (:meth:`Tuner.simulate`, None for codes that neuron cannot run: such a check is rejected)
and the exact dtype (:meth:`Tuner.exact_dtype`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Engine
from ..errors import FastSNNError
from ..ir import Network
from ..kernel import Kernel
from ..models import QuantNet
from ..options import GRADIENTS, SCHEDULES, TANDEM_LR as LR  # LR: SGD step in codes per typical batch (see the module)
from ..progress import bar as progress_bar
from ..surrogate import if_bptt
from .common import (HELDOUT, codes, frozen_grid, network_dtype, replace_codes, require_signed, split, tensor,
                     tuned_start, tuning_dtype)


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
    target: str = "signed"     # the neuron the codes were tuned through: "signed" (IF) or "cuba" (Lava's LIF)
    cuba_threshold: str | None = None  # with target "cuba": the threshold mapping (cuba.to_cuba)
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


class Tuner:
    """The network's integer layers with real-valued code masters for the hidden layers 2..L−1 (and L with ``classifier``)."""

    target, threshold = "signed", None  # the neuron tuned through (a subclass's), its threshold mapping

    def __init__(self, qann: QuantNet, net: Network, gradient: str = "bptt", classifier: bool = False,
                 steps: int | None = None):
        """``steps``: how many steps the forward runs (default: ``net``'s T); the logits are
        ``Σ_t I^L(t)`` divided by them, in the QANN's units."""
        self.net, self.T, self.gradient, self.classifier = net, steps or net.timesteps, gradient, classifier
        units = qann.units_in()
        for li in range(1, len(net.layers) - 1):
            frozen_grid(qann, net, li, units)
        self.scale = qann.layers[-1].grid(units[-1])[2] / self.T
        hidden = net.layers[1:] if classifier else net.layers[1:-1]
        self.dtype = self.exact_dtype(hidden)
        self.w = [torch.nn.Parameter(tensor(layer.weight, self.dtype)) for layer in hidden]
        self.b = [torch.nn.Parameter(tensor(layer.bias, self.dtype)) for layer in hidden]
        if net.layers[-1].skips:
            raise FastSNNError("the classifier cannot receive shortcuts: end with a hidden layer")
        self.kernel = Kernel(net, self.dtype)  # the frozen layers (first, and the classifier as converted)

    def exact_dtype(self, hidden: list) -> torch.dtype:
        """float32 when every value of the forward stays exact whatever codes the ``hidden`` layers take."""
        exact32 = all(tuning_dtype(layer, self.T) == torch.float32 for layer in hidden)
        return torch.float32 if exact32 and network_dtype(self.net) == torch.float32 else torch.float64

    def simulate(self, candidate: Network, x: np.ndarray) -> np.ndarray | None:
        """The exact integer outputs ``Σ_t I^L(t)`` of the network ``candidate`` (the engine's)."""
        return Engine(candidate, device="cpu").run(x)

    def params(self) -> list:
        return self.w + self.b

    def codes(self, state: list[torch.Tensor] | None = None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Straight-through integer codes (q, c) of every tuned layer by its 0-based index (the classifier
        too, if tuned), from the masters or from ``state`` (a list like :meth:`params`, e.g. their average)."""
        n = len(self.w)
        w, b = (self.w, self.b) if state is None else (state[:n], state[n:])
        return {i: codes(wi, 1.0, bi, 1.0) for i, (wi, bi) in enumerate(zip(w, b), start=1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real logits whose value is the SNN's; the gradient is BPTT's through the surrogate, or the QANN
        graph's at the SNN's counts (see the module). Both run the kernel's layer loop on the codes."""
        tuned = self.codes()
        xt = self.kernel.input(x)
        if self.gradient == "bptt":  # the per-step currents and the surrogate neuron: all in BPTT's graph
            out = self.kernel.substitute(tuned).outputs(xt, fire=lambda cur, layer: if_bptt(cur, layer.threshold,
                                                                                           layer.signed))
            return self.scale * out[-1]
        with torch.no_grad():  # the values: the SNN's counts N^l on the codes
            frozen = {i: (q.detach(), c.detach()) for i, (q, c) in tuned.items()}
            counts = [s.sum(0) for s in self.kernel.substitute(frozen).outputs(xt, upto=len(self.net.layers) - 1)]

        def straight_through(i: int, acc: torch.Tensor) -> torch.Tensor:
            """Ñ^l: the value N^l, the gradient of k̃^l = A^l/θ^l inside 0 < k̃ ≤ T (the first layer: N^1)."""
            if i == 0:
                return counts[0]
            k = acc / self.net.layers[i].threshold
            k = k * ((k > 0) & (k <= self.T)).to(self.dtype)
            return k + (counts[i] - k).detach()
        return self.scale * self.kernel.substitute(tuned).outputs(xt, "qann", quantize=straight_through)[-1]

    def network(self, state: list[torch.Tensor] | None = None) -> Network:
        return replace_codes(self.net, self.codes(state))


def qann_logits(net: Network, x: torch.Tensor, scale: float, dtype) -> torch.Tensor:
    """The QANN's real logits ``s·A^L`` (integer arithmetic, :func:`reference.qann_forward`)."""
    kernel = Kernel(net, network_dtype(net))
    return (scale * kernel.outputs(kernel.input(x), "qann")[-1]).to(dtype)


def kl(z_snn: torch.Tensor, z_ref: torch.Tensor, tau: float) -> torch.Tensor:
    """``KL(softmax(z_ref/τ) ‖ softmax(z_snn/τ))``, mean over the batch."""
    return F.kl_div(F.log_softmax(z_snn / tau, 1), F.log_softmax(z_ref / tau, 1), log_target=True,
                    reduction="batchmean")


def check_settings(net: Network, epochs: int, lr: float, heldout: float, checks: int, tau: float, schedule: str,
                   gradient: str, average: float, label_weight: float, y) -> None:
    """Refuse settings that cannot run (one line each, naming the option)."""
    require_signed(net)
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


@dataclasses.dataclass
class Objective:
    """The loss ``KL(z_QANN ‖ z_SNN)`` at temperature τ, plus ``label_weight·CE(z_SNN, y)`` if > 0."""
    tau: float
    label_weight: float = 0.0

    def __call__(self, z: torch.Tensor, z_ref: torch.Tensor, labels: torch.Tensor | None) -> tuple:
        """(loss, KL) of the logits ``z`` against the teacher's ``z_ref``."""
        div = kl(z, z_ref, self.tau)
        return (div + self.label_weight * F.cross_entropy(z, labels) if self.label_weight else div), div


class Checks:
    """The acceptance checks of a run (see the module): the held-out measurement, :func:`decide`'s verdict
    and what follows from it (kept codes, restored masters, the step's schedule), and the optimizer."""

    def __init__(self, tuner: Tuner, start: Network, held: tuple, objective: Objective, lr: float, schedule: str,
                 average: float):
        self.tuner, self.objective, self.schedule, self.average = tuner, objective, schedule, average
        self.x_held, self.z_held, self.y_held = held
        self.best, self.kl_before, self.agree_before = self.evaluate(start)
        self.start, self.best_kl, self.best_agree, self.kept, self.best_net = self.best, self.kl_before, \
            self.agree_before, 0, start
        self.history = [{"epoch": 0, "batch": 0, "criterion": self.best, "kl": self.kl_before,
                         "agreement": self.agree_before, "decision": "start"}]
        self.best_state = [p.detach().clone() for p in tuner.params()]
        self.mean = [p.detach().clone() for p in tuner.params()] if average else None
        self.step_lr, self.base_lr = lr, lr
        self.restart()

    def restart(self) -> torch.optim.Optimizer:
        """A fresh SGD (momentum 0.9) at the current step."""
        self.opt = torch.optim.SGD(self.tuner.params(), lr=self.step_lr, momentum=0.9)
        return self.opt

    def set_lr(self, lr: float) -> None:
        self.step_lr = lr
        for g in self.opt.param_groups:
            g["lr"] = lr

    def evaluate(self, candidate: Network) -> tuple[float, float, float]:
        """(criterion, KL, agreement with the QANN) of ``candidate`` on the held-out share, simulated exactly
        (:meth:`Tuner.simulate`); infinite criterion and KL for codes the tuner's neuron cannot run."""
        out = self.tuner.simulate(candidate, self.x_held.numpy())
        if out is None:
            return math.inf, math.inf, 0.0
        out = torch.as_tensor(out, dtype=self.tuner.dtype)
        z = self.tuner.scale * out
        crit, div = self.objective(z, self.z_held, self.y_held)
        return float(crit), float(div), float((z.argmax(1) == self.z_held.argmax(1)).double().mean())

    def step(self) -> None:
        """After an optimizer step: the moving average of the masters, if averaging."""
        if self.mean is not None:
            with torch.no_grad():
                for m, p in zip(self.mean, self.tuner.params()):
                    m.mul_(self.average).add_(p, alpha=1 - self.average)

    def check(self, epoch: int, batch: int) -> None:
        """Judge the candidate codes if any has moved since the last kept ones, and act on the verdict."""
        cand = self.tuner.network(self.mean)
        if all(a.equals(b) for a, b in zip(cand.layers, self.best_net.layers)):
            return  # no code has moved yet: keep accumulating, nothing to judge
        crit, div, agree = self.evaluate(cand)
        verdict = decide(crit, self.best, self.start, self.mean is not None)
        self.history.append({"epoch": epoch, "batch": batch, "criterion": crit, "kl": div, "agreement": agree,
                             "decision": verdict})
        if verdict == KEEP:
            self.best, self.best_kl, self.best_agree, self.kept, self.best_net = crit, div, agree, self.kept + 1, cand
            self.best_state = [p.detach().clone() for p in (self.mean or self.tuner.params())]  # the judged state
        elif verdict == GO_ON:  # averaging: the trajectory goes on
            if self.schedule == "halve":
                self.set_lr(self.step_lr / 2)
        else:  # RESTORE, or DIVERGED (averaging, and worse than the start)
            with torch.no_grad():
                for p, v in zip(self.tuner.params(), self.best_state):
                    p.copy_(v)
                for m, v in zip(self.mean or [], self.best_state):
                    m.copy_(v)
            if self.schedule == "halve":
                self.step_lr /= 2  # a rejected check: restart from the kept codes with half the step, no momentum
            elif verdict == DIVERGED:
                self.base_lr /= 2
            self.restart()


def tandem(qann: QuantNet, net: Network, x: np.ndarray, epochs: int = 1, lr: float = LR,
           batch_size: int = 128, heldout: float = HELDOUT, max_samples: int | None = None, seed: int = 0,
           progress: bool = True, checks: int = 1, tau: float = 1.0, schedule: str = "halve",
           y: np.ndarray | None = None, label_weight: float = 0.0,
           start: Network | None = None, gradient: str = "bptt",
           classifier: bool = False, average: float = 0.0,
           make_tuner: Callable[..., Tuner] = Tuner) -> tuple[Network, TandemReport]:
    """Tune hidden layers 2..L−1 of ``net`` (the signed-IF conversion of ``qann``) together; see the module.

    ``net`` is the teacher (its integer QANN) and fixes the grid; the codes start from ``start``
    (default ``net``; e.g. a bias-calibrated copy, :mod:`fastsnn_lava.tuning.calibration`).
    ``x``: raw training inputs (no labels needed: the QANN is the teacher). A seeded ``heldout`` share
    decides acceptance; the rest (at most ``max_samples``) trains. ``lr``: the step of a typical code per
    batch, in integer codes (gradients scaled by their first-batch RMS); ``tau``: the distillation temperature.
    ``label_weight`` > 0 (needs the labels ``y``): the loss, and the held-out criterion, gain
    ``label_weight·CE(z_SNN, y)`` beside the KL. ``gradient``: ``"bptt"`` or ``"qann"`` (see the module).
    ``classifier``: also tune the classifier's codes (default: they stay as converted).
    ``average``: judge the codes of the masters' moving average with this decay per step (0: off; see the module).
    ``make_tuner(qann, start, gradient, classifier)``: the forward (default the signed IF's :class:`Tuner`).
    """
    check_settings(net, epochs, lr, heldout, checks, tau, schedule, gradient, average, label_weight, y)
    start = tuned_start(net, start)
    t0 = time.time()
    tuner = make_tuner(qann, start, gradient, classifier)
    gen = torch.Generator().manual_seed(seed)
    held, rest = split(len(x), heldout, gen)
    fit = rest[:max_samples] if max_samples is not None else rest
    x_held, x_fit = torch.as_tensor(x[held]), torch.as_tensor(x[fit])
    y_held, y_fit = (torch.as_tensor(y[i]).long() if y is not None else None for i in (held, fit))
    with torch.no_grad():  # the teacher's logits, once (integer arithmetic: the same in any batching)
        z_held, z_fit = (torch.cat([qann_logits(net, v[s:s + 512], tuner.scale, tuner.dtype)
                                    for s in range(0, len(v), 512)]) for v in (x_held, x_fit))
    objective = Objective(tau, label_weight)
    judge = Checks(tuner, start, (x_held, z_held, y_held), objective, lr, schedule, average)
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
                judge.set_lr(judge.base_lr * 0.5 * (1 + math.cos(math.pi * (epoch * n_batches + j)
                                                                 / (epochs * n_batches))))
            idx = order[s:s + batch_size]
            loss, div = objective(tuner.forward(x_fit[idx]), z_fit[idx], y_fit[idx] if label_weight else None)
            judge.opt.zero_grad()
            loss.backward()
            if rms is None:  # the first batch's gradient RMS of each tensor fixes its scale for the whole run
                rms = [float(p.grad.pow(2).mean().sqrt()) or 1.0 for p in tuner.params()]
            for p, r in zip(tuner.params(), rms):
                p.grad.div_(r)
            judge.opt.step()
            judge.step()
            bar.set_postfix(kl=f"{div.item():.3f}", heldout=f"{judge.best:.4f}", lr=f"{judge.step_lr:.2g}")
            if (j + 1) % every == 0 or j == n_batches - 1:
                t_train += time.time() - t1
                judge.check(epoch + 1, j + 1)
                t1 = time.time()
    best_net = judge.best_net
    changed = sum(int((a.weight != b.weight).sum() + (a.bias != b.bias).sum())
                  for a, b in zip(net.layers, best_net.layers))
    return best_net, TandemReport(epochs, checks, judge.kept, judge.kl_before, judge.best_kl, judge.agree_before,
                                  judge.best_agree, changed, round(time.time() - t0, 2), round(t_train, 2),
                                  judge.step_lr, label_weight, gradient, classifier, average, tuner.target,
                                  tuner.threshold, judge.history)
