"""Lava's CUBA LIF neuron in exact integer arithmetic, and networks made of it.

A vanilla netx network (neuron type ``CUBA`` or ``LOIHI``, as lava-dl's slayer
exports it, or as ``fastsnn-export --neuron cuba`` writes it) is described by
:class:`LifNetwork`; :func:`lif_forward` simulates it batched in torch int64,
bit for bit as Lava's ``PyLifResetModelBitAcc`` (lava-nc 0.10.0,
``src/lava/proc/lif/models.py``) with netx's parameters
(``du = iDecay − 1``, ``dv = vDecay``, ``vth = vThMant``, ``bias_exp = 6``):

    decay(x, d) = sign(x) · (|x| · (4096 − d) >> 12)
    u ← wrap₂₄( decay(u, iDecay) + (a_in << 6) )              (u wraps modulo 2^24)
    v ← clip( decay(v, vDecay) + u + (bias << 6), ±(2^23 − 1) )
    s = [v > vThMant << 6];   v ← 0 where s                    (reset to zero, binary spikes)

with u = v = 0 at the start of every sample window (``LIFReset``). ``a_in`` is the
synapse's integer sum ``W·s`` (the first layer: ``W·x`` of the raw graded input).
netx's ``optimize_weight_bits`` makes that sum exact for dense weights that are
integers in [−256, 254] (lava-netx.md §7), except a matrix with no positive code and a least code
−2^j (and a few more, :mod:`fastsnn_lava.netx.lava_weights`); conv weights are used as written.

The last layer is read out as its membrane ``v`` after the last step when it never
fires (``readout = "voltage"``: a ``vThMant`` of at least 2^17 − 1, or a layer
without a neuron group, for which netx builds a non-leaky integrator), otherwise
as its spike counts (``readout = "spikes"``).

A dense layer may carry netx's synaptic delays ``D`` (``DelayDense``, 0..62 steps):

    a_i(t) = Σ_j W_ij · s_j(t − D_ij),   s_j(t) = 0 for t < 0   (D = 0 without delays)

Time here is the layer's own step within the sample window. Lava runs the layers as a
pipeline (each synapse adds one step, layer l is reset at step l of the window), so
Lava's layer l at window step l + k is this reference's step k.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FastSNNError
from .ir import _pair, conv_out_hw

STATE_BITS = 24
VTH_MAX = 2 ** 17 - 1  # 17-bit threshold mantissa
NEVER_FIRES = VTH_MAX  # an output layer with this vThMant is read out as voltage
MAX_DELAY = 62  # netx's DelayDense max_delay


@dataclass
class LifLayer:
    """A dense, conv or identity (slayer input neuron) synapse and the CUBA LIF neurons it drives.

    ``weight`` int64 in torch layout (None for identity), ``bias`` = netx ``bias_mant``
    (per neuron or per channel), ``vth`` = ``vThMant``, ``i_decay``/``v_decay`` the file's
    ``iDecay``/``vDecay`` (4096 = the state is cleared every step, 0 = persistent), ``delay``
    a dense layer's synaptic delays ``D`` (int, same shape as ``weight``, 0..62) or None.
    """

    kind: str
    weight: np.ndarray | None
    bias: np.ndarray
    vth: int
    i_decay: int
    v_decay: int
    in_shape: tuple
    out_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    delay: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in ("dense", "conv", "identity"):
            raise FastSNNError(f"LIF layer kind {self.kind!r} is not supported: use dense, conv or identity")
        self.weight = None if self.weight is None else np.asarray(self.weight).astype(np.int64)
        self.bias = np.asarray(self.bias).astype(np.int64)
        self.in_shape, self.out_shape = tuple(map(int, self.in_shape)), tuple(map(int, self.out_shape))
        self.stride, self.padding, self.dilation = _pair(self.stride), _pair(self.padding), _pair(self.dilation)
        self.vth, self.i_decay, self.v_decay, self.groups = (int(self.vth), int(self.i_decay), int(self.v_decay),
                                                             int(self.groups))
        for name in ("i_decay", "v_decay"):
            if not 0 <= getattr(self, name) <= 4096:
                raise FastSNNError(f"{name} {getattr(self, name)} must lie in 0..4096")
        if self.kind == "conv":
            hw = conv_out_hw(self.in_shape[1], self.in_shape[2], self.weight.shape[2:], self.stride, self.padding,
                             self.dilation)
            if self.weight.shape[0] != self.out_shape[0] or hw != self.out_shape[1:]:
                raise FastSNNError(f"conv weight {self.weight.shape} does not give the output shape {self.out_shape}")
        elif self.kind == "dense" and self.weight.shape != (self.num_neurons, int(np.prod(self.in_shape))):
            raise FastSNNError(f"dense weight {self.weight.shape} does not match in {self.in_shape} / out {self.out_shape}")
        self._check_delay()

    def _check_delay(self):
        if self.delay is None:
            return
        self.delay = np.asarray(self.delay).astype(np.int64)
        if self.kind != "dense":
            raise FastSNNError(f"synaptic delays on a {self.kind} layer are not supported: netx delays dense "
                               "layers only")
        if self.delay.shape != self.weight.shape:
            raise FastSNNError(f"delay {self.delay.shape} does not match the weight {self.weight.shape}")
        if self.delay.size and (self.delay.min() < 0 or self.delay.max() > MAX_DELAY):
            raise FastSNNError(f"delays in [{self.delay.min()}, {self.delay.max()}] lie outside netx's "
                               f"0..{MAX_DELAY} steps")

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def never_fires(self) -> bool:
        return self.vth >= NEVER_FIRES


@dataclass
class LifNetwork:
    """A feed-forward CUBA network: ``timesteps`` active steps per sample in windows of ``reset_interval``."""

    input_shape: tuple
    layers: list
    timesteps: int
    reset_interval: int
    input_max: int = 255
    bits: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(a) for a in self.input_shape)
        if not self.layers:
            raise FastSNNError("a network needs at least one layer")
        if self.timesteps < 1 or self.reset_interval < self.timesteps:
            raise FastSNNError(f"timesteps {self.timesteps} / reset interval {self.reset_interval} are not valid")

    @property
    def readout(self) -> str:
        return "voltage" if self.layers[-1].never_fires else "spikes"

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].out_shape


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    return torch.sign(x) * ((x.abs() * (4096 - d)) >> 12)


def lif_step(u, v, a_in, layer: LifLayer, bias: torch.Tensor):
    """One step of Lava's fixed-point LIF. Returns ``(u, v, s)`` (int64 tensors, s in {0, 1})."""
    m = 2 ** (STATE_BITS - 1)
    c = _decay(u, layer.i_decay) + (a_in << 6)
    w = torch.where(c > m, c - 2 * m, c)
    u = torch.where(w <= -m, c + 2 * m, w)
    v = (_decay(v, layer.v_decay) + u + (bias << 6)).clamp(-m + 1, m - 1)
    s = v > (layer.vth << 6)
    return u, torch.where(s, torch.zeros_like(v), v), s.to(torch.int64)


