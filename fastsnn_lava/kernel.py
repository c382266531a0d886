"""The integer simulation kernel: one layer loop for the spiking network and its quantized ANN.

:mod:`fastsnn_lava.reference` is the readable specification; this module computes the same
integers fast, and every simulating module (the engine, calibration, the tuners) runs on it.
Per layer ``l`` (``T`` steps, spikes ``s ∈ {-1, 0, +1}``)::

    first layer   I^1 = W^1·x + b^1                  once: the input is the same every step
    hidden layer  I^l(t) = W^l·s^{l-1}(t) + b^l      all T steps as one (T·B)-batch GEMM / conv
    last layer    Σ_t I^L(t) = W^L·N^{L-1} + T·b^L   once, on the spike counts N = Σ_t s(t) (linear)
    skip j → l    I^l(t) += S^{l,j}·s^j(t)           kept spike trains of the sources, same step
                                                     (on the counts N^j for the last layer)

and the IF step of :mod:`fastsnn_lava.neuron` runs in place on whole tensors (:func:`if_run`).
The quantized ANN (``mode="qann"``) runs the same synapses once on levels::

    A^1 = T·(W^1·x + b^1),   A^l = W^l·k^{l-1} + Σ_j S^{l,j}·k^j + T·b^l,   k^l = clip(⌊(A^l + θ^l/2)/θ^l⌋, 0, T)

(:func:`level`; a tie rounds up) and returns ``A^L``.

**Exactness.** Every value is an integer. With ``C^l = max_o (Σ_i |W^l_oi|·a + |b^l_o|)``
(``a`` = max|x| for the first layer, 1 for spikes, ``T`` for counts) every partial sum
of a GEMM, every current and every membrane ``|v| ≤ θ + T·C^l`` is bounded by
``M = max_l (θ^l + T·C^l)`` (:mod:`fastsnn_lava.bounds`; levels ``k ≤ T`` bound the QANN's sums
the same way). A float format holds all integers up to ``2^p`` exactly (p = 24 for float32, 53
for float64) and integer additions below that bound are exact in any order, so the kernel
computes in float32 when ``M < 2^24`` (the usual case: 8-bit weights), in float64 when
``M < 2^53``, and the engine refuses otherwise. Floor division of integers below ``2^p`` is
exact too (:func:`level`). On CUDA, TF32 is switched off and convolutions run as unfold +
matmul, so that no Winograd/FFT algorithm (inexact) can be picked.

Memory: only one layer's ``(T, B, …)`` tensor lives at a time, plus those of skip sources
until their last reader.

Speed on the CPU (all exact, see ``tests/test_engine.py`` and ``tests/test_kernel.py``): biases
added inside the convolution/GEMM; channels-last convolutions whose spikes stay channels-last
into the next layer (a dense layer reads them through a permuted weight); the IF step as a
few in-place passes (:func:`if_run`), halved for the constant-current first layer.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .ir import Layer, Network

MODES = ("snn", "qann")


def level(acc: torch.Tensor, theta: int, steps: int) -> torch.Tensor:
    """The QANN's level ``clip(⌊(A + θ/2)/θ⌋, 0, T)`` of integer accumulators ``A`` (a tie rounds up);
    floor division, exact for any integers below ``2^p`` of the dtype."""
    return torch.div(acc + theta // 2, theta, rounding_mode="floor").clamp(0, steps)


def synapse(layer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The plain current ``W·x`` of ``layer`` (or of a skip) without bias, ``x`` ``(B, …)``: differentiable in
    ``weight`` (a tensor of codes)."""
    if layer.kind == "dense":
        return x.flatten(1) @ weight.T
    return F.conv2d(x.reshape(-1, *layer.in_shape), weight, None, layer.stride, layer.padding,
                    layer.dilation, layer.groups)


