"""Architectures: a float ANN (with BatchNorm) and its b-bit quantized twin.

An architecture is a list of layer specs (JSON-able dicts)::

    {"kind": "conv", "out": 16, "kernel": 3, "stride": 2, "padding": 1}
    {"kind": "dense", "out": 64}

followed by a dense classifier that the builders append. Max-pooling is not
offered: Fast-SNN replaces it by stride-2 convolutions.

The quantized network :class:`QuantNet` takes raw integer inputs ``x`` and sees
``x / input_max``. Layer ``l`` has a float master weight ``W`` and bias ``b``.
Its input arrives in units of ``u_in`` (``1/input_max`` for the first layer,
the previous layer's clip ``α^{l-1}`` for the others: a spike carries θ^{l-1} = α^{l-1}).
A hidden layer picks an even integer threshold θ and derives its grid::

    θ  = min(θ_max, 2·max(1, floor(α·q_max / (2·u_in·max|W|))))   (finest grid not clipping W;
                                                              θ_max = 2^17 − 2)
    u  = α / θ          (the layer's current unit: θ·u = α)
    Δ  = u / u_in       (weight step)
    W ≈ Δ·q,  b ≈ u·c,  q, c integers, |q| ≤ q_max

so that the layer's integer current is ``Σ q·(input code) + c`` and its level is
``clip(floor((T·current + θ/2)/θ), 0, T)``. Bias codes are clipped to the
13-bit signed range of Loihi 2's bias mantissa, during training as at export. The output layer (no activation)
takes ``Δ = max|W| / q_max``. Training sees exactly these grids (straight-through
rounding), so exporting the codes adds no error.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import FastSNNError
from .ir import conv_out_hw
from .normalize import InputNorm, fold
from .quant import act_quant, activation_level, round_half_up, weight_codes

WEIGHT_QMAX = 127  # 8-bit signed weight mantissa on Loihi 2
THETA_MAX = 2 ** 17 - 2  # largest even 17-bit threshold
BIAS_MAX = 2 ** 12 - 1  # 13-bit signed bias mantissa on Loihi 2

PRESETS = {
    "mlp": [{"kind": "dense", "out": 128}, {"kind": "dense", "out": 64}],
    "cnn": [
        {"kind": "conv", "out": 16, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "conv", "out": 32, "kernel": 3, "stride": 2, "padding": 1},
        {"kind": "conv", "out": 64, "kernel": 3, "stride": 2, "padding": 1},
        {"kind": "dense", "out": 128},
    ],
    "cnn5": [  # 5 spiking layers; sized to train on 2 CPU cores (2.8 M MACs per 28×28 image)
        {"kind": "conv", "out": 16, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "conv", "out": 32, "kernel": 3, "stride": 2, "padding": 1},
        {"kind": "conv", "out": 32, "kernel": 3, "stride": 2, "padding": 1},
        {"kind": "conv", "out": 64, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "dense", "out": 128},
    ],
}


def resolve_arch(arch: str) -> list[dict]:
    if arch not in PRESETS:
        raise FastSNNError(f"unknown architecture {arch!r}: use one of {sorted(PRESETS)}")
    return [dict(s) for s in PRESETS[arch]]


def layer_shapes(spec: list[dict], input_shape: tuple, n_classes: int) -> list[tuple[dict, tuple, tuple]]:
    """(spec, in_shape, out_shape) per layer, the classifier appended; checks the geometry."""
    full = list(spec) + [{"kind": "dense", "out": n_classes}]
    shapes, shape, seen_dense = [], tuple(input_shape), False
    for s in full:
        if s["kind"] == "conv":
            if seen_dense or len(shape) != 3:
                raise FastSNNError("conv layers must come before dense layers and need (C, H, W) input")
            k, st, p = s["kernel"], s.get("stride", 1), s.get("padding", 0)
            h, w = conv_out_hw(shape[1], shape[2], (k, k), (st, st), (p, p), (1, 1))
            if h < 1 or w < 1:
                raise FastSNNError(f"conv layer {s} shrinks the {shape} input to nothing: use fewer stride-2 layers")
            out = (s["out"], h, w)
        elif s["kind"] == "dense":
            seen_dense, out = True, (s["out"],)
        else:
            raise FastSNNError(f"layer kind {s['kind']!r} is not supported: use conv or dense")
        shapes.append((s, shape, out))
        shape = out
    return shapes


def build_float(spec: list[dict], input_shape: tuple, n_classes: int, norm: dict | None = None) -> nn.Sequential:
    """The float ANN: conv/dense → BatchNorm → ReLU per hidden layer, a plain dense classifier.

    With ``norm`` ({"mean": [...], "std": [...]} per channel) it starts with an
    :class:`~fastsnn_lava.normalize.InputNorm` that also does the first convolution's padding
    (see :mod:`fastsnn_lava.normalize`: this keeps folding exact)."""
    mods: list[nn.Module] = []
    shapes = layer_shapes(spec, input_shape, n_classes)
    first_pad = shapes[0][0].get("padding", 0) if shapes[0][0]["kind"] == "conv" else 0
    if norm is not None:
        mods.append(InputNorm(norm["mean"], norm["std"], first_pad))
    for i, (s, in_shape, out_shape) in enumerate(shapes):
        last = i == len(shapes) - 1
        if s["kind"] == "conv":
            pad = 0 if (i == 0 and norm is not None) else s.get("padding", 0)
            mods += [nn.Conv2d(in_shape[0], s["out"], s["kernel"], s.get("stride", 1), pad,
                               bias=False), nn.BatchNorm2d(s["out"]), nn.ReLU()]
        else:
            if len(in_shape) > 1:
                mods.append(nn.Flatten())
            n_in = math.prod(in_shape)
            mods += [nn.Linear(n_in, s["out"])] if last else [
                nn.Linear(n_in, s["out"], bias=False), nn.BatchNorm1d(s["out"]), nn.ReLU()]
    return nn.Sequential(*mods)


def fold_batchnorm(float_net: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W', b') per weight layer with BatchNorm folded: W' = γW/σ, b' = β − γμ/σ
    (an :class:`~fastsnn_lava.normalize.InputNorm` in front is folded by :meth:`QuantNet.init_from_float`)."""
    out, mods = [], list(float_net)
    for i, m in enumerate(mods):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight.detach().clone()
        b = m.bias.detach().clone() if m.bias is not None else torch.zeros(w.shape[0])
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            scale = nxt.weight.detach() / torch.sqrt(nxt.running_var + nxt.eps)
            w = w * scale.view(-1, *([1] * (w.dim() - 1)))
            b = nxt.bias.detach() + scale * (b - nxt.running_mean)
        out.append((w, b))
    return out


