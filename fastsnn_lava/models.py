"""The quantized ANN (QAT network) :class:`QuantNet`: b-bit activations on the integer grid of :mod:`.grid`.

The layer lists it is built from (presets, shapes, shortcut rules) are in :mod:`.spec`, the float ANN in
:mod:`.float_net` (both re-exported here), the clips' percentile initialisation in :mod:`.clip_init`.

Layer ``l`` keeps a float master weight ``W``, bias ``b`` and (hidden layers) a learnable clip α;
:mod:`.grid` derives from them its threshold θ, weight step Δ, current unit u and integer codes
``W ≈ Δ·q``, ``b ≈ u·c`` (shortcuts ``S ≈ Δ_s·q_s``). Training sees exactly these grids
(straight-through rounding), and its forward value comes from the integers themselves: each layer
recovers its input's integers (the raw input ``x/u_in``, or the levels ``k = T·x/u_in``), computes the
accumulator ``A`` of the exported layer exactly (:meth:`QuantLayer.accumulator`; a shortcut adds
``q_s·k^j``) and outputs ``α·clip(⌊(A + θ/2)/θ⌋, 0, T)/T`` (the classifier ``u·A/T``), while the
gradients are the straight-through ones of the float layer. So the exported codes give the levels
training computed, ties included (a tie, ``A + θ/2 ≡ 0 mod θ``, computed in float32 can land on
either side, see :mod:`fastsnn_lava.quant`), and the same predictions (``u·A/T`` rounded to float32
keeps the order of the integer outputs and their ties while ``|A| < 2^24``). A dense layer after
global average pooling sums its input over the P positions (the 1/P lives in its grid's ``u_in``).
"""
from __future__ import annotations

import math

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import FastSNNError
from .float_net import ResidualNet, build_float, fold_batchnorm  # noqa: F401 - also the float side's API here
from . import clip_init, grid as grid_
from .grid import BIAS_MAX, LOIHI2, WEIGHT_QMAX, LayerCodes, bias_codes
from .quant import (max_abs, exact_dtype, fake_quant_weight, integer_level, integer_sum, level_value, quant_synapse,
                    weight_codes)
from .spec import (PRESETS, conv_args, has_residuals, json_copy, layer_shapes, resnet_spec, resolve_arch,  # noqa: F401
                   skip_out_shape, vgg_spec)


