"""Quantizer-aware conversion of a user's own quantized layers (the layers of Fast-SNN's model code).

Fast-SNN's models (Hu et al., "Fast-SNN: Fast Spiking Neural Network by Converting Quantized ANN", IEEE TPAMI
2023, doi:10.1109/TPAMI.2023.3275769) are written with subclasses of ``nn.Conv2d``/``nn.Linear``/``nn.ReLU``/
``nn.AvgPool2d`` whose ``forward`` computes something else than the parent's: it quantizes the weight before calling
``F.conv2d``/``F.linear``, or clips at a learned α and rounds to ``2^b − 1`` levels. Such a layer is a
torch.fx *leaf* (:func:`is_user_layer`): its inside is never traced, its function is measured.

* **Weights** (:func:`captured_call`): the layer runs once, in eval mode, on a random input of its input
  shape under a :class:`torch.overrides.TorchFunctionMode` that records its ``F.conv2d``/``F.linear`` call;
  the recorded weight, bias and geometry replace ``m.weight``. Exactly one such call, on the layer's own input,
  whose result is the layer's output, is required. :func:`weight_steps` says whether the weight lies on a
  uniform grid ``w = s·q``, integer ``|q| ≤ m ≤ 127`` (the summary prints it; a float weight converts as well).
* **Activations** (:func:`staircase`): a leaf activation is probed on a ramp ``x_p`` (every element of
  sample p equal to ``x_p``) and converts when it is, away from rounding ties,

  .. math:: y = \\frac{α}{L}\\,\\mathrm{clip}\\big(\\lfloor x·L/α + ½ \\rfloor, 0, L\\big),\\qquad L = 2^b − 1,

  with α its output maximum and ``L + 1`` its number of distinct levels (or ``y = relu(x)``: a plain ReLU).
  The hidden layer then keeps the user's α and b. A spike count k of an IF neuron with threshold θ
  carries ``k·θ``: only *equally spaced* levels ``α·k/L`` convert, so a power-of-two grid is refused,
  as are a per-channel clip, negative outputs and anything else that is not this staircase.
* **Check** (:func:`check_layers`): the model, run by :class:`torch.fx.Interpreter`, and the project's
  float network with every hidden activation followed by its staircase are compared layer by layer,
  the float network fed the model's activations (so one rounding tie cannot spread), and the first layer
  that differs is named: the converted QANN equals the model's quantized forward in float arithmetic.

**What is not exact** (:func:`agreement` measures it). The integer network re-quantizes the BatchNorm-folded
weights on its own grid (:mod:`fastsnn_lava.grid`: α kept exactly, an integer threshold θ, weight steps
``Δ = α/(θ·u_in)``, at most 127 steps). A BatchNorm after a weight quantizer (the paper's blocks) scales each
channel by a real ``γ/σ`` that no integer threshold reproduces, so the QuantNet's weights round once more and
its logits can differ slightly from the user's float quantized model; rounding ties also differ (the IF neuron
rounds half up, ``torch.round`` half to even). The QuantNet and its integer network stay equal bit for bit.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .errors import FastSNNError
from .fx_maps import fixed_map
from .fx_patterns import fail
from .fx_refusals import describe, own_forward, user_line
from .grid import WEIGHT_QMAX
from .quant import act_quant

Q_MAX = WEIGHT_QMAX  # the most weight steps the integer grid holds (127)
RAMP = 4097          # probe points of an activation
MAX_LEVELS = 256     # 8 bits: the most levels an activation quantizer has (ir.Network: b ≤ 8)
TIE = 1e-3           # ramp points this close (in levels) to a rounding tie are not compared
_CALLS = {nn.Conv2d: (F.conv2d, ("input", "weight", "bias", "stride", "padding", "dilation", "groups")),
          nn.Linear: (F.linear, ("input", "weight", "bias"))}
_ACTIVATIONS = (nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.AvgPool2d)
_ACT_FUNCS = (torch.relu, F.relu, F.hardtanh, torch.Tensor.clamp, torch.clamp)


@dataclass
class UserLayer:
    """One of the user's own layers as converted: its weight grid (steps m, None for a float weight) or its
    staircase (α, b; None for a plain ReLU)."""
    name: str
    cls: str
    weight_steps: int | None = None
    alpha: float | None = None
    bits: int | None = None

    def summary(self) -> str:
        if self.alpha is not None:
            return f"'{self.name}' ({self.cls}): uniform {self.bits}-bit activation, clip α = {self.alpha:.6g}"
        if self.weight_steps is not None:
            return f"'{self.name}' ({self.cls}): weight on a grid of ±{self.weight_steps} steps"
        return f"'{self.name}' ({self.cls}): float weight (quantized by this project)"


def is_user_layer(m: nn.Module) -> bool:
    """A user's subclass of ``Conv2d``/``Linear`` (any), or of a ReLU/Hardtanh/AvgPool2d with its own forward."""
    if type(m).__module__.startswith("torch."):
        return False
    return isinstance(m, tuple(_CALLS)) or isinstance(m, _ACTIVATIONS) and own_forward(m)


