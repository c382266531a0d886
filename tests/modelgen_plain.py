"""The plain constructs of tests/modelgen.py (loaded by path: importlib mode): the blocks a drawn model is
made of, every spelling of a (clipped) ReLU, Conv2d/Linear units, residual additions, flatten and global
average pooling, and :class:`Construct`, the record of one construct (see tests/modelgen.py)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from fastsnn_lava.quant import QReLU

# the bits b of one drawn case: a model whose layers name b (QReLU(b), a b-bit quantizer) and its conversion
# draw the same b (hypothesis' shared strategy gives one value per test case)
BITS = st.shared(st.integers(1, 3), key="bits")

# ---- activations: every spelling of a (clipped) ReLU the converter takes
ACTIVATIONS = ("nn.ReLU", "nn.ReLU(inplace)", "F.relu", "torch.relu", "x.relu", "QReLU", "QReLU(b)", "nn.ReLU6",
               "F.relu6", "F.hardtanh", "nn.Hardtanh")


class Activation(nn.Module):
    """``min(relu(x), m)`` (m = ∞ for a ReLU) in one of :data:`ACTIVATIONS`' spellings."""

    def __init__(self, spelling: str, clip: float = 1.0, bits: int = 2):
        super().__init__()
        self.spelling, self.clip = spelling, clip
        modules = {"nn.ReLU": lambda: nn.ReLU(), "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
                   "QReLU": lambda: QReLU(), "QReLU(b)": lambda: QReLU(bits), "nn.ReLU6": lambda: nn.ReLU6(),
                   "nn.Hardtanh": lambda: nn.Hardtanh(0.0, clip)}
        self.fn = modules[spelling]() if spelling in modules else None

    def forward(self, x):
        if self.fn is not None:
            return self.fn(x)
        if self.spelling == "F.relu":
            return F.relu(x)
        if self.spelling == "torch.relu":
            return torch.relu(x)
        if self.spelling == "x.relu":
            return x.relu()
        if self.spelling == "F.relu6":
            return F.relu6(x)
        return F.hardtanh(x, 0.0, self.clip)


def activation(draw) -> Activation:
    return Activation(draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from([0.5, 1.0, 2.0])), draw(BITS))


def passthrough(draw) -> nn.Module:
    """An ``nn.Identity`` or an ``nn.Dropout`` (eval mode: the identity)."""
    return draw(st.sampled_from([nn.Identity, lambda: nn.Dropout(0.3)]))()


def norm(draw, n: int, flat: bool) -> nn.Module:
    """A BatchNorm (random running statistics and affine parameters are set later) or an ``nn.Identity``."""
    if not draw(st.booleans()):
        return nn.Identity()
    return nn.BatchNorm1d(n) if flat else nn.BatchNorm2d(n)


# ---- blocks
class Normalise(nn.Module):
    """``(x − μ)/σ`` with per-channel buffers, or ``(x − μ)·(1/σ)`` with a scalar μ."""

    def __init__(self, mean: list, std: list, spelling: str):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))
        self.spelling, self.scalar = spelling, float(mean[0])

    def forward(self, x):
        return (x - self.mean) / self.std if self.spelling == "div" else (x - self.scalar) * (1 / self.std)


class Unit(nn.Module):
    """``act(bn(op(x)))`` then a passthrough: op a Conv2d or a Linear."""

    def __init__(self, op: nn.Module, bn: nn.Module, act: nn.Module, after: nn.Module):
        super().__init__()
        self.op, self.bn, self.act, self.after = op, bn, act, after

    def forward(self, x):
        return self.after(self.act(self.bn(self.op(x))))


class Residual(nn.Module):
    """``act(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``: an identity shortcut, or a projection
    (1×1 conv + BN); the sum spelled ``a + b``, ``a += b``, ``torch.add`` or ``b + a``, optionally
    with a BatchNorm after the sum (folded into both terms: the identity becomes a diagonal 1×1 conv)."""

    def __init__(self, body: nn.Module, conv2: nn.Module, bn2: nn.Module, shortcut: nn.Module | None,
                 spelling: str, post_bn: nn.Module, act: nn.Module):
        super().__init__()
        self.body, self.conv2, self.bn2, self.shortcut = body, conv2, bn2, shortcut
        self.spelling, self.post_bn, self.act = spelling, post_bn, act

    def forward(self, x):
        out = self.bn2(self.conv2(self.body(x)))
        sc = x if self.shortcut is None else self.shortcut(x)
        if self.spelling == "+=":
            out += sc
        elif self.spelling == "torch.add":
            out = torch.add(out, sc)
        elif self.spelling == "b + a":
            out = sc + out
        else:
            out = out + sc
        return self.act(self.post_bn(out))


class Flat(nn.Module):
    """(C, H, W) → (C·H·W,): ``nn.Flatten``, ``view(B, -1)``, ``torch.flatten``, ``x.flatten(1)``, ``reshape``."""

    def __init__(self, spelling: str):
        super().__init__()
        self.spelling, self.flatten = spelling, nn.Flatten()

    def forward(self, x):
        if self.spelling == "nn.Flatten":
            return self.flatten(x)
        if self.spelling == "view":
            return x.view(x.size(0), -1)
        if self.spelling == "torch.flatten":
            return torch.flatten(x, 1)
        if self.spelling == "reshape":
            return x.reshape(x.shape[0], -1)
        return x.flatten(1)


