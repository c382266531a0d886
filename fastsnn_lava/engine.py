"""The evaluation engine: the reference simulation, fast and bit-exact.

:mod:`fastsnn_lava.reference` is the readable specification; this module computes
the same integers faster. Per layer ``l`` (``T`` steps, spikes ``s ∈ {-1, 0, +1}``)::

    first layer   I^1 = W^1·x + b^1                  once: the input is the same every step
    hidden layer  I^l(t) = W^l·s^{l-1}(t) + b^l      all T steps as one (T·B)-batch GEMM / conv
    last layer    Σ_t I^L(t) = W^L·N^{L-1} + T·b^L   once, on the spike counts N = Σ_t s(t) (linear)
    skip j → l    I^l(t) += S^{l,j}·s^j(t)           kept spike trains of the sources, same step
                                                     (on the counts N^j for the last layer)

and the IF step of :mod:`fastsnn_lava.neuron` runs in place on whole tensors.

**Exactness.** Every value is an integer. With ``C^l = max_o (Σ_i |W^l_oi|·a + |b^l_o|)``
(``a`` = max|x| for the first layer, 1 for spikes, ``T`` for counts) every partial sum
of a GEMM, every current and every membrane ``|v| ≤ θ + T·C^l`` is bounded by
``M = max_l (θ^l + T·C^l)``. A float format holds all integers up to ``2^p`` exactly
(p = 24 for float32, 53 for float64) and integer additions below that bound are exact
in any order, so the engine computes in float32 when ``M < 2^24`` (the usual case:
8-bit weights), in float64 when ``M < 2^53``, and refuses otherwise. On CUDA, TF32 is
switched off and convolutions run as unfold + matmul, so that no Winograd/FFT
algorithm (inexact) can be picked.

Memory stays bounded: inputs stream through in batches; only one layer's
``(T, B, …)`` tensor lives at a time, plus those of skip sources until their last reader.

Speed on the CPU (all exact, see ``tests/test_engine.py``): batches sized to stay in cache;
biases added inside the convolution/GEMM; channels-last convolutions whose spikes stay
channels-last into the next layer (a dense layer reads them through a permuted weight);
freed batch tensors kept in malloc's heap (:func:`keep_heap_pages`); the IF step as a few
in-place passes (:func:`if_run`), halved for the constant-current first layer.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FastSNNError
from .ir import Layer, Network

EXACT_BITS = {torch.float32: 24, torch.float64: 53}
_HEAP_TUNED = []


def keep_heap_pages() -> bool:
    """Ask glibc's malloc to serve the engine's per-batch tensors (≤ 32 MiB) from its heap and
    not to hand freed memory back to the kernel (``mallopt``: ``M_MMAP_THRESHOLD`` = 32 MiB,
    ``M_TRIM_THRESHOLD`` = 1 GiB). Otherwise every batch's few-MiB tensors are fresh ``mmap``
    pages, zero-filled by the kernel on first touch: on the Fashion CNN that was 170 k page
    faults per 2 k images and a third of the run time. Process-wide, once; freed memory
    stays reserved for reuse (the peak is unchanged). Returns whether it applied (glibc only)."""
    if not _HEAP_TUNED:
        ok = False
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(-3, 32 * 2 ** 20)) and bool(libc.mallopt(-1, 2 ** 30))  # MMAP, TRIM
        except (OSError, AttributeError):
            pass
        _HEAP_TUNED.append(ok)
    return _HEAP_TUNED[0]


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def current_bound(layer: Layer, in_abs: int) -> int:
    """C = max over outputs of Σ|W|·in_abs + |b|: the largest |current| a step can bring."""
    w = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(1)
    return int((w * int(in_abs) + np.abs(layer.bias)).max())


def value_bound(net: Network, timesteps: int, input_abs: int) -> int:
    """M: a bound on |every integer| the engine computes (see the module docstring);
    a layer's skip synapses add ``Σ_i |S_oi|`` (spikes are ±1) to its ``C``."""
    m = 0
    for i, layer in enumerate(net.layers):
        c = current_bound(layer, input_abs if i == 0 else 1)
        c += sum(int(np.abs(sk.weight).reshape(sk.weight.shape[0], -1).sum(1).max()) for sk in layer.skips)
        m = max(m, (layer.threshold or 0) + timesteps * c)
    return m


