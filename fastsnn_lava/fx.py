"""Convert a model the user wrote (any ``nn.Module``) into this project's architecture spec.

The module is traced with ``torch.fx`` and shape-propagated on a zero input of
``input_shape`` (:mod:`fastsnn_lava.fx_trace`); :class:`_Converter` walks the graph, and the
values of its nodes and the patterns that combine them are in :mod:`fastsnn_lava.fx_patterns`.
Every value in the graph is one of

* the network input x (or ``(x − μ)/σ`` with per-channel constants: folded into the first layer);
* an *activation* ``y^j``: the output of a QReLU (or ``nn.ReLU``/``F.relu``; ``ReLU6``/``hardtanh(z, 0, m)``
  is ``min(relu(z), m)``: the layer's clip is then bounded, spec ``"alpha_max": m``), which
  becomes hidden layer j of the quantized network;
* a *view* of an activation: ``Flatten``/``flatten``/``view(B, -1)``, or global
  average pooling (``AdaptiveAvgPool2d(1)``, an ``AvgPool2d`` covering the whole
  map, ``mean((2, 3))``);
* a *fixed map* of an activation (:mod:`fastsnn_lava.fx_maps`): an average pooling that is not global
  (a depthwise conv of weights 1/k²), a strided slice or zero channel padding (option-A shortcuts: a 0/1
  1×1 conv), or a ``torch.cat`` (split by channel in the Conv2d/Linear it feeds); a ReLU of it makes a
  layer whose main term is the map, a Conv2d/Linear of it absorbs it (composed exactly, or refused);
* a *pre-activation* ``z = Σ_i op_i(v_i) + b``: a sum of linear terms, each a
  Conv2d/Linear applied to the input, an activation or a view, or an identity
  (an activation added as it is). BatchNorm on a pre-activation folds into
  every term, ``op ← (γ/σ)·op``, ``b ← β + (γ/σ)(b − μ)``; a residual ``+`` adds two
  pre-activations (their terms and biases).

A user's own Conv2d/Linear/ReLU/AvgPool2d subclass (the paper's quantized layers) is a leaf whose weight is
captured from its ``F.conv2d``/``F.linear`` call and whose activation quantizer is probed as a uniform b-bit
staircase (:mod:`fastsnn_lava.fx_quant`). A ReLU on a pre-activation makes a layer: its *main* term must come from the
layer just before (or from the input, for the first layer), every other term is
a shortcut from an earlier layer (spec ``"skips"``). The output must be a
pre-activation with one term: the classifier (after optional global average
pooling). The result is the spec that :class:`~fastsnn_lava.models.QuantNet`
trains on, plus a float network of :func:`~fastsnn_lava.models.build_float`
holding the folded weights, so the user model can be quantized, trained,
converted, exported and saved with the rest of the pipeline.

Anything else raises a :class:`~fastsnn_lava.errors.FastSNNError` of one line that names the
user's module (its qualified name, the line of its forward), the one cause and what to do instead
(:mod:`fastsnn_lava.fx_refusals`).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .errors import FastSNNError
from .fx_patterns import (Act, Cat, Const, Input, Mapped, PaddedInput, Pre, Tensor, Term, View, add_terms, as_pre,
                          conv_term, fail, flatten_view, fold_batchnorm, linear_term, node_shape, normalize_input,
                          pad_input, pool_view, pool_window)
from .fx_maps import adaptive_pool, avg_pool, concat, pad_map, pool_module, resolved, slice_map
from .fx_build import build_spec, load_folded
from .fx_quant import (UserLayer, captured_call, check_bits, check_layers, clip_layer, is_user_layer, layer_clips,
                       module_call, set_user_clips, staircase, whole_map)
from .fx_refusals import located, refuse_call, refuse_module, refuse_parameter
from .fx_trace import trace
from .models import QuantNet, build_float
from .quant import QReLU

_IDENTITY_MODULES = (nn.Identity, nn.Dropout)


@dataclass
class Converted:
    """The result of :func:`convert`: the spec, the class count and the float network (folded weights)."""

    spec: list
    n_classes: int
    float_net: nn.Module
    bits: int | None = None  # the bits QReLU modules or the user's activation quantizers named, if any
    clips: list = field(default_factory=list)  # per hidden layer the user's clip α (None: calibrated)
    user_layers: list = field(default_factory=list)  # the user's own layers (fx_quant.UserLayer): the summary
    ties: float = 0.0  # fraction of quantized activations at ties the model rounds to even, the SNN up (check_same)


class _Converter:
    """Walks the traced graph in order: every node's value comes from a pattern of
    :mod:`fastsnn_lava.fx_patterns`; every activation of a pre-activation makes a hidden layer
    (its main term and shortcuts); :func:`~fastsnn_lava.fx_build.build_spec` turns the layers into the spec."""

    def __init__(self, module: nn.Module, input_shape: tuple):
        self.module = module
        self.input_shape = tuple(input_shape)
        self.layers: list[dict] = []  # per hidden layer: spec, folded weight, bias, skip weights
        self.bits: set = set()
        self.user: list = []  # the user's own layers (fx_quant.UserLayer), for the conversion summary

    def run(self) -> tuple[list, int, list]:
        gm = self.gm = trace(self.module, self.input_shape)
        self.mods = dict(gm.named_modules())
        env = {}
        out = None
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                if env:
                    fail(f"a second input '{node.name}'", "use one input tensor")
                env[node] = Input(self.input_shape)
            elif node.op == "output":
                out = env[node.args[0]] if isinstance(node.args[0], torch.fx.Node) else None
            else:
                try:
                    env[node] = self.visit(node, env)
                except FastSNNError as e:
                    raise FastSNNError(located(node, self.module, str(e))) from None
        return build_spec(self.layers, out, self.input_shape)

    # ---- graph nodes
    def visit(self, node: torch.fx.Node, env: dict):
        if node.op == "get_attr":  # a buffer or tensor constant (input normalisation); a parameter is refused
            value = _attr(self.gm, str(node.target))
            if isinstance(value, nn.Parameter) or not isinstance(value, torch.Tensor):
                refuse_parameter(node, self.module)
            return Tensor(value.detach().clone())
        args = [env.get(a, a) if isinstance(a, torch.fx.Node) else a for a in node.args]
        shape = node_shape(node)
        if node.op == "call_module":
            m, name = self.mods[node.target], str(node.target)
            if isinstance(m, _IDENTITY_MODULES):
                return args[0]
            if isinstance(m, (nn.Conv2d, nn.Linear)):  # a user's subclass: the F.conv2d/F.linear call it makes
                given = captured_call(m, name, node_shape(node.args[0]), self.user) if is_user_layer(m) \
                    else module_call(m)
                return (conv_term if isinstance(m, nn.Conv2d) else linear_term)(name, args[0], shape, **given)
            if is_user_layer(m):  # a ReLU/AvgPool2d subclass with its own forward: a probed staircase
                return self.user_activation(m, name, node, args[0], shape)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                return fold_batchnorm(m, name, args[0])
            if isinstance(m, (QReLU, nn.ReLU)):
                if isinstance(m, QReLU) and m.bits is not None:
                    self.bits.add(int(m.bits))
                return self.activation(name, args[0], shape, node=node.name)
            if isinstance(m, nn.Hardtanh):  # nn.ReLU6 included
                return self.activation(name, args[0], shape, _clip_bound(m.min_val, m.max_val, name), node=node.name)
            if isinstance(m, nn.Flatten):
                return flatten_view(name, args[0], shape)
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):  # global: a view; else a fixed depthwise conv
                return pool_module(m, name, args[0], shape)
            refuse_module(m, name)
        target = node.target
        fname = getattr(target, "__name__", str(target))
        if any(isinstance(a, Tensor) for a in args) and not any(
                isinstance(a, (Input, PaddedInput, Act, Pre, View)) for a in args):
            vals = [a.value if isinstance(a, Tensor) else a for a in args]  # arithmetic on constants: its value
            return Tensor(getattr(vals[0], target)(*vals[1:], **node.kwargs) if node.op == "call_method"
                          else target(*vals, **node.kwargs))
        if "value" in node.meta:  # not a tensor (a size, a shape, arithmetic on them): only reshapes/pools read it
            return Const()
        if node.op == "call_method" and target in ("size", "dim") or node.op == "call_function" and target in (
                getattr, operator.getitem) and not isinstance(args[0], (Pre, Act, View, Input, PaddedInput, Mapped, Cat)) or (
                node.op == "call_function" and target is getattr and args[1] == "shape"):
            return Const()
        if target is operator.getitem:  # y[:, :, ::2, ::2]: a strided 1×1 convolution
            return slice_map(node.name, args[0], args[1], shape)
        if target is F.pad:  # zero channels (option-A shortcuts): a 1×1 convolution
            given = dict(zip(("pad", "mode", "value"), (_value(a) for a in node.args[1:])),
                         **{k: _value(a) for k, a in node.kwargs.items()})
            if isinstance(args[0], Input) and any(tuple(given.get("pad", ()))[:4]):  # the raw input's border
                return pad_input(node.name, args[0], tuple(given["pad"]) + (0, 0), shape) \
                    if given.get("mode", "constant") == "constant" and given.get("value") in (None, 0) else \
                    pad_map(node.name, args[0], shape=shape, **given)
            return pad_map(node.name, args[0], shape=shape, **given)
        if target in (torch.cat, torch.concat, torch.concatenate):  # split by the Conv2d/Linear it feeds
            parts = [env.get(a, a) for a in (node.args[0] if node.args else node.kwargs["tensors"])]
            dim = _value(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0))
            return concat(parts, dim, shape, located(node, self.module, "torch.cat"))
        op = _ARITH.get(target if node.op == "call_function" else str(target))
        if op and len(args) == 2:  # input normalisation: x - mean, / std, * (1 / std)
            v, c = (args[1], args[0]) if op == "mul" and isinstance(args[1], (Input, PaddedInput)) else args
            return normalize_input(op, node.name, v, c)
        if node.op == "call_method":
            if target == "relu":
                return self.activation(node.name, args[0], shape)
            if target in ("flatten", "view", "reshape"):
                return flatten_view(node.name, args[0], shape)
            if target == "mean":
                dims = _value(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim"))
                return pool_view("mean", node.name, args[0], shape, _window(args[0], "mean", dims=dims))
            if target in ("add", "__add__"):
                return add_terms(node.name, args)
            refuse_call("tensor method", target)
        if target in (operator.add, torch.add) and len(args) == 2 and not node.kwargs:
            return add_terms(node.name, args)
        if target in (F.relu, torch.relu):
            return self.activation(node.name, args[0], shape)
        if target is F.relu6:
            return self.activation(node.name, args[0], shape, 6.0)
        if target is F.hardtanh:
            given = dict(zip(("min_val", "max_val"), node.args[1:3]), **node.kwargs)
            return self.activation(node.name, args[0], shape, _clip_bound(
                given.get("min_val", -1.0), given.get("max_val", 1.0), node.name))
        if target is torch.flatten:
            return flatten_view(node.name, args[0], shape)
        if target is F.adaptive_avg_pool2d:
            return adaptive_pool(fname, node.name, args[0], shape, _value(
                node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")))
        if target is F.avg_pool2d:
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
            given = dict(zip(names, (_value(a) for a in node.args[1:])), **{k: _value(a) for k, a in node.kwargs.items()})
            return avg_pool(fname, node.name, args[0], shape, **given)
        refuse_call("function", fname)

    def activation(self, name: str, v, shape, alpha_max: float | None = None, alpha: float | None = None,
                   bits: int | None = None, node: str | None = None):
        """A ReLU (``alpha_max`` None) or a ReLU clipped at ``alpha_max`` (ReLU6): ``min(relu(z), alpha_max)``,
        the learned clip α of the layer then bounded by ``α ≤ alpha_max``; with ``alpha``, a user's uniform
        ``bits``-bit staircase of clip ``alpha`` (:func:`~fastsnn_lava.fx_quant.staircase`). ``node``: the name
        of the graph node whose output is the activation (``name`` when None)."""
        if isinstance(v, View) and v.pool:  # a ReLU of a global pooling: a depthwise layer over the whole map
            v = whole_map(name, v.src, "the global average pooling")
        if isinstance(v, (Mapped, Cat)):  # a ReLU of a pooling: a layer whose main term is its (depthwise) conv
            v = as_pre(v, name)
        if isinstance(v, Act):  # ReLU of a ReLU: min(relu(min(relu(z), a)), b) = min(relu(z), min(a, b))
            if alpha_max is not None:
                layer = self.layers[v.index - 1]
                layer["alpha_max"] = min(layer.get("alpha_max", alpha_max), alpha_max)
            return v
        if not isinstance(v, Pre):
            fail(f"the activation '{name}' on the input or a reshaped value", "apply it after a Conv2d/Linear")
        index = len(self.layers) + 1
        main, skips = self._split(v, name)
        self.layers.append({"name": name, "main": main, "skips": skips, "bias": v.bias, "shape": shape})
        if alpha_max is not None:
            self.layers[-1]["alpha_max"] = alpha_max
        self.layers[-1]["node"] = node or name
        if alpha is not None:
            self.layers[-1].update(alpha=alpha, bits=bits)
        return Act(index, shape)

    def user_activation(self, m: nn.Module, name: str, node: torch.fx.Node, v, shape):
        """A user's ReLU subclass (or AvgPool2d subclass: the parent's pooling, then) with its own forward: a
        hidden layer with the user's clip α and bits b when it is a uniform staircase, a ReLU when it is one."""
        if isinstance(m, nn.AvgPool2d):  # the pooling, then its quantizer: a layer of its own (depthwise)
            v = pool_module(m, name, v, shape)
        clip = staircase(m, name, node_shape(node.args[0]))
        if clip is None:
            return self.activation(name, v, shape, node=node.name)
        check_bits(m, name, clip[1], self.bits)
        self.bits.add(clip[1])
        self.user.append(UserLayer(name, type(m).__name__, alpha=clip[0], bits=clip[1]))
        if isinstance(v, Act):  # a staircase of a ReLU: q(relu(z)) = q(z)
            clip_layer(self.layers[v.index - 1], m, name, clip, node.name)
            return v
        return self.activation(name, v, shape, alpha=clip[0], bits=clip[1], node=node.name)

    def _split(self, v: Pre, name: str) -> tuple[Term, list]:
        prev = len(self.layers)  # 0: the input
        def source_index(t):
            src = t.src.src if isinstance(t.src, View) else t.src
            return 0 if isinstance(src, Input) else src.index
        terms = resolved(v, name)  # maps absorbed, concatenations split (fx_maps)
        mains = [t for t in terms if source_index(t) == prev and t.kind != "identity"]
        if len(mains) != 1:
            fail(f"the layer ending in '{name}' ({len(mains)} Conv2d/Linear from the layer before)",
                 "give every activation exactly one Conv2d/Linear from the activation just before it; "
                 "other inputs may only be residual additions from earlier activations")
        skips = [t for t in terms if t is not mains[0]]
        for t in skips:
            if source_index(t) == 0:
                fail(f"the shortcut from the network input into '{name}'", "start the model with a stem "
                     "Conv2d/Linear and a QReLU, and add shortcuts from there")
            if isinstance(t.src, View) and (t.src.pool or len(t.src.src.shape) != 1):
                fail(f"the shortcut into '{name}' from a pooled or flattened value",
                     "add (C, H, W) activations through an identity or a Conv2d")
        return mains[0], skips


