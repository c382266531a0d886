"""The values of a traced model and the rules that combine them (:mod:`fastsnn_lava.fx` walks the graph).

Every value of the graph is one of :class:`Input` (the network input x), :class:`Act` (an
activation ``y^j``: hidden layer j), :class:`View` (a flattened or globally average-pooled
activation), :class:`Mapped` (a fixed convolution of one), :class:`Cat` (a concatenation),
:class:`Pre` (a pre-activation ``z = Σ_i op_i(v_i) + b``, a sum of :class:`Term`), :class:`Const`
(a non-tensor value) or :class:`Tensor` (a constant tensor: a buffer). The functions here are the patterns
of a supported model, each turning the values of its arguments into the value of a node:

* ``Conv2d`` (grouped or not)/``Linear`` on an input, activation or view: a pre-activation with one term
  (:func:`conv_term`, :func:`linear_term`);
* ``(x − μ)/σ`` of the input with per-channel constants is an input normalisation (:func:`normalize_input`),
  folded into the first layer, ``W' = W/σ_c``, ``b' = b − Σ W·μ_c/σ_c`` (:func:`fold_input`);
* BatchNorm on a pre-activation folds into every term (:func:`fold_batchnorm`): with
  ``s = γ/√(σ² + ε)``, ``op ← s·op`` and ``b ← β + s·(b − μ)``; an identity term becomes the
  diagonal ``diag(s)`` (a 1×1 conv or a square dense);
* a residual ``+`` adds two pre-activations, their terms and biases (:func:`add_terms`; an
  activation added as it is is an identity term);
* ``Flatten``/``view(B, -1)`` and global average pooling make views (:func:`flatten_view`,
  :func:`pool_view`);
* a non-global average pooling, a strided slice ``y[:, :, ::s, ::s]`` and a zero channel padding of an
  activation are fixed convolutions, :class:`Mapped`; ``torch.cat`` along channels is a :class:`Cat`: the
  next Conv2d/Linear absorbs either (:mod:`fastsnn_lava.fx_maps` has their rules).

Anything else raises a :class:`~fastsnn_lava.errors.FastSNNError` (:func:`fail`) naming the node
and what to use instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.fx
import torch.nn as nn

from .errors import FastSNNError
from .normalize import InputNorm, fold

ALLOWED = ("Conv2d, Linear, BatchNorm, QReLU/ReLU/ReLU6, Flatten, AvgPool, residual additions and torch.cat "
           "into a Conv2d/Linear")


@dataclass
class Input:
    """The network input x, or ``(x − μ)/σ`` with per-channel ``mean``/``std`` (:func:`normalize_input`)."""
    shape: tuple
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None


@dataclass
class PaddedInput:
    """``F.pad(x, (p, p, p, p))``: the raw input zero-padded by p pixels on every side, then maybe normalised.
    Only a Conv2d without padding of its own may read it: it is that Conv2d with padding p on the raw input
    (the normalisation folds exactly, :mod:`fastsnn_lava.normalize`)."""
    input: Input  # the raw input, unpadded
    pad: int
    shape: tuple  # padded
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None


@dataclass
class Tensor:
    """A constant tensor read in forward (a buffer, a tensor constant): only input normalisation uses it."""
    value: torch.Tensor


@dataclass
class Act:
    """An activation y^j: the output of hidden layer j."""
    index: int  # 1-based hidden layer
    shape: tuple


@dataclass
class View:
    """An activation flattened or globally average-pooled."""
    src: object  # Act or Input
    pool: bool   # global average pooling (else flatten)
    shape: tuple


@dataclass
class Term:
    """One linear term ``op(v)`` of a pre-activation."""
    src: object          # Input, Act or View
    kind: str            # conv | dense | identity
    weight: torch.Tensor | None = None  # float, folded
    geometry: dict = field(default_factory=dict)


@dataclass
class Pre:
    """A pre-activation ``z = Σ_i op_i(v_i) + b``."""
    terms: list
    bias: torch.Tensor
    shape: tuple


@dataclass
class Mapped:
    """A fixed linear map of an activation or the input, kept as the convolution that computes it (no bias):
    a non-global average pooling, a strided slice, a zero channel padding (:mod:`fastsnn_lava.fx_maps`).
    The next Conv2d/Linear absorbs it (:func:`fastsnn_lava.fx_maps.resolve`); a ReLU makes it a layer."""
    src: object          # Act or Input (a map of a map is composed into one)
    weight: torch.Tensor  # (C_out, C_in / groups, k, k)
    geometry: dict       # kernel, stride, padding (and groups when not 1)
    shape: tuple
    consumer: str = ""   # the Conv2d/Linear that reads it (:func:`source`), named where it cannot absorb the map


@dataclass
class Cat:
    """``torch.cat`` of activations, inputs, maps or flat views along the channel (feature) dim: the next
    Conv2d/Linear splits its weight by input channel, one term per part (:func:`fastsnn_lava.fx_maps.resolve`)."""
    parts: list
    shape: tuple
    site: str  # where the user's model concatenates (for refusals at the value's other uses)
    consumer: str = ""  # the Conv2d/Linear that reads it (:func:`source`)


@dataclass
class Const:
    """A non-tensor value of the trace (``x.size(0)``, ``x.shape``): only reshapes may use it."""


def fail(what: str, fix: str, yet: bool = False):
    """Refuse ``what``, saying what to do instead (``yet``: a construct this project means to support)."""
    raise FastSNNError(f"{what} is not supported{' yet' if yet else ''}: {fix}")


def node_shape(node: torch.fx.Node) -> tuple:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()


def as_pre(v, name: str) -> Pre:
    """``v`` as a pre-activation: an activation added as it is becomes an identity term."""
    if isinstance(v, Pre):
        return v
    if isinstance(v, Act):
        return Pre([Term(v, "identity")], torch.zeros(v.shape[0]), v.shape)
    if isinstance(v, Mapped):  # a fixed map of an activation: a conv term without bias
        return Pre([Term(v.src, "conv", v.weight, dict(v.geometry))], torch.zeros(v.shape[0]), v.shape)
    if isinstance(v, Cat):
        refuse_cat(v)
    if isinstance(v, Input):
        fail(f"the shortcut from the network input at '{name}'", "start the model with a Conv2d/Linear stem "
             "and a QReLU, and add shortcuts from there")
    fail(f"adding the flattened or pooled value at '{name}'", "add activations before Flatten/AvgPool")


def spatial(v, attr, name) -> int:
    """A square Conv2d attribute (kernel, stride, padding, dilation) as one int."""
    a = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if a[0] != a[1]:
        fail(f"Conv2d '{name}' with unequal {attr} {a}", f"use a square {attr}")
    return int(a[0])


def source(v, what: str, name: str):
    """``v`` checked as the input of a Conv2d/Linear: the input, an activation or a view."""
    if isinstance(v, Pre):
        fail(f"{what} '{name}' after another linear layer without an activation",
             "put a QReLU between them")
    if not isinstance(v, (Input, Act, View, Mapped, Cat)):
        fail(f"{what} '{name}' on a constant", f"build the model from {ALLOWED}")
    return replace(v, consumer=f"{what} '{name}'") if isinstance(v, (Mapped, Cat)) else v


def refuse_cat(v: Cat):
    """Refuse a use of the concatenation ``v`` other than as the input of a Conv2d/Linear."""
    fail(f"the concatenation ({v.site}) used other than as the input of a Conv2d/Linear",
         "feed torch.cat(..., dim=1) of activations straight into a Conv2d or Linear layer")


def normalize_input(op: str, name: str, v, c) -> Input:
    """``x − μ`` (``op`` sub), then ``/σ`` (truediv) or ``·(1/σ)`` (mul) of the (C, H, W) input with constants
    that are per channel (scalars or tensors that broadcast to it, constant over H, W): recorded on the
    :class:`Input`, folded into the first layer by :func:`fold_input`."""
    if not isinstance(v, (Input, PaddedInput)) or len(v.shape) != 3 or v.std is not None or (
            op == "sub" and v.mean is not None):
        fail(f"the arithmetic at '{name}'", "only an input normalisation (x - mean) / std of the (C, H, W) input, "
             f"in that order, converts; build the rest of the model from {ALLOWED}")
    t = torch.as_tensor(c.value if isinstance(c, Tensor) else c, dtype=torch.float32)
    try:
        full = torch.broadcast_to(t.squeeze(0) if t.dim() == 4 else t, v.shape)
    except RuntimeError:
        full = None
    if full is None or not torch.equal(full, full[:, :1, :1].expand_as(full)):
        fail(f"the normalisation at '{name}' with a constant of shape {tuple(t.shape)}",
             "use one mean and one std per input channel (shape (C, 1, 1) or a scalar)")
    per = full[:, 0, 0].clone()
    if op == "sub":
        return replace(v, mean=per)
    mean = v.mean if v.mean is not None else torch.zeros(v.shape[0])
    return replace(v, mean=mean, std=per if op == "truediv" else 1 / per)


def pad_input(name: str, v: Input, pad: tuple, shape: tuple) -> PaddedInput:
    """``F.pad(x, (p, p, p, p))`` of the raw (C, H, W) input (zeros, the same p on every side)."""
    if v.mean is not None or v.std is not None or len(v.shape) != 3 or len(set(pad[:4])) != 1 or any(pad[4:]):
        fail(f"F.pad '{name}' of the input with pad {tuple(pad)}", "pad the raw (C, H, W) input by the same number "
             "of pixels on every side before normalising it, or use the first Conv2d's padding")
    return PaddedInput(v, int(pad[0]), tuple(shape))


def fold_input(v, weight: torch.Tensor, bias: torch.Tensor, padding: int, name: str):
    """(W', b') of a layer on ``v``: the normalisation of a normalised input folded in exactly
    (:func:`fastsnn_lava.normalize.fold`); a padded conv would pad ``(0 − μ)/σ`` there, not 0, so it is refused."""
    src = v.src if isinstance(v, View) else v
    if not isinstance(src, Input) or src.mean is None and src.std is None:
        return weight, bias
    if padding:
        fail(f"the padded Conv2d '{name}' on the normalised input", "pad the raw input before normalising it "
             "(F.pad(x, (p, p, p, p))) and use padding=0 in the first Conv2d, or normalise in the data pipeline "
             "(zero padding of the normalised input pads raw pixels with the mean: it cannot fold exactly)")
    mean = src.mean if src.mean is not None else torch.zeros(src.shape[0])
    std = src.std if src.std is not None else torch.ones(src.shape[0])
    return fold(weight, bias, InputNorm(mean, std), src.shape)


def conv_term(name: str, v, shape, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
              dilation=1, groups: int = 1, padding_mode: str = "zeros") -> Pre:
    """A ``Conv2d`` (``F.conv2d`` of ``weight``, ``bias`` and geometry; a module's own or the call a user's layer
    makes, :mod:`fastsnn_lava.fx_quant`) on ``v``: a pre-activation with one conv term (square geometry;
    ``groups`` in the geometry when not 1: a grouped or depthwise convolution). On a :class:`PaddedInput`
    (padding 0 only): the same Conv2d with the input's padding on the raw input."""
    if isinstance(v, PaddedInput):
        if spatial(padding, "padding", name) or isinstance(padding, str):
            fail(f"Conv2d '{name}' with padding {padding} on the padded input", "pad once: use padding=0 here")
        v, padding = Input(v.input.shape, v.mean, v.std), v.pad
        fold_padding = 0  # the raw input is padded with zeros, as the model's F.pad did
    else:
        fold_padding = None
    v = source(v, "Conv2d", name)
    if isinstance(v, View) or len(v.shape) != 3:
        fail(f"Conv2d '{name}' on a flattened or pooled value", "convolve (C, H, W) activations")
    if spatial(dilation, "dilation", name) != 1:
        fail(f"the dilated Conv2d '{name}' (dilation={dilation})", "use dilation=1")
    if isinstance(padding, str) or padding_mode != "zeros":
        fail(f"Conv2d '{name}' with padding={padding!r}, padding_mode={padding_mode!r}",
             "use integer zero padding (padding=k // 2, padding_mode='zeros')")
    geometry = {"kernel": spatial(tuple(weight.shape[2:]), "kernel", name), "stride": spatial(stride, "stride", name),
                "padding": spatial(padding, "padding", name)}
    if groups != 1:
        geometry["groups"] = int(groups)
    bias = bias.detach().clone() if bias is not None else torch.zeros(weight.shape[0])
    weight, bias = fold_input(v, weight.detach().clone(), bias,
                              geometry["padding"] if fold_padding is None else fold_padding, name)
    return Pre([Term(v, "conv", weight, geometry)], bias, shape)