def module_call(m: nn.Module) -> dict:
    """The weight, bias and geometry a torch ``Conv2d``/``Linear`` computes with (for conv_term/linear_term)."""
    if isinstance(m, nn.Conv2d):
        return dict(weight=m.weight, bias=m.bias, stride=m.stride, padding=m.padding, dilation=m.dilation,
                    groups=m.groups, padding_mode=m.padding_mode)
    return dict(weight=m.weight, bias=m.bias)


class _Recorder(TorchFunctionMode):
    """Records every call of ``func``: (arguments by name, result)."""

    def __init__(self, func, names):
        super().__init__()
        self.func, self.names, self.calls = func, names, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is self.func:
            self.calls.append((dict(zip(self.names, args), **(kwargs or {})), out))
        return out


def run_eval(m: nn.Module, x: torch.Tensor, mode=None, call=None):
    """``m(x)`` (or ``call(x)``) with ``m`` in eval mode, without gradients, under ``mode`` if given; ``m``'s
    training mode restored."""
    was_training = m.training
    m.eval()
    try:
        with torch.no_grad(), mode if mode is not None else contextlib.nullcontext():
            return (call or m)(x)
    finally:
        m.train(was_training)


def captured_call(m: nn.Module, name: str, in_shape: tuple, record: list) -> dict:
    """The ``F.conv2d``/``F.linear`` call of a user's ``Conv2d``/``Linear`` subclass ``m`` (weight, bias and
    geometry, for conv_term/linear_term); appends its :class:`UserLayer` to ``record``."""
    base = nn.Conv2d if isinstance(m, nn.Conv2d) else nn.Linear
    func, names = _CALLS[base]
    fname = f"F.{func.__name__}"
    x = torch.rand(2, *in_shape, generator=torch.Generator().manual_seed(0))
    rec = _Recorder(func, names)
    try:
        out = run_eval(m, x, rec)
    except Exception as e:
        _refuse(m, name, f"its forward fails on an input of shape {tuple(in_shape)} ({type(e).__name__}: "
                f"{str(e)[:100]})", "make forward(x) work on a batch of the layer's input")
    if len(rec.calls) != 1:
        _refuse(m, name, f"its forward makes {len(rec.calls)} {fname} calls", f"compute the output with exactly "
                f"one {fname}(x, weight, bias, ...) on the layer's input (quantize the weight before it)")
    call, result = rec.calls[0]
    given = call.get("input")
    if not (given is x or isinstance(given, torch.Tensor) and given.shape == x.shape and torch.equal(given, x)):
        _refuse(m, name, f"its forward changes the input before {fname}",
                f"call {fname} on the layer's input itself (padding and scaling belong to other layers)")
    if not (out is result or isinstance(out, torch.Tensor) and out.shape == result.shape and torch.equal(out, result)):
        _refuse(m, name, f"its forward changes the result of {fname}",
                f"return {fname}(x, weight, bias, ...) as it is (put a scale into the weight or a BatchNorm)")
    call.pop("input")
    weight = call["weight"].detach().clone()
    record.append(UserLayer(name, type(m).__name__, weight_steps=weight_steps(weight)))
    if call.get("bias") is not None:
        call["bias"] = call["bias"].detach().clone()
    return dict(call, weight=weight)


