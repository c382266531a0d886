"""The float ANN a QANN is trained from: plain and residual networks, and BatchNorm folding.

Hidden layer: conv/dense → BatchNorm → ReLU (clipped, ``min(relu(z), m)``, where the spec
entry has ``"alpha_max": m``: a ReLU6); the classifier a plain dense layer. A spec with
shortcuts or global average pooling builds a :class:`ResidualNet`. :func:`fold_bn` folds a
BatchNorm into the synapse before it, ``W' = γW/σ, b' = β + γ(b − μ)/σ``; the input normalisation
is folded by :func:`fastsnn_lava.normalize.fold`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .errors import FastSNNError
from .normalize import InputNorm, fold
from .spec import has_residuals, layer_shapes


def build_float(spec: list[dict], input_shape: tuple, n_classes: int, norm: dict | None = None) -> nn.Module:
    """The float ANN: conv/dense → BatchNorm → ReLU per hidden layer, a plain dense classifier.

    A plain spec gives an ``nn.Sequential``; one with skips or average pooling a
    :class:`ResidualNet` (same layers, plus the shortcuts). With ``norm``
    ({"mean": [...], "std": [...]} per channel) either starts with an
    :class:`~fastsnn_lava.normalize.InputNorm` that also does the first convolution's padding
    (see :mod:`fastsnn_lava.normalize`: this keeps folding exact).
    """
    if has_residuals(spec):
        return ResidualNet(spec, input_shape, n_classes, norm)
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
                               bias=False, groups=s.get("groups", 1)), nn.BatchNorm2d(s["out"]), relu(s)]
        else:
            if len(in_shape) > 1:
                mods.append(nn.Flatten())
            n_in = math.prod(in_shape)
            mods += [nn.Linear(n_in, s["out"])] if last else [
                nn.Linear(n_in, s["out"], bias=False), nn.BatchNorm1d(s["out"]), relu(s)]
    return nn.Sequential(*mods)


def relu(s: dict) -> nn.Module:
    """The activation of the hidden layer ``s``: ReLU, or ``min(relu(z), m)`` with ``"alpha_max": m`` (ReLU6: m = 6)."""
    return nn.Hardtanh(0.0, float(s["alpha_max"])) if "alpha_max" in s else nn.ReLU()


def _synapse(kind: str, n_in: int, n_out: int, sk: dict, bias: bool) -> nn.Module:
    if kind == "conv":
        return nn.Conv2d(n_in, n_out, sk.get("kernel", 1), sk.get("stride", 1), sk.get("padding", 0), bias=bias,
                         groups=sk.get("groups", 1))
    return nn.Linear(n_in, n_out, bias=bias)


def _bn(kind: str, n: int) -> nn.Module:
    return nn.BatchNorm2d(n) if kind == "conv" else nn.BatchNorm1d(n)


def fold_bn(syn: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """W' = γW/σ, b' = β + γ(b − μ)/σ (no BatchNorm: W, b)."""
    w = syn.weight.detach().clone()
    b = syn.bias.detach().clone() if syn.bias is not None else torch.zeros(w.shape[0])
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        w = w * scale.view(-1, *([1] * (w.dim() - 1)))
        b = bn.bias.detach() + scale * (b - bn.running_mean)
    return w, b


class ResidualNet(nn.Module):
    """The float ANN of a spec with shortcuts and/or global average pooling.

    Hidden layer l: ``y^l = ReLU(BN(syn(y^{l−1})) + Σ_j shortcut_j(y^j))`` with a
    shortcut an identity or BN(projection); a dense layer after ``avgpool`` sees
    ``mean_hw(y^{l−1})``. The classifier is a plain dense layer.

    With ``norm`` the input first goes through an :class:`~fastsnn_lava.normalize.InputNorm`
    that pads the raw input for the first convolution (which then pads nothing), and
    :meth:`folded` folds it into the first layer exactly as for a plain network. The input
    feeds only the first layer (a shortcut from the input is refused by the spec), so that
    one fold is the whole normalisation.
    """

    def __init__(self, spec: list[dict], input_shape: tuple, n_classes: int, norm: dict | None = None):
        super().__init__()
        self.shapes = layer_shapes(spec, input_shape, n_classes)
        self.input_shape = tuple(input_shape)
        first = self.shapes[0][0]
        if norm is not None:
            if first.get("pool"):
                raise FastSNNError("input normalisation cannot be folded into a first layer that average-pools "
                                   "the input: start with a convolution or a dense layer")
            self.norm = InputNorm(norm["mean"], norm["std"], first.get("padding", 0) if first["kind"] == "conv" else 0)
        else:
            self.norm = None
        self.syn, self.bn, self.skip_syn, self.skip_bn = (nn.ModuleList() for _ in range(4))
        for i, (s, in_shape, out_shape) in enumerate(self.shapes):
            last = i == len(self.shapes) - 1
            n_in = in_shape[0] if s["kind"] == "conv" or s.get("pool") else math.prod(in_shape)
            own = dict(s, padding=0) if i == 0 and self.norm is not None else s  # InputNorm pads the raw input
            self.syn.append(_synapse(s["kind"], n_in, s["out"], own, bias=last))
            self.bn.append(nn.Identity() if last else _bn(s["kind"], s["out"]))
            syns, bns = nn.ModuleList(), nn.ModuleList()
            for sk in s.get("skips", []):
                kind = sk.get("kind", "identity")
                if kind == "identity":
                    syns.append(nn.Identity())
                    bns.append(nn.Identity())
                else:
                    src = self.shapes[sk["from"] - 1][2]
                    syns.append(_synapse(kind, src[0], s["out"], sk, bias=False))
                    bns.append(_bn(kind, s["out"]))
            self.skip_syn.append(syns)
            self.skip_bn.append(bns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)
        if self.norm is not None:
            x = self.norm(x)
        outs = []
        for i, (s, _, _) in enumerate(self.shapes):
            if s.get("pool"):
                x = x.mean((2, 3))
            elif s["kind"] == "dense":
                x = x.flatten(1)
            z = self.bn[i](self.syn[i](x))
            for sk, syn, bn in zip(s.get("skips", []), self.skip_syn[i], self.skip_bn[i]):
                z = z + bn(syn(outs[sk["from"] - 1]))
            if i == len(self.shapes) - 1:
                return z
            x = torch.relu(z) if "alpha_max" not in s else z.clamp(0.0, float(s["alpha_max"]))
            outs.append(x)
        raise AssertionError("unreachable")

    def folded(self) -> list[dict]:
        """Per layer ``{"weight", "bias", "skips"}`` with every BatchNorm folded.

        A projection's folded bias joins the layer's bias; an identity stays ``None``. The input
        normalisation, if any, is folded into the first layer (:func:`~fastsnn_lava.normalize.fold`).
        """
        out = []
        for i in range(len(self.shapes)):
            bn = self.bn[i] if not isinstance(self.bn[i], nn.Identity) else None
            w, b = fold_bn(self.syn[i], bn)
            if i == 0 and self.norm is not None:
                w, b = fold(w, b, self.norm, self.input_shape)
            skips = []
            for syn, sbn in zip(self.skip_syn[i], self.skip_bn[i]):
                if isinstance(syn, nn.Identity):
                    skips.append(None)
                else:
                    sw, sb = fold_bn(syn, sbn)
                    skips.append(sw)
                    b = b + sb
            out.append({"weight": w, "bias": b, "skips": skips})
        return out


def fold_batchnorm(float_net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W', b') per weight layer with BatchNorm folded: W' = γW/σ, b' = β − γμ/σ
    (an :class:`~fastsnn_lava.normalize.InputNorm` in front is folded by :meth:`QuantNet.init_from_float`)."""
    if isinstance(float_net, ResidualNet):
        return [(f["weight"], f["bias"]) for f in float_net.folded()]
    out, mods = [], list(float_net)
    for i, m in enumerate(mods):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        out.append(fold_bn(m, nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None))
    return out