def linear_term(name: str, v, shape, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Pre:
    """A ``Linear`` (``F.linear`` of ``weight`` and ``bias``) on a flat ``v``: a pre-activation with one dense term."""
    v = source(v, "Linear", name)
    if len(shape) != 1:
        fail(f"Linear '{name}' on a (C, H, W) value", "flatten or pool before it")
    bias = bias.detach().clone() if bias is not None else torch.zeros(weight.shape[0])
    weight, bias = fold_input(v, weight.detach().clone(), bias, 0, name)
    return Pre([Term(v, "dense", weight)], bias, shape)


def fold_batchnorm(m, name: str, v) -> Pre:
    """BatchNorm ``m`` (eval statistics) folded into every term of the pre-activation ``v``."""
    if isinstance(v, Mapped):  # BatchNorm of a pooling: of its conv term
        v = as_pre(v, name)
    if not isinstance(v, Pre):
        fail(f"{type(m).__name__} '{name}' that does not follow a Conv2d/Linear",
             "put BatchNorm right after a Conv2d or Linear (or a residual sum of them)")
    if m.running_mean is None:
        fail(f"{type(m).__name__} '{name}' without running statistics", "use track_running_stats=True")
    gamma = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_mean)
    beta = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
    scale = gamma / torch.sqrt(m.running_var + m.eps)
    terms = []
    for t in v.terms:
        if t.kind == "identity":  # a scaled identity becomes a diagonal 1×1 conv / dense
            n = t.src.shape[0]
            diag = torch.diag(scale.clone())
            if len(t.src.shape) == 3:
                terms.append(Term(t.src, "conv", diag[:, :, None, None], {"kernel": 1, "stride": 1, "padding": 0}))
            else:
                terms.append(Term(t.src, "dense", diag.reshape(n, n)))
        else:
            terms.append(Term(t.src, t.kind, t.weight * scale.view(-1, *([1] * (t.weight.dim() - 1))),
                               t.geometry))
    return Pre(terms, beta + scale * (v.bias - m.running_mean), v.shape)