class QuantLayer(nn.Module):
    """One layer of the quantized ANN on its integer grid (see the module docstring).

    Shortcuts (``spec["skips"]``) take ``skip_alphas``: the clip α^j of each source,
    in the order of the spec; a projection has a float master weight, an identity none.
    """

    def __init__(self, spec: dict, in_shape: tuple, out_shape: tuple, bits: int, hidden: bool,
                 skip_shapes: tuple = (), first: bool = False):
        super().__init__()
        self.spec, self.in_shape, self.out_shape = dict(spec), tuple(in_shape), tuple(out_shape)
        self.bits, self.hidden = bits, hidden
        self.first = first  # the input is the raw integer input x·u_in (else levels k·u_in/T)
        self.pool = math.prod(in_shape[1:]) if spec.get("pool") else 1  # P = H·W folded into the dense layer
        if spec["kind"] == "conv":
            k = spec["kernel"]
            self.weight = nn.Parameter(torch.zeros(spec["out"], in_shape[0] // spec.get("groups", 1), k, k))
        else:
            n_in = in_shape[0] if spec.get("pool") else math.prod(in_shape)
            self.weight = nn.Parameter(torch.zeros(spec["out"], n_in))
        self.bias = nn.Parameter(torch.zeros(spec["out"]))
        self.alpha = nn.Parameter(torch.ones(1)) if hidden else None
        self.skips = [dict(sk) for sk in spec.get("skips", [])]
        if self.skips:
            self.skip_weight = nn.ParameterList()
            for sk, src in zip(self.skips, skip_shapes):
                kind = sk.get("kind", "identity")
                k = sk.get("kernel", 1)
                shape = {"identity": (1,), "conv": (spec["out"], src[0], k, k), "dense": (spec["out"], src[0])}[kind]
                self.skip_weight.append(nn.Parameter(torch.ones(shape), requires_grad=kind != "identity"))

    def _skip_maxabs(self) -> list[float]:
        return [float(w.detach().abs().max()) or 1e-12 for w in getattr(self, "skip_weight", [])]

    def grid(self, u_in: float, skip_alphas: tuple = ()) -> tuple[int | None, float, float]:
        """(θ, Δ, u): integer threshold (None for the output layer), weight step, current unit
        (:func:`fastsnn_lava.grid.hidden_grid` / :func:`~fastsnn_lava.grid.output_grid`)."""
        if len(skip_alphas) != len(self.skips):
            raise FastSNNError(f"a layer with {len(self.skips)} shortcuts needs as many source clips α")
        u_in = u_in / self.pool
        maxabs = max(abs(float(v)) for v in torch.aminmax(self.weight.detach())) or 1e-12  # one pass, no copy
        if not self.hidden:
            if self.skips:
                raise FastSNNError("the classifier cannot receive shortcuts: end with a hidden layer")
            return grid_.output_grid(u_in, maxabs, LOIHI2)
        skips = tuple(zip(skip_alphas, self._skip_maxabs()))
        return grid_.hidden_grid(self.alpha.item(), u_in, maxabs, skips, LOIHI2)

    def steps(self, u_in: float, theta: int) -> tuple[float, float]:
        """(Δ, u) of this hidden layer for a known threshold θ (:func:`fastsnn_lava.grid.steps`): the
        grid :meth:`grid` gives when θ is the network's, without deriving θ again."""
        return grid_.steps(self.alpha.item(), theta, u_in / self.pool)

    def codes(self, u_in: float, skip_alphas: tuple = ()) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """Integer weight codes q, bias codes c and threshold θ: exactly what is exported."""
        theta, delta, unit = self.grid(u_in, skip_alphas)
        return (*self._codes(delta, unit), theta)

    def _codes(self, delta: float, unit: float) -> tuple[torch.Tensor, torch.Tensor]:
        return weight_codes(self.weight.float(), delta, WEIGHT_QMAX), bias_codes(self.bias, unit, LOIHI2)

    def skip_codes(self, u_in: float, skip_alphas: tuple) -> list[tuple[torch.Tensor, float]]:
        """Per shortcut (integer codes q_s, step Δ_s = u/α^j); an identity's codes are one scalar."""
        _, _, unit = self.grid(u_in, skip_alphas)
        out = []
        for w, a_src in zip(self.skip_weight if self.skips else [], skip_alphas):
            step = unit / a_src
            out.append((weight_codes(w.float(), step, WEIGHT_QMAX), step))
        return out

    @torch.no_grad()
    def accumulator(self, x: torch.Tensor, u_in: float, skips: tuple = ()) -> tuple[torch.Tensor, int | None]:
        """(A, θ): the exported layer's integer accumulator for input ``x`` (float, on the grid) and its threshold.

        ``A = T·(Σ q·x_raw + c)`` for the first layer, ``Σ q·k + T·c + Σ_j q_s·k^j`` for the others,
        as :func:`fastsnn_lava.reference.qann_forward` computes it from the exported codes; exact
        (integer-valued float32 or float64, see :func:`fastsnn_lava.quant.integer_sum`). The input's
        integers are read back from ``x``: ``x/u_in`` (the raw input, which must be integers, as the
        integer network takes them) or ``k = T·x/u_in`` (levels). The level is
        :func:`fastsnn_lava.quant.integer_level` ``(A, θ, T)``.
        """
        theta, delta, unit = self.grid(u_in, tuple(a for _, a in skips))
        return self._accumulator(x, u_in, skips, theta, delta, unit, 0)[0], theta

    @torch.no_grad()
    def _accumulator(self, x: torch.Tensor, u_in: float, skips: tuple, theta: int | None, delta: float,
                     unit: float, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(``A + shift`` (see :meth:`accumulator`), the weight codes q); bias and shift are added inside
        the integer sum where possible."""
        T, s = 2 ** self.bits - 1, self.spec
        first = getattr(self, "first", False)  # a layer pickled before the flag: levels of T·x_raw, also exact
        # the input's integers: the raw input (first layer) or the levels k = T·x/u_in; x carries them
        # to within a few float32 ulps, far from the next integer
        m = x.detach().mul((1 if first else T) / u_in).round_()
        if s["kind"] == "conv":
            conv = conv_args(s)
        else:  # average pooling: the integer layer repeats q over the P positions, i.e. sums them
            conv, m = None, m.sum((2, 3)) if s.get("pool") else m.flatten(1)
        q, c = self._codes(delta, unit)
        # first layer: A = T·(Σ q·x + c), the sum exact on its own; else c enters as T·c (+ shift)
        # |c| ≤ 2^12 (the 13-bit bias): a bound without a pass over c
        main, bound = integer_sum(m, q, conv, c if first else c.mul(T).add_(shift),
                                  BIAS_MAX + 1 if first else T * (BIAS_MAX + 1) + shift)
        if first:
            bound = T * bound + shift
        terms = []
        for sk, w_s, (y, a_src) in zip(self.skips, self.skip_weight if self.skips else [], skips):
            k = y.detach().mul(T / a_src).round_()
            q_s = weight_codes(w_s.float(), unit / a_src, WEIGHT_QMAX)
            kind = sk.get("kind", "identity")
            if kind == "identity":
                terms.append((k, float(q_s)))
                bound += abs(float(q_s)) * max_abs(k)
            else:
                term, b_s = integer_sum(k if kind == "conv" else k.flatten(1), q_s,
                                        (sk.get("stride", 1), sk.get("padding", 0)) if kind == "conv" else None)
                terms.append((term, 1.0))
                bound += b_s
        # every partial sum of A (+ shift), and |A| + 2θ for the level (quant.integer_level), stays below
        dtype = exact_dtype(bound + 2 * (theta or 0))
        acc = main.to(dtype)
        if first:
            acc = acc.mul_(T).add_(shift) if shift else acc.mul_(T)
        for term, code in terms:  # identity: acc += q_s·k^j in one pass
            acc = acc.add_(term.to(dtype), alpha=code)
        return acc, q

    def _synapse(self, x: torch.Tensor, u_in: float, skips: tuple, levels: int) -> torch.Tensor:
        alphas = tuple(a for _, a in skips)
        theta, delta, unit = self.grid(u_in, alphas)
        # with levels V = A + θ/2 (the level is ⌊V/θ⌋), else A (pre_activation, the classifier)
        acc, q = self._accumulator(x, u_in, skips, theta, delta, unit, theta // 2 if levels else 0)
        extras = []  # the shortcut currents in float: they only carry gradients (the value comes from acc)
        for sk, w_s, a_src, (y, _) in zip(self.skips if torch.is_grad_enabled() else [],
                                          self.skip_weight if self.skips else [], alphas, skips):
            ws = fake_quant_weight(w_s, unit / a_src, WEIGHT_QMAX)
            kind = sk.get("kind", "identity")
            if kind == "identity":
                extras.append(ws * y)
            elif kind == "conv":
                extras.append(F.conv2d(y, ws, None, sk.get("stride", 1), sk.get("padding", 0)))
            else:
                extras.append(F.linear(y.flatten(1), ws))
        if self.spec["kind"] == "conv":
            conv = conv_args(self.spec)
        else:
            conv, x = None, x.mean((2, 3)) if self.spec.get("pool") else x.flatten(1)
        grid = (delta, unit, WEIGHT_QMAX, -BIAS_MAX - 1, BIAS_MAX, levels)
        return quant_synapse(x, self.weight, self.bias, self.alpha, grid, conv, tuple(extras),
                             exact=(acc, theta, 2 ** self.bits - 1, q))

    def pre_activation(self, x: torch.Tensor, u_in: float, skips: tuple = ()) -> torch.Tensor:
        """``z = W_q·x + b_q + Σ_j S_q^j·y^j``; ``skips`` holds (y^j, α^j) per shortcut.

        ``W_q = Δ·q`` and ``b_q = u·c`` exactly (straight-through gradients to W and b); the value is
        ``u·A/T`` from the exact integer accumulator A (:meth:`accumulator`), rounded once to x's dtype."""
        return self._synapse(x, u_in, skips, 0)

    def forward(self, x: torch.Tensor, u_in: float, skips: tuple = ()) -> torch.Tensor:
        """``act_quant(pre_activation)`` for a hidden layer, ``pre_activation`` for the output layer,
        as one autograd node (:func:`fastsnn_lava.quant.quant_synapse`), with the level taken from the
        integer accumulator: ``α·clip(⌊(A + θ/2)/θ⌋, 0, T)/T``, the exported network's level, ties included."""
        return self._synapse(x, u_in, skips, 2 ** self.bits - 1 if self.hidden else 0)


class QuantNet(nn.Module):
    """The b-bit quantized ANN; takes raw integer inputs (as floats)."""

    def __init__(self, spec: list[dict], input_shape: tuple, n_classes: int, bits: int, input_max: int):
        super().__init__()
        self.spec, self.input_shape, self.n_classes = spec, tuple(input_shape), n_classes
        self.bits, self.input_max = bits, input_max
        shapes = layer_shapes(spec, input_shape, n_classes)
        self.layers = nn.ModuleList(
            QuantLayer(s, i, o, bits, hidden=k < len(shapes) - 1,
                       skip_shapes=tuple(shapes[sk["from"] - 1][2] for sk in s.get("skips", [])), first=k == 0)
            for k, (s, i, o) in enumerate(shapes))

    def units_in(self) -> list[float]:
        """u_in per layer: 1/input_max, then α of the layer before."""
        # iterate, not self.layers[:-1]: slicing a ModuleList builds a new module each training step
        return grid_.units_in(self.input_max, [m.alpha.item() for m in self.layers if m.hidden])

    def skip_alphas(self, k: int) -> tuple:
        """α^j of each shortcut source of layer k (0-based)."""
        return tuple(float(self.layers[sk["from"] - 1].alpha.detach()) for sk in self.layers[k].skips)

    def skip_inputs(self, k: int, outs: list) -> tuple:
        """(y^j, α^j) of each shortcut of layer k, given the outputs ``outs`` of the layers before."""
        return tuple((outs[sk["from"] - 1], a) for sk, a in zip(self.layers[k].skips, self.skip_alphas(k)))

    @torch.no_grad()
    def bound_alphas(self) -> None:
        """``α ← min(α, m)`` for every layer whose spec bounds its clip (``"alpha_max": m``, a ReLU6):
        done before every use of α (forward, levels, codes), so QAT and conversion honour the bound."""
        for layer in self.layers:
            if layer.hidden and "alpha_max" in layer.spec:
                layer.alpha.clamp_(max=float(layer.spec["alpha_max"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bound_alphas()
        x = x.reshape(-1, *self.input_shape) / self.input_max
        outs = []
        for k, (layer, u_in) in enumerate(zip(self.layers, self.units_in())):
            x = layer(x, u_in, self.skip_inputs(k, outs))
            outs.append(x)
        return x

    @torch.no_grad()
    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Integer activation level k of every hidden layer, as the forward pass computes it (from the
        exact integer accumulator: the exported network's levels), and the logits."""
        self.bound_alphas()
        out, outs, units = [], [], self.units_in()
        T = 2 ** self.bits - 1
        x = x.reshape(-1, *self.input_shape) / self.input_max
        for k, (layer, u_in) in enumerate(zip(self.layers, units)):
            skips = self.skip_inputs(k, outs)
            if not layer.hidden:
                return out + [layer(x, u_in, skips)]
            acc, theta = layer.accumulator(x, u_in, skips)
            level = integer_level(acc, theta, T)
            out.append(level.to(x.dtype))
            x = level_value(level, layer.alpha, T, x.dtype)  # = layer(x, u_in, skips)
            outs.append(x)
        return out

    @torch.no_grad()
    def codes(self) -> list[LayerCodes]:
        """The integers of every layer (weights, biases, threshold, shortcut codes) on its grid:
        exactly what conversion writes (:func:`fastsnn_lava.convert.to_network`)."""
        self.bound_alphas()
        out = []
        for k, (layer, u_in) in enumerate(zip(self.layers, self.units_in())):
            alphas = self.skip_alphas(k)
            q, c, theta = layer.codes(u_in, alphas)
            skips = [q_s.numpy().astype(np.int64) for q_s, _ in layer.skip_codes(u_in, alphas)]
            out.append(LayerCodes(q.numpy().astype(np.int64), c.numpy().astype(np.int64), theta, skips))
        return out

    def init_from_float(self, float_net: nn.Module, calib_x: torch.Tensor, percentile: float = 99.7):
        """Copy the BN-folded float weights, then calibrate the clips α
        (:func:`fastsnn_lava.clip_init.init_from_float`)."""
        clip_init.init_from_float(self, float_net, calib_x, percentile)

    def calibrate(self, calib_x: torch.Tensor, percentile: float = 99.7):
        """Set each α to a percentile of its positive pre-activations (:func:`fastsnn_lava.clip_init.calibrate`)."""
        clip_init.calibrate(self, calib_x, percentile)
