"""Random small user models built from every construct that :func:`fastsnn_lava.fx.convert` accepts
(hypothesis strategies for tests/test_fx_property.py, loaded by path: importlib mode).

A drawn model is a real ``nn.Module`` whose ``forward`` torch.fx traces as it would trace a user's model:
an optional input normalisation, a stem that reads the input, a body of blocks, a flatten or a global
average pooling, hidden Linear layers and a Linear classifier. Every block is an ``nn.Module`` of its
own, written the way users write them (``self.act(self.bn(self.conv(x)))``, ``out += x``, ...), and
valid by construction: each construct is drawn only where it applies to the current shape.

The constructs come in three groups: the plain ones (Conv2d in every geometry, Linear, BatchNorm, every
spelling of ReLU/ReLU6/hardtanh/QReLU, residual additions, flatten, global average pooling, input
normalisation, Identity/Dropout), the fixed linear maps of :mod:`fastsnn_lava.fx_maps` (non-global average
pooling, option-A shortcuts, ``torch.cat``) and the user's own quantized layers of :mod:`fastsnn_lava.fx_quant`
(the look-alikes of tests/models/paper_like.py). A case's bits b are one shared draw (:data:`BITS`), so every
layer that names b (``QReLU(b)``, a b-bit quantizer) and the conversion agree.

To add a construct, write one function ``build(draw, shape) -> nn.Module`` (drawing its parameters with
hypothesis' ``draw`` for an input of ``shape``, (C, H, W) or (F,)) and add a :class:`Construct` naming
it, with a predicate saying for which shapes it applies, to a group's ``*_BODY`` (after the stem, before the
classifier's input is made flat), ``*_TO_FLAT`` (a (C, H, W) map to (F,)) or ``*_HEAD`` (on (F,)) list;
:data:`BODY`, :data:`TO_FLAT` and :data:`HEAD` join the groups. The shape after each block is found by running
it on zeros, so a construct states only its own geometry.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

_plain = importlib.util.spec_from_file_location("fastsnn_test_modelgen_plain", Path(__file__).with_name(
    "modelgen_plain.py"))
plain = importlib.util.module_from_spec(_plain)
sys.modules[_plain.name] = plain  # so that its names import below
_plain.loader.exec_module(plain)
from fastsnn_test_modelgen_plain import (  # noqa: E402  (the plain constructs, and names the tests read here)
    ACTIVATIONS, BITS, FLATS, FLATTEN, GLOBAL_POOL, PLAIN_BODY, PLAIN_HEAD, PLAIN_TO_FLAT, POOLS, Construct, Drawn,
    Normalise, Residual, Unit, activation, conv, conv_unit, flat, flat_shape, linear_unit, norm, passthrough, spatial)


# ---- fixed linear maps (fastsnn_lava/fx_maps.py): non-global average pooling, option-A shortcuts, torch.cat
class Pool(nn.Module):
    """A (non-global) average pooling: ``nn.AvgPool2d(k, s, p)``, ``F.avg_pool2d(x, k, s, p)`` or
    ``nn.AdaptiveAvgPool2d(n)`` (n dividing the map)."""

    def __init__(self, spelling: str, k: int, s: int, p: int, n: int):
        super().__init__()
        self.spelling, self.k, self.s, self.p = spelling, k, s, p
        self.pool = nn.AvgPool2d(k, s, p) if spelling == "AvgPool2d" else nn.AdaptiveAvgPool2d(n)

    def forward(self, x):
        if self.spelling == "F.avg_pool2d":
            return F.avg_pool2d(x, self.k, self.s, self.p)
        return self.pool(x)


def pool(draw, shape, tiling: bool = False, least: int = 1) -> Pool:
    """A pooling of a (C, H, W) map to at least ``least``×``least`` (``tiling``: a k×k stride-k one without
    padding, k dividing the map)."""
    h = shape[1]
    sizes = [n for n in (1, 2, 4) if h % n == 0 and least <= n < h]
    spelling = draw(st.sampled_from(["AvgPool2d", "F.avg_pool2d"] + (["AdaptiveAvgPool2d"] if sizes else [])))
    if spelling == "AdaptiveAvgPool2d":
        n = draw(st.sampled_from(sizes))
        return Pool(spelling, h // n, h // n, 0, n)
    if tiling:
        k = draw(st.sampled_from([k for k in (1, 2, 4) if h % k == 0 and h // k >= least]))
        return Pool(spelling, k, k, 0, 1)
    k, s, p = draw(st.sampled_from([(k, s, p) for k in (1, 2, 3) for s in (1, 2) for p in range(k // 2 + 1)
                                    if k <= h + 2 * p and (h + 2 * p - k) // s + 1 >= least]))
    return Pool(spelling, k, s, p, 1)


def pool_unit(draw, shape) -> Unit:
    """``act(pool(x))``: a pooling made a layer by a ReLU (a depthwise convolution of weight 1/k²), its output
    at least 2×2 (a pooling to 1×1 of the whole map is a global pooling: see test_fx_property.py's xfail)."""
    return Unit(pool(draw, shape, least=2), nn.Identity(), activation(draw), passthrough(draw))


def pool_conv(draw, shape) -> Unit:
    """``act(bn(conv(pool(x))))``: the pooling composed into the next Conv2d (exact for a tiling pooling,
    and for any pooling before an unpadded Conv2d)."""
    tiling = draw(st.booleans())
    p = pool(draw, shape, tiling, least=2)
    c = conv(draw, out_shape(p, shape), unpadded=not tiling)
    return Unit(nn.Sequential(p, c), norm(draw, c.out_channels, False), activation(draw), passthrough(draw))


def pool_flat(draw, shape) -> nn.Sequential:
    """A pooling, then a flatten (the next Linear absorbs it)."""
    return nn.Sequential(pool(draw, shape), flat(draw, shape))


class OptionA(nn.Module):
    """The option-A shortcut of CIFAR ResNets: ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, a, a))`` (stride 2) or
    ``F.pad(x, (0, 0, 0, 0, a, a))`` (stride 1): zero channels on both sides, a fixed 0/1 1×1 projection."""

    def __init__(self, stride: int, a: int):
        super().__init__()
        self.stride, self.a = stride, a

    def forward(self, x):
        if self.stride == 2:
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.a, self.a), "constant", 0)
        return F.pad(x, (0, 0, 0, 0, self.a, self.a))