def exact_dtype(net: Network, timesteps: int, input_abs: int) -> torch.dtype:
    """The narrowest float dtype that holds every value exactly."""
    m = value_bound(net, timesteps, input_abs)
    for dtype, p in EXACT_BITS.items():
        if m < 2 ** p:
            return dtype
    raise FastSNNError(f"values up to {m} exceed 2^53: the network's weights or inputs are too large to simulate")


class _Synapse:
    """A layer's (or a skip's) weights on the engine's device/dtype; ``x`` is ``(B, *in_shape)``."""

    def __init__(self, layer, device: torch.device, dtype: torch.dtype, unfold: bool):
        self.layer = layer
        self.weight = torch.as_tensor(layer.weight, dtype=dtype, device=device)
        if isinstance(layer, Layer):
            shape = (1, -1, 1, 1) if layer.kind == "conv" else (1, -1)
            self.bias = torch.as_tensor(layer.bias, dtype=dtype, device=device).view(shape)
            self.skips = [_Synapse(sk, device, dtype, unfold) for sk in layer.skips]
        self.unfold = unfold
        self.weight_t_nhwc = None
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
        out = _conv_unfold(x, self.weight, layer)
        return out if b is None else out + self.bias

    def skip_current(self, kept: list, leading: tuple) -> torch.Tensor | int:
        """``Σ_j S^{l,j}·y^j`` over the skips; ``kept[j-1]`` is layer j's spikes ``(*leading, …)``
        (``(T, B, …)``, or counts ``(B, …)`` for the accumulating last layer: the sum is linear)."""
        total = 0
        for sk in self.skips:
            y = kept[sk.layer.source - 1]
            cur = sk(y.reshape(-1, *y.shape[len(leading):]))
            total = total + cur.view(*leading, *cur.shape[1:])
        return total