def convert(module: nn.Module, input_shape: tuple) -> Converted:
    """Trace ``module`` (inputs of ``input_shape``, scaled to [0, 1] as the pipeline feeds them)
    and return its spec with a float network of this project holding the BN-folded weights.

    The float network computes what ``module`` computes in eval mode (up to float rounding).
    """
    conv = _Converter(module, input_shape)
    spec, n_classes, folded = conv.run()
    float_net = build_float(spec, tuple(input_shape), n_classes)
    load_folded(float_net, folded)
    float_net.eval()
    ties = check_same(module, float_net, tuple(input_shape), converter=conv)
    if len(conv.bits) > 1:
        raise FastSNNError(f"the model's QReLU modules ask for different bits {sorted(conv.bits)}: use one b")
    return Converted(spec, n_classes, float_net, next(iter(conv.bits), None), layer_clips(conv.layers), conv.user,
                     ties)


def quantize(module: nn.Module, input_shape: tuple, bits: int, input_max: int, calib_x: torch.Tensor,
             percentile: float = 99.7, converted: Converted | None = None) -> tuple[QuantNet, nn.Module, list]:
    """(QuantNet, float network, spec) of a user model: converted, BN folded, clips α calibrated
    (``converted``: :func:`convert`'s result for this module and shape, when the caller has it already).

    ``calib_x`` holds raw integer inputs (0..input_max), the model sees ``x / input_max``.
    Hidden layers of the user's own activation quantizers keep the user's clip α (set after calibration).
    The QuantNet then trains (``train._fit``) and converts (``convert.to_network``) like a preset;
    ``checkpoint.save(path, qann, float_net, meta)`` stores it like a preset.
    """
    c = converted if converted is not None else convert(module, input_shape)
    if c.bits is not None and c.bits != int(bits):
        raise FastSNNError(f"the model's activation quantizers ask for {c.bits} bits, not {bits}: "
                           "convert with the bits the model was written for")
    qann = QuantNet(c.spec, tuple(input_shape), c.n_classes, int(bits), int(input_max))
    qann.init_from_float(c.float_net, calib_x, percentile)
    set_user_clips(qann, c.clips)
    return qann, c.float_net, c.spec