def weight_steps(w: torch.Tensor, q_max: int = Q_MAX, rtol: float = 1e-5) -> int | None:
    """The smallest m ≤ ``q_max`` with ``w = s·q``, ``s = max|w|/m``, q integer (to ``rtol·m``); None if none."""
    values = torch.unique(w.detach().double().abs())
    top = float(values.max()) if values.numel() else 0.0
    if top == 0.0:
        return 1
    if len(values) > q_max + 1:
        return None
    for m in range(1, q_max + 1):
        q = values / top * m
        if float((q - q.round()).abs().max()) <= rtol * m:
            return m
    return None


def _probe(m: nn.Module, ramp: torch.Tensor, in_shape: tuple) -> torch.Tensor:
    """``m`` on inputs whose sample p has every element ``ramp[p]``: (P, outputs per sample)."""
    n = math.prod(in_shape)
    chunk = max(1, (1 << 22) // max(1, n))
    outs = [run_eval(m, part.view(-1, *([1] * len(in_shape))).expand(-1, *in_shape).contiguous())
            for part in ramp.split(chunk)]
    return torch.cat([o.reshape(len(o), -1) for o in outs]).double()


def staircase(m: nn.Module, name: str, in_shape: tuple) -> tuple[float, int] | None:
    """(α, b) of a leaf activation ``m`` that is a uniform b-bit staircase (module docstring); None when it is
    ``relu(x)``; anything else is refused naming ``m`` and why.

    The probe runs on at most 4×4 positions of each channel (the full map where ``m`` needs it, a pooling):
    a clip that varies over the map beyond those is caught by :func:`check_layers`, which names the layer."""
    small = tuple(in_shape[:1]) + tuple(min(s, 4) for s in in_shape[1:])  # a few positions: cheap, and
    try:                                                                   # the layer check sees the rest
        try:
            top = float(_probe(m, torch.tensor([1e4]), small).max())
        except Exception:  # a layer that needs its full map (a pooling)
            small = tuple(in_shape)
            top = float(_probe(m, torch.tensor([1e4]), small).max())
        unbounded = top >= 1e4 * (1 - 1e-6)
        ramp = torch.linspace(-1.0, 4.0 if unbounded else 4.0 * max(top, 1e-6), RAMP)
        y = _probe(m, ramp, small)
    except Exception as e:
        _refuse(m, name, f"it fails on an input of shape {tuple(in_shape)} ({type(e).__name__}: {str(e)[:100]})",
                "make forward(x) work on a batch of the layer's input")
    x = ramp.double()
    scale = max(1.0, float(y.abs().max()))
    if float((y - y[:, :1]).abs().max()) > 1e-6 * scale:
        _refuse(m, name, "it treats elements of equal input differently (a per-channel or per-element clip)",
                "clip every element of the layer at one α")
    y = y[:, 0]
    if unbounded:
        if float((y - x.clamp(min=0)).abs().max()) <= 1e-6 * scale:
            return None
        _refuse(m, name, "it is neither a ReLU nor a clipped, rounded ReLU", _UNIFORM)
    if float(y.min()) < -1e-6 * scale:
        _refuse(m, name, "it has negative outputs", "spiking neurons emit counts k ≥ 0: " + _UNIFORM)
    alpha = float(y.max())
    if alpha <= 0:
        _refuse(m, name, "its output is 0 for every input", _UNIFORM)
    levels = _levels(y, alpha)
    if len(levels) > MAX_LEVELS:
        _refuse(m, name, "it is neither a ReLU nor a clipped, rounded ReLU (no staircase of at most "
                f"{MAX_LEVELS} levels)", _UNIFORM)
    gaps = levels[1:] - levels[:-1]
    if len(gaps) and float((gaps - gaps[0]).abs().max()) > 1e-5 * alpha:
        shown = ", ".join(f"{v / alpha:.4g}" for v in levels[:6].tolist())
        _refuse(m, name, f"its levels are not equally spaced (α·[{shown}{', …' if len(levels) > 6 else ''}]: a "
                "power-of-two or other non-uniform grid); a spike count k carries k·θ, so only a uniform grid "
                "α·k/(2^b − 1) converts", "use a uniform quantizer")
    steps = len(levels) - 1
    bits = round(math.log2(steps + 1))
    if 2 ** bits - 1 != steps:
        _refuse(m, name, f"it has {steps + 1} levels, not 2^b of a b-bit quantizer (levels 0..2^b − 1)", _UNIFORM)
    t = x.clamp(min=0) * steps / alpha
    far = (t - t.floor() - 0.5).abs() > TIE
    want = act_quant(x, torch.tensor([alpha], dtype=torch.float64), bits)
    if float(((y - want).abs() * far).max()) > 1e-5 * alpha:
        _refuse(m, name, f"it is not the staircase α·clip(round(x·L/α), 0, L)/L with α = {alpha:.6g}, L = {steps}",
                _UNIFORM)
    return alpha, bits


_UNIFORM = "use a uniform quantizer α·clip(round(relu(x)·(2^b − 1)/α), 0, 2^b − 1)/(2^b − 1) with one clip α"


def _levels(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """The distinct values of ``y`` (values closer than 1e-6·α are one level), ascending."""
    s = torch.sort(y).values
    keep = torch.cat([torch.tensor([True]), (s[1:] - s[:-1]) > 1e-6 * alpha])
    return s[keep]


def _refuse(m: nn.Module, name: str, cause: str, fix: str):
    raise FastSNNError(f"{describe(name, m, site=True)} is not converted: {cause}; {fix}")


def clip_layer(layer: dict, m: nn.Module, name: str, clip: tuple, node: str) -> None:
    """The staircase ``clip`` (α, b) of ``m`` applied to the activation of ``layer`` (a ReLU before it:
    ``q(relu(z)) = q(z)``; a ReLU6 bound m ≥ α: ``q(min(relu(z), m)) = q(z)``)."""
    if "alpha" in layer:
        _refuse(m, name, "it quantizes an activation that is already quantized",
                "quantize each activation once")
    if layer.get("alpha_max", math.inf) < clip[0]:
        _refuse(m, name, f"its clip α = {clip[0]:.6g} lies above the clip {layer['alpha_max']} before it",
                "clip once, with the quantizer")
    layer.update(alpha=clip[0], bits=clip[1], node=node)


def check_bits(m: nn.Module, name: str, bits: int, seen: set) -> None:
    """Refuse a staircase of ``bits`` when the network has other activation bits already (one b per network)."""
    if seen and bits not in seen:
        _refuse(m, name, f"it quantizes to {bits} bits, an earlier layer to {sorted(seen)[0]}",
                "use one b for every activation (the network has one T = 2^b − 1)")


def whole_map(name: str, v, what: str):
    """Global average pooling of the (C, H, W) activation ``v`` as a fixed depthwise convolution (kernel H,
    weights 1/(H·W)): a layer of its own when an activation quantizer follows the pooling (``QuantAvg``)."""
    c, h, w = v.shape
    if h != w:
        fail(f"{what} '{name}' on a {h}×{w} map followed by an activation quantizer", "use a square map")
    geometry = {"kernel": h, "stride": h, "padding": 0, **({"groups": c} if c > 1 else {})}
    return fixed_map(name, v, torch.full((c, 1, h, w), 1.0 / (h * w)), geometry, (c, 1, 1), what)


def layer_clips(layers: list) -> list:
    """Per hidden layer the user's clip α (None where the layer came from a plain ReLU)."""
    return [layer.get("alpha") for layer in layers]


@torch.no_grad()
def set_user_clips(qann: nn.Module, clips: list) -> None:
    """α of every hidden layer of ``qann`` (a QuantNet) that has a user clip ← that clip (after calibration)."""
    for layer, alpha in zip([q for q in qann.layers if q.hidden], clips):
        if alpha is not None:
            layer.alpha.fill_(float(alpha))


class _Staircases(TorchFunctionMode):
    """The float network's hidden activations (its ReLU/clamp calls, one per hidden layer in order), each
    followed by the layer's staircase; with ``want`` (the model's activations) each is compared with the
    model's and replaced by it, and the first layer that differs is kept in ``bad``."""

    def __init__(self, layers: list, bits: int | None, want: list | None = None):
        super().__init__()
        self.layers, self.bits, self.want, self.j, self.bad = layers, bits, want, 0, None
        self.ties = self.seen = 0  # quantized elements compared, and those the model rounds otherwise at a tie

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func not in _ACT_FUNCS or self.j >= len(self.layers):
            return out
        layer, j = self.layers[self.j], self.j
        self.j += 1
        y = self.quantize(layer, out)
        want = self.want[j] if self.want is not None else None
        if want is None:
            return y
        want = self.quantize(layer, want.clamp(0.0, layer.get("alpha_max", math.inf)))
        close = (y - want).abs() <= 1e-4 * max(1.0, float(want.abs().max()))
        if "alpha" in layer:  # a pre-activation at a rounding tie may round either way: counted
            t = out * (2 ** layer["bits"] - 1) / layer["alpha"]
            tie = (t - t.floor() - 0.5).abs() <= TIE
            self.ties += int((tie & ~close).sum())
            self.seen += close.numel()
            close |= tie
        if self.bad is None and not bool(close.all()):
            self.bad = (j, float((y - want).abs().max()))
        return want

    @staticmethod
    def quantize(layer: dict, v: torch.Tensor) -> torch.Tensor:
        return act_quant(v, torch.tensor([layer["alpha"]]), layer["bits"]) if "alpha" in layer else v


@torch.no_grad()
def quantized_float_forward(float_net: nn.Module, clips: list, bits: int | None, x: torch.Tensor):
    """``float_net(x)`` with every hidden activation that has a user clip (``clips``: per hidden layer α or None,
    :attr:`fastsnn_lava.fx.Converted.clips`) followed by its ``bits``-bit staircase: the converted QANN in float
    arithmetic, what the user's quantized model computes."""
    layers = [{} if alpha is None else {"alpha": alpha, "bits": bits} for alpha in clips]
    with _Staircases(layers, bits):
        return float_net(x)


def check_layers(module: nn.Module, gm: torch.fx.GraphModule, float_net: nn.Module, layers: list,
                 x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The float network's output on ``x``, fed the model's activations layer by layer after checking each
    (module docstring); a layer that differs is refused by name. Also the fraction of the user's quantized
    activations that sat exactly on a rounding tie which the model rounded down (``torch.round``: half to
    even) and the integer network's IF neuron rounds up (half up): 0 after a BatchNorm or a float bias, often
    more than 0 where quantized values meet quantized weights or a quantized pooling with commensurate clips."""
    nodes = {n.name: n for n in gm.graph.nodes}
    interp = _Recording(gm, {layer.get("node", layer["name"]) for layer in layers})
    run_eval(module, x, call=interp.run)
    want = []
    for layer in layers:
        value = interp.kept.get(layer.get("node", layer["name"]))
        ok = isinstance(value, torch.Tensor) and tuple(value.shape) == (len(x), *layer["shape"])
        want.append(value.float() if ok else None)
    mode = _Staircases(layers, None, want)
    with torch.no_grad(), mode:
        out = float_net(x)
    if mode.bad is not None:
        j, diff = mode.bad
        node = nodes.get(layers[j].get("node", layers[j]["name"]))
        where = user_line(node) if node is not None else None
        raise FastSNNError(f"{where + ': ' if where else ''}the converted network computes something else than the "
                           f"model at the activation '{layers[j]['name']}' (hidden layer {j + 1}, max |Δ| = "
                           f"{diff:.3g} on random inputs): it was not converted exactly; please report the model")
    return out, mode.ties / max(1, mode.seen)


class _Recording(torch.fx.Interpreter):
    """Runs a traced model keeping a copy of the output of each node named in ``names`` (as it was then: a
    later in-place operation cannot change it)."""

    def __init__(self, gm: torch.fx.GraphModule, names: set):
        super().__init__(gm)
        self.names, self.kept = names, {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if n.name in self.names and isinstance(out, torch.Tensor):
            self.kept[n.name] = out.clone()
        return out


@torch.no_grad()
def agreement(model: nn.Module, qann: nn.Module, x: torch.Tensor, input_max: int) -> dict:
    """How closely the project's QuantNet ``qann`` (on raw inputs ``x``, 0..input_max) follows the user's
    model (on ``x / input_max``): ``{"top1_agreement": fraction of equal argmax, "max_abs_logit_diff": …}``.
    Not 1 and 0 in general: the integer grid re-quantizes the folded weights (module docstring)."""
    want, got = run_eval(model, x.float() / input_max), run_eval(qann, x.float())
    return {"top1_agreement": float((want.argmax(1) == got.argmax(1)).float().mean()),
            "max_abs_logit_diff": float((want - got).abs().max())}