def option_a(draw, shape) -> Residual:
    """A basic block with the option-A shortcut (:class:`OptionA`)."""
    c, s = shape[0], draw(st.sampled_from([1, 2]))
    a = draw(st.integers(1 if s == 1 else 0, 2))
    out = c + 2 * a
    cut = OptionA(s, a)
    body = Unit(nn.Conv2d(c, out, 3, s, 1, bias=False), norm(draw, out, False), activation(draw), passthrough(draw))
    return Residual(body, nn.Conv2d(out, out, 3, 1, 1, bias=False), norm(draw, out, False), cut,
                    draw(st.sampled_from(["+", "+="])), nn.Identity(), activation(draw))


class Cat(nn.Module):
    """``act(bn(op(torch.cat(parts, 1))))`` with ``parts`` the block's input x and ``first(x)``, in either order."""

    def __init__(self, first: nn.Module, op: nn.Module, bn: nn.Module, act: nn.Module, first_part: bool):
        super().__init__()
        self.first, self.op, self.bn, self.act, self.first_part = first, op, bn, act, first_part

    def forward(self, x):
        y = self.first(x)
        return self.act(self.bn(self.op(torch.cat([y, x] if self.first_part else [x, y], dim=1))))


def cat_conv(draw, shape) -> Cat:
    """``torch.cat`` of the block's input and a Conv2d unit of it (same map) into a Conv2d."""
    c = shape[0]
    k = draw(st.sampled_from([1, 3]))
    n = draw(st.integers(2, 6))
    first = Unit(nn.Conv2d(c, n, k, 1, k // 2), norm(draw, n, False), activation(draw), passthrough(draw))
    op = conv(draw, (first.op.out_channels + c, *shape[1:]))
    return Cat(first, op, norm(draw, op.out_channels, False), activation(draw), draw(st.booleans()))


def cat_linear(draw, shape) -> Cat:
    """``torch.cat`` of the block's (flat) input and a Linear unit of it into a Linear."""
    first = linear_unit(draw, shape)
    n = draw(st.integers(4, 12))
    op = nn.Linear(first.op.out_features + shape[0], n, bias=draw(st.booleans()))
    return Cat(first, op, norm(draw, n, True), activation(draw), draw(st.booleans()))


MAPS_BODY = [
    Construct("average pooling → ReLU", lambda shape: spatial(shape) and shape[1] >= 2, pool_unit),
    Construct("average pooling → Conv2d", lambda shape: spatial(shape) and shape[1] >= 2, pool_conv),
    Construct("residual (option A)", spatial, option_a),
    Construct("torch.cat → Conv2d", spatial, cat_conv),
    Construct("torch.cat → Linear", flat_shape, cat_linear),
]
MAPS_TO_FLAT = [Construct("average pooling → flatten", spatial, pool_flat)]


# ---- the user's own quantized layers (fastsnn_lava/fx_quant.py), as tests/models/paper_like.py writes them
_paper = importlib.util.spec_from_file_location("fastsnn_test_paper_like", Path(__file__).parent / "models" /
                                                "paper_like.py")
paper_like = importlib.util.module_from_spec(_paper)
_paper.loader.exec_module(paper_like)


def clip_relu(draw) -> nn.Module:
    """The paper's activation quantizer: clip at α, round to 2^b − 1 equal steps (b shared by the case)."""
    return paper_like.ClipQuantReLU(draw(BITS), draw(st.sampled_from([0.5, 1.0, 2.5])))


def quant_conv_unit(draw, shape) -> Unit:
    """A weight-quantizing Conv2d subclass (b-bit, or 127 steps with groups 1) → BN → the clip quantizer, as the
    paper's blocks are. Without the BatchNorm (and a bias) the pre-activations of quantized weights on quantized
    activations lie on a lattice that hits rounding ties exactly, where the model's ``torch.round`` (half to even)
    and the IF neuron (half up) differ: test_fx_property.py's xfail."""
    c = conv(draw, shape)
    if c.groups == 1 and draw(st.booleans()):
        op = paper_like.Int8Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                   bias=c.bias is not None)
    else:
        op = paper_like.WeightQuantConv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                          groups=c.groups, bias=c.bias is not None, bits=draw(BITS))
    return Unit(op, nn.BatchNorm2d(c.out_channels), clip_relu(draw), passthrough(draw))