def _clip_bound(lo, hi, name: str) -> float:
    """The bound of a ``hardtanh(x, lo, hi)`` that is a clipped ReLU (``lo = 0 < hi``: ReLU6 is ``hi = 6``)."""
    if lo != 0 or not hi > 0:
        fail(f"the activation '{name}' (hardtanh from {lo} to {hi})", "clip from 0 (ReLU6 or hardtanh(x, 0, m)): "
             "only ReLU activations, clipped or not, become spiking neurons")
    return float(hi)


_ARITH = {operator.sub: "sub", torch.sub: "sub", "sub": "sub", "__sub__": "sub", operator.truediv: "truediv",
          torch.div: "truediv", "div": "truediv", "__truediv__": "truediv", operator.mul: "mul", torch.mul: "mul",
          "mul": "mul", "__mul__": "mul"}


def _attr(root: nn.Module, target: str):
    """The attribute ``target`` (a dotted name) of ``root``."""
    for part in target.split("."):
        root = getattr(root, part)
    return root


def _value(a):
    """The concrete value of a node argument (a traced ``size()`` becomes its number)."""
    if isinstance(a, torch.fx.Node):
        return a.meta.get("value")
    if isinstance(a, (tuple, list)):
        return type(a)(_value(x) for x in a)
    return a