class GlobalPool(nn.Module):
    """Global average pooling of a (C, H, W) map in one spelling, flattened to (C,) when it keeps 1×1."""

    def __init__(self, spelling: str, hw: tuple, flat: Flat):
        super().__init__()
        self.spelling, self.flat = spelling, flat
        self.pool = {"AdaptiveAvgPool2d(1)": lambda: nn.AdaptiveAvgPool2d(1),
                     "AvgPool2d(map)": lambda: nn.AvgPool2d(hw)}.get(spelling, nn.Identity)()

    def forward(self, x):
        if self.spelling == "mean((2, 3))":
            return x.mean((2, 3))
        if self.spelling == "F.avg_pool2d(x, x.size(3))":
            return self.flat(F.avg_pool2d(x, x.size(3)))
        if self.spelling == "F.adaptive_avg_pool2d":
            return self.flat(F.adaptive_avg_pool2d(x, 1))
        return self.flat(self.pool(x))


class Drawn(nn.Module):
    """A drawn model: ``blocks`` in order (``names`` say which constructs they are)."""

    def __init__(self, blocks: list, names: list):
        super().__init__()
        self.blocks, self.names = nn.ModuleList(blocks), list(names)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return " → ".join(self.names)


# ---- constructs
def conv(draw, shape, unpadded: bool = False) -> nn.Conv2d:
    """A Conv2d on a (C, H, W) map: kernel 1/3, stride 1/2, padding 0/1, bias or not, groups 1, depthwise
    (groups = C) or grouped (a divisor of C); the output map keeps at least 1×1."""
    c, h = shape[0], shape[1]
    k = draw(st.sampled_from([1, 3] if h >= 3 else [1]))
    p = 0 if unpadded or k == 1 else draw(st.sampled_from([0, 1]))
    s = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from(sorted({1, c} | {g for g in (2, 4) if c % g == 0})))
    if groups == 1:
        out = draw(st.integers(2, 8))
    elif groups == c:  # depthwise, with a channel multiplier 1 or 2
        out = c * draw(st.sampled_from([1, 2]))
    else:
        out = groups * draw(st.integers(1, 8 // groups))
    return nn.Conv2d(c, out, k, s, p, bias=draw(st.booleans()), groups=groups)


def conv_unit(draw, shape, unpadded: bool = False) -> Unit:
    op = conv(draw, shape, unpadded)
    return Unit(op, norm(draw, op.out_channels, False), activation(draw), passthrough(draw))


def linear_unit(draw, shape) -> Unit:
    n = draw(st.integers(4, 16))
    return Unit(nn.Linear(shape[0], n, bias=draw(st.booleans())), norm(draw, n, True), activation(draw),
                passthrough(draw))


def residual(draw, shape, projection: bool) -> Residual:
    """A basic block: two 3×3 convs (the first strided when ``projection``), a shortcut, an activation."""
    c = shape[0]
    out, s = (draw(st.sampled_from([4, 8])), draw(st.sampled_from([1, 2]))) if projection else (c, 1)
    body = Unit(nn.Conv2d(c, out, 3, s, 1, bias=False), norm(draw, out, False), activation(draw), passthrough(draw))
    shortcut = nn.Sequential(nn.Conv2d(c, out, 1, s, bias=False), norm(draw, out, False)) if projection else None
    post = norm(draw, out, False) if draw(st.booleans()) else nn.Identity()
    return Residual(body, nn.Conv2d(out, out, 3, 1, 1, bias=draw(st.booleans())), norm(draw, out, False), shortcut,
                    draw(st.sampled_from(["+", "+=", "torch.add", "b + a"])), post, activation(draw))


def short_residual(draw, shape) -> Residual:
    """``act(bn(conv(x)) + x)``: the shortcut comes from the layer just before."""
    c = shape[0]
    return Residual(nn.Identity(), nn.Conv2d(c, c, 3, 1, 1, bias=draw(st.booleans())), norm(draw, c, False), None,
                    draw(st.sampled_from(["+", "+="])), nn.Identity(), activation(draw))


POOLS = ("AdaptiveAvgPool2d(1)", "AvgPool2d(map)", "mean((2, 3))", "F.avg_pool2d(x, x.size(3))",
         "F.adaptive_avg_pool2d")
FLATS = ("nn.Flatten", "view", "torch.flatten", "x.flatten(1)", "reshape")


def flat(draw, shape) -> Flat:
    return Flat(draw(st.sampled_from(FLATS)))


def global_pool(draw, shape) -> GlobalPool:
    return GlobalPool(draw(st.sampled_from(POOLS)), tuple(shape[1:]), flat(draw, shape))


class Construct(NamedTuple):
    """One construct: its name, the shapes it applies to and ``build(draw, shape) -> nn.Module``."""

    name: str
    applies: Callable[[tuple], bool]
    build: Callable


def spatial(shape) -> bool:
    return len(shape) == 3


def flat_shape(shape) -> bool:
    return len(shape) == 1


LINEAR = Construct("linear", flat_shape, linear_unit)
PLAIN_BODY = [
    Construct("conv", spatial, conv_unit),
    Construct("residual (identity)", spatial, lambda draw, shape: residual(draw, shape, False)),
    Construct("residual (projection)", spatial, lambda draw, shape: residual(draw, shape, True)),
    Construct("residual (from the layer before)", spatial, short_residual),
    LINEAR,
]
FLATTEN = Construct("flatten", spatial, flat)
GLOBAL_POOL = Construct("global average pooling", spatial, global_pool)
PLAIN_TO_FLAT = [FLATTEN, GLOBAL_POOL]
PLAIN_HEAD = [LINEAR]