def quant_linear_unit(draw, shape) -> Unit:
    """A 127-step Linear subclass → BN → the clip quantizer."""
    n = draw(st.integers(4, 12))
    return Unit(paper_like.Int8Linear(shape[0], n), norm(draw, n, True), clip_relu(draw), passthrough(draw))


def quant_pool(draw, shape) -> nn.Sequential:
    """The paper's quantized global average pooling (pool, then the clip quantizer), flattened. Its clip is
    incommensurate with the activations' (√2, √2/2 against 0.5, 1, 2.5): the mean of quantized levels with a
    commensurate clip hits rounding ties exactly (a 1-bit α = 1 pool of 1-bit α = 1 levels: a mean of 0.5),
    where the model and the integer network round differently (test_fx_property.py's tie xfail)."""
    return nn.Sequential(paper_like.QuantAvg(shape[1], draw(BITS), draw(st.sampled_from([0.7071, 1.4142]))),
                         flat(draw, shape))


QUANT_BODY = [Construct("quantized Conv2d + clip quantizer", spatial, quant_conv_unit),
              Construct("quantized Linear + clip quantizer", flat_shape, quant_linear_unit)]
QUANT_TO_FLAT = [Construct("quantized global average pooling", spatial, quant_pool)]
QUANT_HEAD = [Construct("quantized Linear + clip quantizer", flat_shape, quant_linear_unit)]