def add_terms(name: str, args) -> Pre:
    """A residual ``+``: the terms and biases of both sides."""
    if not all(isinstance(a, (Pre, Act, Input, View, Mapped, Cat)) for a in args):
        fail(f"adding a constant at '{name}'", "add only layer outputs (residual additions)")
    a, b = (as_pre(x, name) for x in args)
    return Pre(a.terms + b.terms, a.bias + b.bias, a.shape)


def flatten_view(name: str, v, shape):
    """``Flatten``/``view(B, -1)`` of an activation or the input (a flat one stays as it is)."""
    if len(shape) != 1:
        fail(f"the reshape at '{name}' to {shape}", "only flatten to (batch, features)")
    if isinstance(v, View):
        return View(v.src, v.pool, shape)
    if isinstance(v, (Act, Input, Mapped)):
        return v if len(v.shape) == 1 else View(v, False, shape)
    if isinstance(v, Cat):  # a channel concatenation flattens to the concatenation of the flattened parts
        return Cat([flatten_view(name, p, (math.prod(p.shape),)) for p in v.parts], shape, v.site)
    fail(f"Flatten at '{name}' between a linear layer and its activation", "flatten activations only")


def pool_view(what: str, name: str, v, shape, window: str | None = None) -> View:
    """Global average pooling of a (C, H, W) activation.

    ``window`` says why the pooling does not average the whole map, when it does not
    (:func:`pool_window`): then it is refused, since the conversion would silently compute
    something else than the model."""
    if not isinstance(v, Act) or len(v.shape) != 3 or math.prod(shape) != v.shape[0]:
        fail(f"{what} '{name}' of something else than an activation", "average-pool the output of a ReLU "
             "(or the input, with a pooling that does not cover the whole map)")
    if window:
        fail(f"{what} '{name}' ({window}, on a {v.shape[1]}×{v.shape[2]} map)",
             "average pooling must cover the whole feature map (AdaptiveAvgPool2d(1), AvgPool2d with the map's "
             "size as kernel and no padding, or mean over dims (2, 3)): change the pooling or the input size")
    return View(v, True, (v.shape[0],))