def conv_unfold(x: torch.Tensor, w: torch.Tensor, layer) -> torch.Tensor:
    """conv2d as im2col + matmul: a plain GEMM, exact for integers below 2^p."""
    b = len(x)
    c_out, c_in_g, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw), layer.dilation, layer.padding, layer.stride)  # (B, C_in·kh·kw, L)
    g = layer.groups
    cols = cols.view(b, g, c_in_g * kh * kw, -1)
    out = torch.matmul(w.view(g, c_out // g, -1), cols)  # (B, g, C_out/g, L)
    h = (layer.in_shape[1] + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    return out.reshape(b, c_out, h, -1)


class Synapse:
    """A layer's (or a skip's) weights on a device/dtype; ``x`` is ``(B, *in_shape)``.

    ``codes = (q, c)``: tensors that replace the layer's weight and bias (e.g. a tuner's
    differentiable codes); the current is then the plain :func:`synapse` plus ``c``, else
    the fast forms: bias inside the GEMM/convolution, channels-last, permuted dense weight."""

    def __init__(self, layer, device: torch.device, dtype: torch.dtype, unfold: bool, codes: tuple | None = None,
                 skips: list | None = None):
        self.layer, self.unfold, self.plain = layer, unfold, codes is not None
        is_layer = isinstance(layer, Layer)
        shape = (1, -1, 1, 1) if layer.kind == "conv" else (1, -1)
        if codes is not None:
            self.weight, self.bias = codes[0], codes[1].view(shape)
        else:
            self.weight = torch.as_tensor(layer.weight, dtype=dtype, device=device)
            if is_layer:
                self.bias = torch.as_tensor(layer.bias, dtype=dtype, device=device).view(shape)
        if is_layer:
            self.skips = skips if skips is not None else [Synapse(sk, device, dtype, unfold) for sk in layer.skips]
        self.weight_t_nhwc = None
        if self.plain:
            return
        if layer.kind == "dense":
            self.weight_t = self.weight.T.contiguous()
            if len(layer.in_shape) == 3:  # reads a conv's channels-last spikes without reordering them
                c, h, w = layer.in_shape
                self.weight_t_nhwc = self.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(
                    len(self.weight), -1).T.contiguous()
        elif not unfold:  # oneDNN's channels-last kernels: ~20 % faster here; outputs stay channels-last
            self.weight = self.weight.contiguous(memory_format=torch.channels_last)

    def __call__(self, x: torch.Tensor, bias: bool = False) -> torch.Tensor:
        """The synaptic current ``W·x`` (``+ b`` with ``bias``, added inside the GEMM / convolution)."""
        layer = self.layer
        if self.plain:
            out = synapse(layer, x, self.weight)
            return out + self.bias if bias else out
        b = self.bias.view(-1) if bias else None
        if layer.kind == "dense":
            if self.weight_t_nhwc is not None and x.dim() == 4 and not x.is_contiguous() \
                    and x.is_contiguous(memory_format=torch.channels_last):
                x2, w_t = x.permute(0, 2, 3, 1).reshape(len(x), -1), self.weight_t_nhwc  # a view: no copy
            else:
                x2, w_t = x.reshape(len(x), -1), self.weight_t
            return x2 @ w_t if b is None else torch.addmm(b, x2, w_t)
        x = x.reshape(-1, *layer.in_shape)
        if not self.unfold:
            return F.conv2d(x, self.weight, b, layer.stride, layer.padding, layer.dilation, layer.groups)
        out = conv_unfold(x, self.weight, layer)
        return out if b is None else out + self.bias

    def step_currents(self, spikes: torch.Tensor, kept) -> torch.Tensor:
        """``I(t) = W·s(t) + b + Σ_j S^j·s^j(t)`` ``(T, B, …)`` of a hidden layer from the spike trains ``spikes``
        ``(T, B, …)`` of the layer before and ``kept[j]`` of its skips' sources, all T steps as one batch."""
        T, B = spikes.shape[:2]
        cur = self(spikes.reshape(T * B, *spikes.shape[2:]), bias=True)  # b^l at every step
        cur = cur.view(T, B, *cur.shape[1:])
        return cur + self.skip_current(kept, (T, B)) if self.skips else cur

    def summed_current(self, inputs: torch.Tensor, kept, steps: int) -> torch.Tensor:
        """``Σ_t I(t) = W·N + T·b + Σ_j S^j·N^j`` ``(B, …)`` on counts or levels (``inputs``, ``kept[j]``):
        linear in them, so also the QANN's accumulator ``A``."""
        return self(inputs) + steps * self.bias + self.skip_current(kept, (len(inputs),))

    def skip_current(self, kept, leading: tuple) -> torch.Tensor | int:
        """``Σ_j S^{l,j}·y^j`` over the skips; ``kept[j]`` is hidden layer j's (1-based) output ``(*leading, …)``:
        spike trains ``(T, B, …)``, or counts / levels ``(B, …)`` (the sum is linear)."""
        total = 0
        for sk in self.skips:
            y = kept[sk.layer.source]
            cur = sk(y.reshape(-1, *y.shape[len(leading):]))
            total = total + cur.view(*leading, *cur.shape[1:])
        return total


def if_run(currents: torch.Tensor, theta: int, signed: bool, constant: bool, steps: int) -> torch.Tensor:
    """Spikes ``(T, B, …)`` of IF neurons (v(0) = θ/2) driven by ``currents``.

    ``currents`` is ``(T, B, …)``, or ``(B, …)`` when ``constant`` (the same every step).
    The in-place form of :func:`fastsnn_lava.neuron.if_step`, written on the pre-spike
    membrane ``v`` (after ``v += I``) with ``m = −N ≤ 0``, minus the count::

        s = [v ≥ θ] − min([v < 0], N)        (v ≥ θ and v < 0 exclude each other;
        v ← v − θ·s,  m ← m − s              min([v < 0], N) = 1 iff v < 0 and N > 0)

    On integers both indicators are clamps of plain arithmetic, cheaper than a comparison
    written into a float tensor: ``[v ≥ θ] = clip(v − θ + 1, 0, 1)`` and
    ``−min([v < 0], N) = clip(max(v, m), −1, 0)``. A clamp of a rounded value is still exact
    (rounding is monotone and 0, ±1 are representable), so this holds beyond 2^p as well.
    Eight cheap whole-tensor passes per step, written straight into the output, which keeps
    the currents' memory layout (channels-last stays channels-last).
    """
    if constant:
        # A constant current I never makes a signed neuron fire −1: with I ≥ 0, v ≥ 0 throughout
        # (v(0) = θ/2, and it only drops by θ from v ≥ θ); with I < 0 it never reaches θ, so N = 0.
        # The unsigned step is then the same neuron, at half the passes.
        signed = False
    first = currents if constant else currents[0]
    v = first + theta // 2  # v(0) = θ/2, plus the first step's current: one pass
    if not constant:
        out = torch.empty_like(currents)
    elif first.is_contiguous() or first.is_contiguous(memory_format=torch.channels_last):  # dense: same layout
        out = torch.empty_strided((steps, *first.shape), (first.numel(), *first.stride()), dtype=first.dtype,
                                  device=first.device)
    else:
        out = torch.empty((steps, *first.shape), dtype=first.dtype, device=first.device)
    if signed:
        m, down = torch.zeros_like(first), torch.empty_like(first)
    for t in range(steps):
        if t:
            v += currents if constant else currents[t]
        s = out[t]
        torch.sub(v, theta - 1, out=s).clamp_(0, 1)
        if signed:
            torch.maximum(v, m, out=down).clamp_(-1, 0)
            s.add_(down)
            m -= s
        v.sub_(s, alpha=theta)
    return out


class Kernel:
    """The network ``net`` on a device and dtype (``steps`` T' instead of ``net.timesteps`` if given).

    ``codes``: {0-based layer index: (q, c)} tensors that replace those layers' weight and bias codes
    (their skips stay the network's); :meth:`substitute` makes such a copy of a compiled kernel."""

    def __init__(self, net: Network, dtype: torch.dtype, device="cpu", unfold: bool = False,
                 steps: int | None = None, codes: dict | None = None):
        self.net, self.dtype, self.device, self.unfold = net, dtype, torch.device(device), unfold
        self.steps = net.timesteps if steps is None else int(steps)
        self.synapses = [Synapse(layer, self.device, dtype, unfold) for layer in net.layers]
        # hidden layer j (1-based) → the last layer (0-based) whose skip reads it
        self.last_reader = {sk.source: i for i, layer in enumerate(net.layers) for sk in layer.skips}
        if codes:
            self.synapses = self.substitute(codes).synapses

    def substitute(self, codes: dict) -> "Kernel":
        """A copy whose layers in ``codes`` ({index: (q, c)}) run on those code tensors (plain synapse)."""
        syns = [Synapse(s.layer, self.device, self.dtype, self.unfold, codes[i], s.skips) if i in codes else s
                for i, s in enumerate(self.synapses)]
        new = object.__new__(Kernel)
        new.__dict__.update(self.__dict__, synapses=syns)
        return new

    def input(self, x) -> torch.Tensor:
        """Raw inputs as ``(B, *input_shape)`` in the kernel's dtype, on its device."""
        x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
        return x.to(self.device, self.dtype).reshape(-1, *self.net.input_shape)

    def walk(self, x: torch.Tensor, mode: str = "snn", upto: int | None = None,
             fire: Callable | None = None, shift: Callable | None = None,
             quantize: Callable | None = None) -> Iterator[tuple[int, Layer, torch.Tensor]]:
        """Layer by layer, ``(index, layer, output)``: per hidden layer its spike trains ``(T, B, …)``
        (``mode="snn"``) or levels ``k^l`` ``(B, …)`` (``"qann"``), then the last layer's integer output
        ``Σ_t I^L(t)`` / ``A^L`` ``(B, …)``; ``x`` is :meth:`input`'s.

        ``upto``: stop after the first ``upto`` hidden layers. Hooks, for hidden layers after the first:
        ``fire(currents, layer)`` replaces :func:`if_run` (e.g. the surrogate neuron);
        ``shift(index, currents)`` returns a per-channel shift added to every step's current (or None);
        ``quantize(index, acc)`` replaces :func:`level` (QANN mode, every hidden layer)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        T, snn = self.steps, mode == "snn"
        kept = {}  # hidden layer j (1-based) → its output, while a later skip reads it
        out = None
        for i, syn in enumerate(self.synapses):
            layer = syn.layer
            if layer.accumulates:
                if i == 0:
                    yield i, layer, T * syn(x, bias=True)
                elif snn:
                    yield i, layer, syn.summed_current(out.sum(0), {j: k.sum(0) for j, k in kept.items()}, T)
                else:
                    yield i, layer, syn.summed_current(out, kept, T)
                return
            if not snn:
                acc = T * syn(x, bias=True) if i == 0 else syn.summed_current(out, kept, T)
                out = quantize(i, acc) if quantize is not None else level(acc, layer.threshold, T)
            elif i == 0:
                cur = syn(x, bias=True)
                if layer.kind == "conv" and not syn.unfold:  # the next conv reads channels-last spikes
                    cur = cur.contiguous(memory_format=torch.channels_last)
                out = if_run(cur, layer.threshold, layer.signed, True, T)
            else:
                cur = syn.step_currents(out, kept)
                delta = shift(i, cur) if shift is not None else None
                if delta is not None:
                    cur = cur + delta.view(1, 1, -1, *[1] * (cur.dim() - 3))
                out = fire(cur, layer) if fire is not None else if_run(cur, layer.threshold, layer.signed, False, T)
            yield i, layer, out
            if upto is not None and i + 1 >= upto:
                return
            if i + 1 in self.last_reader:
                kept[i + 1] = out
            for j in [j for j, r in self.last_reader.items() if r == i]:
                del kept[j]  # read for the last time
        raise AssertionError("unreachable: the last layer accumulates")

    def outputs(self, x: torch.Tensor, mode: str = "snn", upto: int | None = None, **hooks) -> list[torch.Tensor]:
        """Every output :meth:`walk` yields, in order (hidden layers' spike trains or levels, then the
        last layer's output unless ``upto`` stops before it)."""
        return [out for _, _, out in self.walk(x, mode, upto, **hooks)]