# every construct: the plain ones (plain float models, :func:`fastsnn_lava.fx.check_same`), the fixed maps and the
# user's quantized layers; a new construct goes into one of these lists (or a new group added here)
BODY = PLAIN_BODY + MAPS_BODY + QUANT_BODY
TO_FLAT = PLAIN_TO_FLAT + MAPS_TO_FLAT + QUANT_TO_FLAT
HEAD = PLAIN_HEAD + QUANT_HEAD


def out_shape(block: nn.Module, shape: tuple) -> tuple:
    block.eval()
    with torch.no_grad():
        return tuple(block(torch.zeros(2, *shape)).shape[1:])


def pick(draw, constructs: list, shape: tuple) -> Construct | None:
    """One of ``constructs`` that applies to ``shape`` (None if none does)."""
    fits = [c for c in constructs if c.applies(shape)]
    return draw(st.sampled_from(fits)) if fits else None


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights (uniform ±1.5/√fan-in) and BatchNorm statistics and affine parameters; eval mode."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1.5 / m.weight[0].numel() ** 0.5
            uniform(m.weight, -bound, bound)
            if m.bias is not None:
                uniform(m.bias, -0.3, 0.3)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            uniform(m.running_mean, -0.3, 0.3)
            uniform(m.running_var, 0.3, 2.0)
            uniform(m.weight, 0.5, 2.0)
            uniform(m.bias, -0.3, 0.3)
    return model.eval()


INPUT_SHAPES = ((1, 8, 8), (3, 8, 8), (16,))


@st.composite
def models(draw, body: list = BODY, to_flat: list = TO_FLAT, head: list = HEAD, min_body: int = 0,
           max_body: int = 3, shapes: tuple = INPUT_SHAPES):
    """(model, input shape): a :class:`Drawn` model on one of ``shapes``, random weights, eval mode; its
    body draws ``min_body``..``max_body`` blocks of ``body`` (fewer where none applies)."""
    shape = draw(st.sampled_from(shapes))
    input_shape, blocks, names = shape, [], []

    def add(block, name):
        nonlocal shape
        blocks.append(block)
        names.append(name)
        shape = out_shape(block, shape)
    normalised = spatial(shape) and draw(st.booleans())
    if normalised:  # a normalised input is folded into an unpadded first conv only
        c = shape[0]
        mean = [draw(st.sampled_from([0.2, 0.4, 0.5])) for _ in range(c)]
        std = [draw(st.sampled_from([0.25, 0.5, 2.0])) for _ in range(c)]
        spelling = draw(st.sampled_from(["div", "mul"]))
        add(Normalise(mean[:1] * c if spelling == "mul" else mean, std, spelling), f"normalise ({spelling})")
    if spatial(shape):
        add(conv_unit(draw, shape, unpadded=normalised), "conv stem")
    else:
        add(linear_unit(draw, shape), "linear stem")
    for constructs, n in ((body, draw(st.integers(min_body, max_body))), (to_flat, 1), (head, draw(st.integers(0, 2)))):
        for _ in range(n):
            c = pick(draw, constructs, shape)
            if c is not None:
                add(c.build(draw, shape), c.name)
    add(nn.Sequential(passthrough(draw), nn.Linear(shape[0], draw(st.integers(2, 10)))), "classifier")
    return randomise(Drawn(blocks, names), draw(st.integers(0, 2 ** 31 - 1))), input_shape