def _conv_unfold(x: torch.Tensor, w: torch.Tensor, layer) -> torch.Tensor:
    """conv2d as im2col + matmul: a plain GEMM, exact for integers below 2^p."""
    b = len(x)
    c_out, c_in_g, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw), layer.dilation, layer.padding, layer.stride)  # (B, C_in·kh·kw, L)
    g = layer.groups
    cols = cols.view(b, g, c_in_g * kh * kw, -1)
    out = torch.matmul(w.view(g, c_out // g, -1), cols)  # (B, g, C_out/g, L)
    h = (layer.in_shape[1] + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    return out.reshape(b, c_out, h, -1)


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


class Engine:
    """The spiking network ``net`` compiled for fast, exact batched evaluation.

    ``timesteps``: run T' steps instead of ``net.timesteps`` (same thresholds, v(0) = θ/2).
    ``device``: default CUDA if present, else CPU; ``threads``: CPU threads (default: torch's, one per physical core).
    ``unfold``: convolutions as unfold + matmul (default: on CUDA only).
    """

    def __init__(self, net: Network, timesteps: int | None = None, device=None, threads: int | None = None,
                 unfold: bool | None = None):
        self.net = net
        self.steps = net.timesteps if timesteps is None else int(timesteps)
        if self.steps < 1:
            raise FastSNNError(f"timesteps must be at least 1, got {self.steps}")
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        elif threads:  # torch's default already uses every physical core
            torch.set_num_threads(int(threads))
        self.unfold = self.device.type == "cuda" if unfold is None else bool(unfold)
        if self.device.type == "cpu":
            keep_heap_pages()
        self._compiled, self._dtypes = {}, {}

    def _synapses(self, input_abs: int):
        a = max(int(input_abs), self.net.input_max)
        if a not in self._dtypes:  # the bound sums every weight: once per input range, not per batch
            self._dtypes[a] = exact_dtype(self.net, self.steps, a)
        dtype = self._dtypes[a]
        if dtype not in self._compiled:
            self._compiled[dtype] = (dtype, [_Synapse(l, self.device, dtype, self.unfold) for l in self.net.layers])
        return self._compiled[dtype]

    @torch.no_grad()
    def forward(self, x, counts: list | None = None, upto: int | None = None) -> torch.Tensor | None:
        """Integer outputs ``Σ_t I^L(t)`` ``(B, n_out)`` (a float tensor holding integers).

        ``counts``: a list that receives each hidden layer's spike count ``N^l = Σ_t s^l(t)``;
        ``upto``: stop after the first ``upto`` hidden layers and return None (their counts are in ``counts``)."""
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        input_abs = max(abs(int(v)) for v in torch.aminmax(x)) if x.numel() else 0  # one pass, no copy
        dtype, syns = self._synapses(input_abs)
        a = x.to(self.device, dtype).reshape(-1, *self.net.input_shape)
        T, B = self.steps, len(a)
        last_reader = {sk.source: i for i, layer in enumerate(self.net.layers) for sk in layer.skips}
        kept = []  # spikes (T, B, …) of hidden layer j while a later skip reads them, else None
        spikes = None
        for i, (layer, syn) in enumerate(zip(self.net.layers, syns)):
            if layer.neuron == "accumulate":
                if i == 0:
                    return T * (syn(a) + syn.bias)
                counts = [k.sum(0) if k is not None else None for k in kept]
                return syn(spikes.sum(0)) + T * syn.bias + syn.skip_current(counts, (B,))
            if i == 0:
                cur = syn(a, bias=True)
                if layer.kind == "conv" and not syn.unfold:  # the next conv reads channels-last spikes
                    cur = cur.contiguous(memory_format=torch.channels_last)
                spikes = if_run(cur, layer.threshold, layer.neuron == "signed_if", True, T)
            else:
                cur = syn(spikes.reshape(T * B, *spikes.shape[2:]), bias=True)  # b^l at every step
                cur = cur.view(T, B, *cur.shape[1:])
                if syn.skips:
                    cur = cur + syn.skip_current(kept, (T, B))
                spikes = if_run(cur, layer.threshold, layer.neuron == "signed_if", False, T)
            if counts is not None:
                counts.append(spikes.sum(0))
            if upto is not None and i + 1 >= upto:
                return None
            kept.append(spikes if i + 1 in last_reader else None)
            for j in [j for j, r in last_reader.items() if r == i]:
                kept[j - 1] = None  # read for the last time
        raise AssertionError("unreachable: the last layer accumulates")

    def batch_size(self, budget_bytes: int = 8 * 2 ** 20) -> int:
        """Samples per batch so that the largest ``(T, B, …)`` float32 tensor stays near
        ``budget_bytes`` (16–2048): small enough to stay in cache, the fastest on a 2-core CPU."""
        largest = max(layer.num_neurons for layer in self.net.layers)
        return int(max(16, min(2048, budget_bytes // (4 * self.steps * largest))))

    def run(self, x, batch_size: int | None = None) -> np.ndarray:
        """Integer outputs ``(N, n_out)`` as int64, streaming ``x`` in batches."""
        bs = batch_size or self.batch_size()
        outs = [self.forward(x[s:s + bs]).cpu().numpy() for s in range(0, len(x), bs)]
        if not outs:
            return np.zeros((0, *self.net.output_shape), dtype=np.int64)
        return np.concatenate(outs).astype(np.int64)


def run(net: Network, x, timesteps: int | None = None, batch_size: int | None = None, device=None) -> np.ndarray:
    """Integer outputs ``(N, n_out)`` of the spiking network ``net`` on raw inputs ``x``."""
    return Engine(net, timesteps, device).run(x, batch_size)