class QuantLayer(nn.Module):
    """One layer of the quantized ANN on its integer grid (see the module docstring)."""

    def __init__(self, spec: dict, in_shape: tuple, out_shape: tuple, bits: int, hidden: bool):
        super().__init__()
        self.spec, self.in_shape, self.out_shape = dict(spec), tuple(in_shape), tuple(out_shape)
        self.bits, self.hidden = bits, hidden
        if spec["kind"] == "conv":
            k = spec["kernel"]
            self.weight = nn.Parameter(torch.zeros(spec["out"], in_shape[0], k, k))
        else:
            self.weight = nn.Parameter(torch.zeros(spec["out"], math.prod(in_shape)))
        self.bias = nn.Parameter(torch.zeros(spec["out"]))
        self.alpha = nn.Parameter(torch.ones(1)) if hidden else None

    def grid(self, u_in: float) -> tuple[int | None, float, float]:
        """(θ, Δ, u): integer threshold (None for the output layer), weight step, current unit."""
        maxabs = float(self.weight.detach().abs().max()) or 1e-12
        if not self.hidden:
            delta = maxabs / WEIGHT_QMAX
            return None, delta, delta * u_in
        alpha = float(self.alpha.detach())
        if not alpha > 0:
            raise FastSNNError("a clip value α became non-positive during training: lower the learning rate")
        theta = min(THETA_MAX, 2 * max(1, math.floor(alpha * WEIGHT_QMAX / (2 * u_in * maxabs))))
        unit = alpha / theta
        return theta, unit / u_in, unit

    def codes(self, u_in: float) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """Integer weight codes q, bias codes c and threshold θ: exactly what is exported."""
        theta, delta, unit = self.grid(u_in)
        q = weight_codes(self.weight.float(), delta, WEIGHT_QMAX)
        c = round_half_up(self.bias.detach().float() / unit).clamp(-BIAS_MAX - 1, BIAS_MAX)
        return q, c, theta

    def pre_activation(self, x: torch.Tensor, u_in: float) -> torch.Tensor:
        theta, delta, unit = self.grid(u_in)
        q, c, _ = self.codes(u_in)
        w = self.weight + (q.to(self.weight.dtype) * delta - self.weight).detach()
        b = self.bias + (c.to(self.bias.dtype) * unit - self.bias).detach()
        if self.spec["kind"] == "conv":
            return F.conv2d(x, w, b, self.spec.get("stride", 1), self.spec.get("padding", 0))
        return F.linear(x.flatten(1), w, b)

    def forward(self, x: torch.Tensor, u_in: float) -> torch.Tensor:
        z = self.pre_activation(x, u_in)
        return act_quant(z, self.alpha, self.bits) if self.hidden else z