def pool_window(kind: str, hw: tuple, kernel=None, padding=0, divisor_override=None, output_size=None,
                dims=None) -> str | None:
    """None when a pooling averages exactly the whole ``hw`` map, else what it does instead.

    ``kind``: ``"adaptive"`` (global iff ``output_size`` is 1), ``"avg"`` (global iff the kernel equals the
    map and nothing pads or rescales it: a smaller kernel averages only its first window, which still gives
    a 1×1 output when the map is less than twice the kernel) or ``"mean"`` (global iff over dims 2 and 3)."""
    if kind == "adaptive":
        size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        return None if all(s in (1, None) for s in size) else f"output size {output_size}"
    if kind == "mean":
        got = sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else (dims,))) if dims is not None \
            else None
        return None if got == [2, 3] else f"mean over dims {dims}"
    k = pair_of(kernel)
    p = pair_of(padding)
    if k != tuple(hw):
        return f"kernel {k}"
    if p != (0, 0):
        return f"padding {p}"
    if divisor_override is not None:
        return f"divisor_override {divisor_override}"
    return None


def pair_of(v) -> tuple:
    """An int or a 1-/2-sequence as a pair of ints (None where a value is not known)."""
    if isinstance(v, (tuple, list)):
        v = tuple(v)
        return (v * 2 if len(v) == 1 else v)[:2]
    return (v, v)