def _window(v, kind: str, **given) -> str | None:
    """:func:`pool_window` for the map of ``v`` (None when ``v`` is not a (C, H, W) activation:
    :func:`pool_view` refuses that on its own)."""
    shape = getattr(v, "shape", ())
    return pool_window(kind, tuple(shape[1:]), **given) if len(shape) == 3 else None


def check_same(module: nn.Module, float_net: nn.Module, input_shape: tuple, samples: int = 4,
               converter: _Converter | None = None) -> float:
    """Refuse a conversion whose network computes something else than ``module`` (both in eval mode,
    on seeded random inputs in [0, 1]): no construct may be approximated silently. The tolerance
    allows float rounding of the folded BatchNorm (relative 1e-4 of the output scale). With the
    ``converter`` that walked ``module``, every hidden activation is compared first, the float network's
    followed by the user's staircase where the model quantizes it (:func:`~fastsnn_lava.fx_quant.check_layers`:
    the first layer that differs is named). Returns the fraction of quantized activations at rounding ties
    that the model and the integer network round differently (``Converted.ties``)."""
    x = torch.rand(samples, *input_shape, generator=torch.Generator().manual_seed(0))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            want = module(x)
            got, ties = (float_net(x), 0.0) if converter is None else check_layers(module, converter.gm, float_net,
                                                                                   converter.layers, x)
    finally:
        module.train(was_training)
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        raise FastSNNError(f"the converted network's output {tuple(got.shape)} differs in shape from the model's "
                           f"{tuple(getattr(want, 'shape', ()))}: return the classifier's logits from forward()")
    diff = float((want - got).abs().max())
    scale = max(1.0, float(want.abs().max()))
    if not diff <= 1e-4 * scale:
        raise FastSNNError(f"the converted network computes something else than the model at its output layer "
                           f"(max |Δ| = {diff:.3g} on random inputs): a construct was not converted exactly; please "
                           "report the model")
    return ties