class QuantNet(nn.Module):
    """The b-bit quantized ANN; takes raw integer inputs (as floats)."""

    def __init__(self, spec: list[dict], input_shape: tuple, n_classes: int, bits: int, input_max: int):
        super().__init__()
        self.spec, self.input_shape, self.n_classes = spec, tuple(input_shape), n_classes
        self.bits, self.input_max = bits, input_max
        shapes = layer_shapes(spec, input_shape, n_classes)
        self.layers = nn.ModuleList(
            QuantLayer(s, i, o, bits, hidden=k < len(shapes) - 1) for k, (s, i, o) in enumerate(shapes))

    def units_in(self) -> list[float]:
        """u_in per layer: 1/input_max, then α of the layer before."""
        return [1.0 / self.input_max] + [float(m.alpha.detach()) for m in self.layers[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape) / self.input_max
        for layer, u_in in zip(self.layers, self.units_in()):
            x = layer(x, u_in)
        return x

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Integer activation level k of every hidden layer (float forward), and the logits."""
        out, units = [], self.units_in()
        x = x.reshape(-1, *self.input_shape) / self.input_max
        for layer, u_in in zip(self.layers, units):
            z = layer.pre_activation(x, u_in)
            if not layer.hidden:
                return out + [z]
            out.append(activation_level(z, layer.alpha, self.bits))
            x = act_quant(z, layer.alpha, self.bits)
        return out

    @torch.no_grad()
    def init_from_float(self, float_net: nn.Sequential, calib_x: torch.Tensor, percentile: float = 99.7):
        """Copy BN-folded float weights, then set each α, layer by layer, to a percentile
        of that layer's positive pre-activations given the already-quantized layers before."""
        folded = fold_batchnorm(float_net)
        if isinstance(float_net[0], InputNorm):  # normalisation → first layer (exact, see normalize.py)
            folded[0] = fold(*folded[0], float_net[0], self.input_shape)
        for layer, (w, b) in zip(self.layers, folded):
            layer.weight.copy_(w.view_as(layer.weight))
            layer.bias.copy_(b)
        self.calibrate(calib_x, percentile)

    @torch.no_grad()
    def calibrate(self, calib_x: torch.Tensor, percentile: float = 99.7):
        """Set each α, layer by layer, to a percentile of the layer's positive pre-activations
        given the current weights and the already-quantized layers before."""
        x = calib_x.reshape(-1, *self.input_shape).float() / self.input_max
        for k, layer in enumerate(self.layers):
            u_in = self.units_in()[k]
            if not layer.hidden:
                break
            z = F.conv2d(x, layer.weight, layer.bias, layer.spec.get("stride", 1), layer.spec.get("padding", 0)) \
                if layer.spec["kind"] == "conv" else F.linear(x.flatten(1), layer.weight, layer.bias)
            pos = z[z > 0]
            alpha = torch.quantile(pos[torch.randperm(len(pos))[:100000]], percentile / 100) if len(pos) else 1.0
            layer.alpha.fill_(max(float(alpha), 1e-3))
            x = layer(x, u_in)
