"""Convert a model the user wrote (any ``nn.Module``) into this project's architecture spec.

The module is traced with ``torch.fx`` and shape-propagated on a zero input of
``input_shape``. Every value in the graph is then one of

* the network input x;
* an *activation* ``y^j``: the output of a QReLU (or ``nn.ReLU``/``F.relu``), which
  becomes hidden layer j of the quantized network;
* a *view* of an activation: ``Flatten``/``flatten``/``view(B, -1)``, or global
  average pooling (``AdaptiveAvgPool2d(1)``, an ``AvgPool2d`` covering the whole
  map, ``mean((2, 3))``);
* a *pre-activation* ``z = Σ_i op_i(v_i) + b``: a sum of linear terms, each a
  Conv2d/Linear applied to the input, an activation or a view, or an identity
  (an activation added as it is). BatchNorm on a pre-activation folds into
  every term, ``op ← (γ/σ)·op``, ``b ← β + (γ/σ)(b − μ)``; a residual ``+`` adds two
  pre-activations (their terms and biases).

A ReLU on a pre-activation makes a layer: its *main* term must come from the
layer just before (or from the input, for the first layer), every other term is
a shortcut from an earlier layer (spec ``"skips"``). The output must be a
pre-activation with one term: the classifier (after optional global average
pooling). The result is the spec that :class:`~fastsnn_lava.models.QuantNet`
trains on, plus a float network of :func:`~fastsnn_lava.models.build_float`
holding the folded weights, so the user model can be quantized, trained,
converted, exported and saved with the rest of the pipeline.

Anything else raises a :class:`~fastsnn_lava.errors.FastSNNError` that names the
module (its qualified name) and says what to use instead.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .errors import FastSNNError
from .models import QuantNet, ResidualNet, build_float
from .spec import layer_shapes
from .quant import QReLU

ALLOWED = "Conv2d, Linear, BatchNorm, QReLU/ReLU, Flatten, global AvgPool and residual additions"
_IDENTITY_MODULES = (nn.Identity, nn.Dropout)


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, QReLU) or super().is_leaf_module(m, name)


@dataclass
class _Input:
    shape: tuple


@dataclass
class _Act:
    index: int  # 1-based hidden layer
    shape: tuple


@dataclass
class _View:
    src: object  # _Act or _Input
    pool: bool   # global average pooling (else flatten)
    shape: tuple


@dataclass
class _Term:
    src: object          # _Input, _Act or _View
    kind: str            # conv | dense | identity
    weight: torch.Tensor | None = None  # float, folded
    geometry: dict = field(default_factory=dict)


@dataclass
class _Pre:
    terms: list
    bias: torch.Tensor
    shape: tuple


@dataclass
class _Const:
    """A non-tensor value of the trace (``x.size(0)``, ``x.shape``): only reshapes may use it."""


@dataclass
class Converted:
    """The result of :func:`convert`: the spec, the class count and the float network (folded weights)."""

    spec: list
    n_classes: int
    float_net: nn.Module
    bits: int | None = None  # the bits QReLU modules named, if any


def _fail(what: str, fix: str):
    raise FastSNNError(f"{what} is not supported: {fix}")


def _shape(node: torch.fx.Node) -> tuple:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()


def _as_pre(v, name: str) -> _Pre:
    if isinstance(v, _Pre):
        return v
    if isinstance(v, _Act):
        return _Pre([_Term(v, "identity")], torch.zeros(v.shape[0]), v.shape)
    if isinstance(v, _Input):
        _fail(f"the shortcut from the network input at '{name}'", "start the model with a Conv2d/Linear stem "
              "and a QReLU, and add shortcuts from there")
    _fail(f"adding the flattened or pooled value at '{name}'", "add activations before Flatten/AvgPool")


def _spatial(v, attr, name):
    a = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if a[0] != a[1]:
        _fail(f"Conv2d '{name}' with unequal {attr} {a}", f"use a square {attr}")
    return int(a[0])


class _Converter:
    def __init__(self, module: nn.Module, input_shape: tuple):
        self.module = module
        self.input_shape = tuple(input_shape)
        self.layers: list[dict] = []  # per hidden layer: spec, folded weight, bias, skip weights
        self.bits: set = set()

    def run(self) -> tuple[list, int, list]:
        try:
            graph = _Tracer().trace(self.module)
        except Exception as e:
            raise FastSNNError(f"the model cannot be traced by torch.fx ({type(e).__name__}: {str(e)[:120]}): "
                               "avoid data-dependent Python control flow in forward()") from None
        gm = torch.fx.GraphModule(self.module, graph)
        was_training = self.module.training
        gm.eval()
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(torch.zeros(2, *self.input_shape))
        except Exception as e:
            raise FastSNNError(f"the model does not run on input shape {self.input_shape} "
                               f"({type(e).__name__}: {str(e)[:120]})") from None
        finally:
            self.module.train(was_training)
        self.mods = dict(gm.named_modules())
        env = {}
        out = None
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                if env:
                    _fail(f"a second input '{node.name}'", "use one input tensor")
                env[node] = _Input(self.input_shape)
            elif node.op == "output":
                out = env[node.args[0]] if isinstance(node.args[0], torch.fx.Node) else None
            elif node.op == "get_attr":
                _fail(f"the parameter access '{node.target}'", f"build the model from {ALLOWED}")
            else:
                env[node] = self.visit(node, env)
        return self.finish(out)

    # ---- graph nodes
    def visit(self, node: torch.fx.Node, env: dict):
        args = [env.get(a, a) if isinstance(a, torch.fx.Node) else a for a in node.args]
        shape = _shape(node)
        if node.op == "call_module":
            m, name = self.mods[node.target], str(node.target)
            if isinstance(m, _IDENTITY_MODULES):
                return args[0]
            if isinstance(m, nn.Conv2d):
                return self.conv(m, name, args[0], shape)
            if isinstance(m, nn.Linear):
                return self.linear(m, name, args[0], shape)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                return self.batchnorm(m, name, args[0])
            if isinstance(m, (QReLU, nn.ReLU)):
                if isinstance(m, QReLU) and m.bits is not None:
                    self.bits.add(int(m.bits))
                return self.activation(name, args[0], shape)
            if isinstance(m, nn.Flatten):
                return self.flatten(name, args[0], shape)
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
                return self.pool(type(m).__name__, name, args[0], shape)
            if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
                _fail(f"{type(m).__name__} '{name}'", "use a stride-2 Conv2d")
            _fail(f"{type(m).__name__} '{name}'", f"build the model from {ALLOWED}")
        target = node.target
        fname = getattr(target, "__name__", str(target))
        if node.op == "call_method" and target in ("size", "dim") or node.op == "call_function" and target in (
                getattr, operator.getitem) and not isinstance(args[0], (_Pre, _Act, _View, _Input)) or (
                node.op == "call_function" and target is getattr and args[1] == "shape"):
            return _Const()
        if node.op == "call_method":
            if target == "relu":
                return self.activation(node.name, args[0], shape)
            if target in ("flatten", "view", "reshape"):
                return self.flatten(node.name, args[0], shape)
            if target == "mean":
                return self.pool("mean", node.name, args[0], shape)
            if target in ("add", "__add__"):
                return self.add(node.name, args)
            _fail(f"the tensor method '{target}' at '{node.name}'", f"build the model from {ALLOWED}")
        if target in (operator.add, torch.add) and len(args) == 2 and not node.kwargs:
            return self.add(node.name, args)
        if target in (F.relu, torch.relu):
            return self.activation(node.name, args[0], shape)
        if target is torch.flatten:
            return self.flatten(node.name, args[0], shape)
        if target in (F.adaptive_avg_pool2d, F.avg_pool2d):
            return self.pool(fname, node.name, args[0], shape)
        if target in (F.max_pool2d, torch.max_pool2d):
            _fail(f"max_pool2d at '{node.name}'", "use a stride-2 Conv2d")
        _fail(f"the function '{fname}' at '{node.name}'", f"build the model from {ALLOWED}")

    def _source(self, v, what: str, name: str):
        if isinstance(v, _Pre):
            _fail(f"{what} '{name}' after another linear layer without an activation",
                  "put a QReLU between them")
        if not isinstance(v, (_Input, _Act, _View)):
            _fail(f"{what} '{name}' on a constant", f"build the model from {ALLOWED}")
        return v

    def conv(self, m: nn.Conv2d, name: str, v, shape):
        v = self._source(v, "Conv2d", name)
        if isinstance(v, _View) or len(v.shape) != 3:
            _fail(f"Conv2d '{name}' on a flattened or pooled value", "convolve (C, H, W) activations")
        if m.groups != 1 or _spatial(m.dilation, "dilation", name) != 1 or m.padding_mode != "zeros" \
                or isinstance(m.padding, str):
            _fail(f"Conv2d '{name}' with groups, dilation, string padding or non-zero padding mode",
                  "use groups=1, dilation=1 and integer zero padding")
        geometry = {"kernel": _spatial(m.kernel_size, "kernel", name), "stride": _spatial(m.stride, "stride", name),
                    "padding": _spatial(m.padding, "padding", name)}
        bias = m.bias.detach().clone() if m.bias is not None else torch.zeros(m.out_channels)
        return _Pre([_Term(v, "conv", m.weight.detach().clone(), geometry)], bias, shape)

    def linear(self, m: nn.Linear, name: str, v, shape):
        v = self._source(v, "Linear", name)
        if len(shape) != 1:
            _fail(f"Linear '{name}' on a (C, H, W) value", "flatten or pool before it")
        bias = m.bias.detach().clone() if m.bias is not None else torch.zeros(m.out_features)
        return _Pre([_Term(v, "dense", m.weight.detach().clone())], bias, shape)

    def batchnorm(self, m, name: str, v):
        if not isinstance(v, _Pre):
            _fail(f"{type(m).__name__} '{name}' that does not follow a Conv2d/Linear",
                  "put BatchNorm right after a Conv2d or Linear (or a residual sum of them)")
        if m.running_mean is None:
            _fail(f"{type(m).__name__} '{name}' without running statistics", "use track_running_stats=True")
        gamma = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_mean)
        beta = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
        scale = gamma / torch.sqrt(m.running_var + m.eps)
        terms = []
        for t in v.terms:
            if t.kind == "identity":  # a scaled identity becomes a diagonal 1×1 conv / dense
                n = t.src.shape[0]
                diag = torch.diag(scale.clone())
                if len(t.src.shape) == 3:
                    terms.append(_Term(t.src, "conv", diag[:, :, None, None], {"kernel": 1, "stride": 1, "padding": 0}))
                else:
                    terms.append(_Term(t.src, "dense", diag.reshape(n, n)))
            else:
                terms.append(_Term(t.src, t.kind, t.weight * scale.view(-1, *([1] * (t.weight.dim() - 1))),
                                   t.geometry))
        return _Pre(terms, beta + scale * (v.bias - m.running_mean), v.shape)

    def add(self, name: str, args):
        if not all(isinstance(a, (_Pre, _Act, _Input, _View)) for a in args):
            _fail(f"adding a constant at '{name}'", "add only layer outputs (residual additions)")
        a, b = (_as_pre(x, name) for x in args)
        return _Pre(a.terms + b.terms, a.bias + b.bias, a.shape)

    def flatten(self, name: str, v, shape):
        if len(shape) != 1:
            _fail(f"the reshape at '{name}' to {shape}", "only flatten to (batch, features)")
        if isinstance(v, _View):
            return _View(v.src, v.pool, shape)
        if isinstance(v, (_Act, _Input)):
            return v if len(v.shape) == 1 else _View(v, False, shape)
        _fail(f"Flatten at '{name}' between a linear layer and its activation", "flatten activations only")

    def pool(self, what: str, name: str, v, shape):
        if not isinstance(v, _Act) or len(v.shape) != 3 or math.prod(shape) != v.shape[0]:
            _fail(f"{what} '{name}'", "average pooling only as global pooling of an activation right before a "
                  "Linear layer; downsample with a stride-2 Conv2d")
        return _View(v, True, (v.shape[0],))

    def activation(self, name: str, v, shape):
        if isinstance(v, _Act):
            return v  # ReLU of a ReLU
        if not isinstance(v, _Pre):
            _fail(f"the activation '{name}' on the input or a reshaped value", "apply it after a Conv2d/Linear")
        index = len(self.layers) + 1
        main, skips = self._split(v, name)
        self.layers.append({"name": name, "main": main, "skips": skips, "bias": v.bias, "shape": shape})
        return _Act(index, shape)

    def _split(self, v: _Pre, name: str) -> tuple[_Term, list]:
        prev = len(self.layers)  # 0: the input
        def source_index(t):
            src = t.src.src if isinstance(t.src, _View) else t.src
            return 0 if isinstance(src, _Input) else src.index
        mains = [t for t in v.terms if source_index(t) == prev and t.kind != "identity"]
        if len(mains) != 1:
            _fail(f"the layer ending in '{name}' ({len(mains)} Conv2d/Linear from the layer before)",
                  "give every activation exactly one Conv2d/Linear from the activation just before it; "
                  "other inputs may only be residual additions from earlier activations")
        skips = [t for t in v.terms if t is not mains[0]]
        for t in skips:
            if source_index(t) == 0:
                _fail(f"the shortcut from the network input into '{name}'", "start the model with a stem "
                      "Conv2d/Linear and a QReLU, and add shortcuts from there")
            if isinstance(t.src, _View) and (t.src.pool or len(t.src.src.shape) != 1):
                _fail(f"the shortcut into '{name}' from a pooled or flattened value",
                      "add (C, H, W) activations through an identity or a Conv2d")
        return mains[0], skips

    # ---- result
    def finish(self, out) -> tuple[list, int, list]:
        if isinstance(out, _Act):
            _fail("a model that ends in an activation", "end with a Linear classifier (no activation after it)")
        if not isinstance(out, _Pre) or len(out.terms) != 1 or out.terms[0].kind != "dense":
            _fail("a model whose output is not one Linear layer", "end with a Linear classifier (its input "
                  "flattened or globally average-pooled); residual additions must end in an activation")
        classifier = out.terms[0]
        src = classifier.src.src if isinstance(classifier.src, _View) else classifier.src
        if (0 if isinstance(src, _Input) else src.index) != len(self.layers):
            _fail("a classifier that does not read the last activation", "feed the last activation to the classifier")
        spec, folded = [], []
        for i, layer in enumerate(self.layers, start=1):
            main = layer["main"]
            entry = self._entry(main, layer["shape"][0])
            if isinstance(main.src, _View) and main.src.pool:
                spec.append({"kind": "avgpool"})
            sk_specs, sk_weights = [], []
            for t in layer["skips"]:
                j = t.src.src.index if isinstance(t.src, _View) else t.src.index
                if t.kind == "identity":
                    sk_specs.append({"from": j})
                    sk_weights.append(None)
                else:
                    sk_specs.append(dict({"from": j, "kind": t.kind}, **t.geometry))
                    sk_weights.append(t.weight)
            if sk_specs:
                entry["skips"] = sk_specs
            spec.append(entry)
            folded.append({"weight": main.weight, "bias": layer["bias"], "skips": sk_weights})
        if isinstance(classifier.src, _View) and classifier.src.pool:
            spec.append({"kind": "avgpool"})
        folded.append({"weight": classifier.weight, "bias": out.bias, "skips": []})
        n_classes = out.shape[0]
        shapes = layer_shapes(spec, self.input_shape, n_classes)
        for (s, _, o), layer in zip(shapes, self.layers):
            if tuple(o) != tuple(layer["shape"]):
                raise AssertionError(f"traced shape {layer['shape']} differs from the spec's {o} at {layer['name']}")
        return spec, n_classes, folded

    @staticmethod
    def _entry(t: _Term, n_out: int) -> dict:
        if t.kind == "conv":
            return {"kind": "conv", "out": n_out, **t.geometry}
        return {"kind": "dense", "out": n_out}


def _set_bn(bn: nn.Module, beta: torch.Tensor) -> None:
    """A BatchNorm that computes ``x + β`` in eval mode: γ = 1, μ = 0, σ² = 1 − ε."""
    bn.weight.fill_(1.0)
    bn.bias.copy_(beta)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


@torch.no_grad()
def _load_folded(float_net: nn.Module, folded: list) -> None:
    if isinstance(float_net, ResidualNet):
        for i, f in enumerate(folded):
            float_net.syn[i].weight.copy_(f["weight"].view_as(float_net.syn[i].weight))
            if isinstance(float_net.bn[i], nn.Identity):
                float_net.syn[i].bias.copy_(f["bias"])
            else:
                _set_bn(float_net.bn[i], f["bias"])
            for syn, bn, w in zip(float_net.skip_syn[i], float_net.skip_bn[i], f["skips"]):
                if w is not None:
                    syn.weight.copy_(w.view_as(syn.weight))
                    _set_bn(bn, torch.zeros_like(bn.bias))
        return
    mods = list(float_net)
    weights = [i for i, m in enumerate(mods) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, f in zip(weights, folded):
        mods[i].weight.copy_(f["weight"].view_as(mods[i].weight))
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _set_bn(nxt, f["bias"])
        else:
            mods[i].bias.copy_(f["bias"])


def convert(module: nn.Module, input_shape: tuple) -> Converted:
    """Trace ``module`` (inputs of ``input_shape``, scaled to [0, 1] as the pipeline feeds them)
    and return its spec with a float network of this project holding the BN-folded weights.

    The float network computes what ``module`` computes in eval mode (up to float rounding).
    """
    conv = _Converter(module, input_shape)
    spec, n_classes, folded = conv.run()
    float_net = build_float(spec, tuple(input_shape), n_classes)
    _load_folded(float_net, folded)
    float_net.eval()
    if len(conv.bits) > 1:
        raise FastSNNError(f"the model's QReLU modules ask for different bits {sorted(conv.bits)}: use one b")
    return Converted(spec, n_classes, float_net, next(iter(conv.bits), None))


def quantize(module: nn.Module, input_shape: tuple, bits: int, input_max: int, calib_x: torch.Tensor,
             percentile: float = 99.7) -> tuple[QuantNet, nn.Module, list]:
    """(QuantNet, float network, spec) of a user model: converted, BN folded, clips α calibrated.

    ``calib_x`` holds raw integer inputs (0..input_max), the model sees ``x / input_max``.
    The QuantNet then trains (``train._fit``) and converts (``convert.to_network``) like a preset;
    ``checkpoint.save(path, qann, float_net, meta)`` stores it like a preset.
    """
    c = convert(module, input_shape)
    if c.bits is not None and c.bits != int(bits):
        raise FastSNNError(f"the model's QReLU modules ask for {c.bits} bits, not {bits}: "
                           "convert with the bits the model was written for")
    qann = QuantNet(c.spec, tuple(input_shape), c.n_classes, int(bits), int(input_max))
    qann.init_from_float(c.float_net, calib_x, percentile)
    return qann, c.float_net, c.spec