def synapse(layer: LifLayer, x: torch.Tensor) -> torch.Tensor:
    """``a_in`` of a layer for a batch ``x`` (int64): W·x, or x itself for an identity layer."""
    if layer.kind == "identity":
        return x.reshape(len(x), *layer.out_shape)
    w = torch.as_tensor(layer.weight)
    if layer.kind == "dense":
        return (x.flatten(1) @ w.T).reshape(len(x), *layer.out_shape)
    # conv2d has no int64 kernel on the CPU: float64 holds these sums exactly (|sum| < 2^53)
    out = F.conv2d(x.reshape(-1, *layer.in_shape).double(), w.double(), None, layer.stride, layer.padding,
                   layer.dilation, layer.groups)
    return out.round().to(torch.int64)


def _shift(a: torch.Tensor, d: np.ndarray) -> torch.Tensor:
    """``a`` (T, B, F) with feature f delayed by ``d[f]`` steps: out[t, :, f] = a[t − d_f, :, f], 0 before."""
    out = torch.zeros_like(a)
    for k in np.unique(d):
        idx = torch.as_tensor(np.flatnonzero(d == k))
        if k < len(a):
            out[int(k):, :, idx] = a[:len(a) - int(k), :, idx]
    return out


def synapse_seq(layer: LifLayer, seq: torch.Tensor) -> torch.Tensor:
    """``a_in`` of a layer for its whole input sequence ``seq`` (T, B, *in_shape) → (T, B, *out_shape):
    ``a_i(t) = Σ_j W_ij · x_j(t − D_ij)`` (see the module docstring; D = 0 without delays)."""
    T, B = seq.shape[:2]
    if layer.delay is None:
        return synapse(layer, seq.reshape(T * B, *seq.shape[2:])).reshape(T, B, *layer.out_shape)
    x, w, d = seq.reshape(T, B, -1), torch.as_tensor(layer.weight), layer.delay
    if (d == d[:, :1]).all():  # one delay per receiving neuron (netx's 1-D "axonal" delays)
        cur = _shift(x @ w.T, d[:, 0])
    elif (d == d[:1, :]).all():  # one delay per input
        cur = _shift(x, d[0]) @ w.T
    else:
        cur = sum(_shift(x, np.full(x.shape[2], k)) @ torch.as_tensor(np.where(d == k, layer.weight, 0)).T
                  for k in np.unique(d))
    return cur.reshape(T, B, *layer.out_shape)


@dataclass
class LifTrace:
    out: torch.Tensor       # (B, n_out): last layer's v (readout voltage) or spike counts
    counts: list            # spike count per neuron per layer, (B, *shape)
    spikes: list | None     # (T, B, *shape) per layer, when asked for
    inputs: torch.Tensor    # the graded input per step, (T, B, *input_shape)
    currents: list | None = None  # u per layer, (T, B, *shape), when asked for
    voltages: list | None = None  # v per layer (after the spike reset), (T, B, *shape), when asked for


def lif_forward(net: LifNetwork, x, keep_spikes: bool = False, keep_state: bool = False) -> LifTrace:
    """Simulate ``net`` on raw integer inputs: ``(B, *input_shape)`` held for T steps,
    or a time series ``(B, T', *input_shape)`` (T' = the network's steps).
    ``keep_state`` also keeps every layer's ``u`` and ``v`` at every step."""
    x = torch.as_tensor(np.asarray(x)).to(torch.int64)
    T = net.timesteps
    if x.dim() == len(net.input_shape) + 2:
        if x.shape[1] != T:
            raise FastSNNError(f"the input time series has {x.shape[1]} steps, the network runs {T}")
        seq = x.transpose(0, 1)
    else:
        x = x.reshape(-1, *net.input_shape)
        seq = x.unsqueeze(0).expand(T, *x.shape)
    a = seq
    counts, spikes_all, us, vs = [], [], [], []
    for layer in net.layers:
        cur = synapse_seq(layer, a)
        bias = torch.as_tensor(np.broadcast_to(layer.bias.reshape(_bias_shape(layer)), layer.out_shape).copy())
        u = torch.zeros_like(cur[0])
        v = torch.zeros_like(u)
        s = torch.empty_like(cur)
        u_t, v_t = (torch.empty_like(cur), torch.empty_like(cur)) if keep_state else (None, None)
        for t in range(T):
            u, v, s[t] = lif_step(u, v, cur[t], layer, bias)
            if keep_state:
                u_t[t], v_t[t] = u, v
        counts.append(s.sum(0))
        if keep_spikes:
            spikes_all.append(s)
        us.append(u_t)
        vs.append(v_t)
        a = s
    out = v.flatten(1) if net.readout == "voltage" else counts[-1].flatten(1)
    return LifTrace(out, counts, spikes_all if keep_spikes else None, seq, us if keep_state else None,
                    vs if keep_state else None)


def _bias_shape(layer: LifLayer) -> tuple:
    """A conv layer's bias is per channel or per neuron; every other layer's per neuron."""
    return (-1, 1, 1) if layer.kind == "conv" and layer.bias.size == layer.out_shape[0] else layer.out_shape


def run_lif_batches(net: LifNetwork, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    outs = [lif_forward(net, x[i:i + batch_size]).out.numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs).astype(np.int64)


def replace(layer: LifLayer, **kw) -> LifLayer:
    return dataclasses.replace(layer, **kw)
