"""Fixed linear maps of activations in a user's model, and how the next Conv2d/Linear absorbs them.

A non-global average pooling, a strided slice ``y[:, :, ::s, ::s]`` and a zero padding of the channels
``F.pad(y, (0, 0, 0, 0, a, b))`` are each a convolution without bias whose weights are fixed
(:class:`~fastsnn_lava.fx_patterns.Mapped`):

* ``AvgPool2d(k, s, p)`` (``count_include_pad``, or no padding) on C channels is the depthwise
  convolution ``A[c, 0, i, j] = 1/k²`` (``1/d`` with ``divisor_override`` d), stride s, padding p,
  groups C; ``AdaptiveAvgPool2d(n)`` on an ``H×W`` map with ``n | H, W`` and ``H/n = W/n = k`` is ``AvgPool2d(k, k)``;
* ``y[:, c0:c1:t, ::s, ::s]`` is the 1×1 stride-s convolution with ``A[o, c, 0, 0] = 1`` when channel c
  is the o-th one kept; the zero channel padding is the 1×1 convolution with the identity shifted by a
  (the option-A shortcut of CIFAR ResNets is both: a 0/1 1×1 stride-2 projection).

**Composition.** A convolution B (kernel K, stride S, padding P) of a map A (kernel k, stride s,
padding p) of an ``H``-row input is one convolution of the input (:func:`compose`)::

    (B ∘ A)[o, c, s·i + a, s·j + b] = Σ_m B[o, m, i, j]·A[m, c, a, b]   (a transposed convolution of B by A)
    kernel (K − 1)·s + k,  stride s·S,  padding P·s + p

since output y reads map rows ``S·y − P + i`` and map row m reads input rows ``m·s − p + a``. It is exact
when every map row in B's zero padding reads only zeros of the composite's padding: below, row −1 reads
input rows up to ``k − 1 − s − p``, so ``P > 0`` needs ``k ≤ s + p``; above, the first padding row
``H_p = ⌊(H + 2p − k)/s⌋ + 1`` reads rows from ``H_p·s − p``, so when B reads it, ``H_p·s − p ≥ H`` (no
input row the map drops may enter). Both sides then have the same output size. A Linear on the
flattened map (no padding) absorbs it always: ``W' = Wᵀ``-adjoint of A, the transposed convolution of
W's rows by A (output padding ``H + 2p − k − (H_p − 1)·s``), a dense layer on the un-mapped map.

**Concatenation.** ``conv(cat([a, b], 1)) = conv_a(a) + conv_b(b)`` where ``conv_a`` keeps the input
channels of a (``W[:, :C_a]``, a grouped W expanded to its block-diagonal full weight first), same
geometry; a Linear on ``cat`` of flat values splits its columns the same way (:func:`resolve`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fx_patterns import Act, Cat, Input, Mapped, Pre, Term, View, fail, pair_of, pool_view, pool_window

_MAPPABLE = "the output of a ReLU (or the input)"


def dense_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """The full ``(O, C, k, k)`` weight of a grouped convolution's ``(O, C/g, k, k)`` (block diagonal)."""
    if groups == 1:
        return w
    o, c_g = w.shape[:2]
    full = w.new_zeros(o, c_g * groups, *w.shape[2:])
    for g in range(groups):
        rows = slice(g * (o // groups), (g + 1) * (o // groups))
        full[rows, g * c_g:(g + 1) * c_g] = w[rows]
    return full


def _regroup(full: torch.Tensor, groups: int) -> torch.Tensor:
    """The ``(O, C/g, k, k)`` weight of a block-diagonal full weight (inverse of :func:`dense_weight`)."""
    o, c = full.shape[:2]
    return torch.cat([full[g * (o // groups):(g + 1) * (o // groups), g * (c // groups):(g + 1) * (c // groups)]
                      for g in range(groups)])


def _source(name: str, v, what: str):
    """``v`` checked as the source of a fixed map: a (C, H, W) activation, input or map."""
    if isinstance(v, Input) and (v.mean is not None or v.std is not None):
        fail(f"{what} '{name}' of the normalised input", "normalise in the data pipeline, or start with a Conv2d")
    if not isinstance(v, (Act, Input, Mapped)) or len(v.shape) != 3:
        fail(f"{what} '{name}' of something else than {_MAPPABLE}", f"apply it to {_MAPPABLE} of shape (C, H, W)")
    return v


def fixed_map(name: str, v, weight: torch.Tensor, geometry: dict, shape: tuple, what: str) -> Mapped:
    """The convolution ``(weight, geometry)`` of ``v`` as a :class:`Mapped` (a map of a map: composed)."""
    v = _source(name, v, what)
    if isinstance(v, Mapped):
        w, g = compose(weight, geometry, v, f"{what} '{name}'")
        return Mapped(v.src, w, g, tuple(shape))
    return Mapped(v, weight, dict(geometry), tuple(shape))


def avg_pool(what: str, name: str, v, shape, kernel_size, stride=None, padding=0, ceil_mode=False,
             count_include_pad=True, divisor_override=None):
    """Average pooling: a global one is a view (:func:`~fastsnn_lava.fx_patterns.pool_view`), any other the
    depthwise convolution of the module docstring."""
    hw = tuple(v.shape[1:]) if len(getattr(v, "shape", ())) == 3 else ()
    if hw and pool_window("avg", hw, kernel=kernel_size, padding=padding, divisor_override=divisor_override) is None \
            and not isinstance(v, Mapped):  # a global pooling of a map is a map too
        return pool_view(what, name, v, shape)
    v = _source(name, v, what)
    k, s, p = (pair_of(a) for a in (kernel_size, stride or kernel_size, padding))
    if None in k + s + p or k[0] != k[1] or s[0] != s[1] or p[0] != p[1]:
        fail(f"{what} '{name}' with kernel {k}, stride {s}, padding {p}", "use a square kernel, stride and padding")
    (k, _), (s, _), (p, _) = k, s, p
    if p and not count_include_pad and divisor_override is None:
        fail(f"{what} '{name}' with count_include_pad=False and padding {p}", "its border windows average fewer "
             "than k² values (no fixed weights): use count_include_pad=True or padding=0")
    floor = tuple((n + 2 * p - k) // s + 1 for n in hw)
    if tuple(shape[1:]) != floor:
        fail(f"{what} '{name}' with ceil_mode={ceil_mode} (a partial window at the border of the "
             f"{hw[0]}×{hw[1]} map)", "use ceil_mode=False or an input size the pooling divides")
    c = v.shape[0]
    weight = torch.full((c, 1, k, k), 1.0 / (divisor_override or k * k))
    geometry = {"kernel": k, "stride": s, "padding": p, **({"groups": c} if c > 1 else {})}
    return fixed_map(name, v, weight, geometry, shape, what)


def adaptive_pool(what: str, name: str, v, shape, output_size):
    """``AdaptiveAvgPool2d(n)``: global for n = 1; ``AvgPool2d(H/n)`` when n divides the map in equal windows."""
    if len(getattr(v, "shape", ())) != 3 or math.prod(shape) == v.shape[0] and pool_window(
            "adaptive", (), output_size=output_size) is None and not isinstance(v, Mapped):
        return pool_view(what, name, v, shape)
    hw = v.shape[1:]
    n = tuple(h if o is None else o for o, h in zip(pair_of(output_size), hw))
    if any(h % o for h, o in zip(hw, n)) or hw[0] // n[0] != hw[1] // n[1]:
        fail(f"{what} '{name}' (output size {output_size} on a {hw[0]}×{hw[1]} map)", "the output size must divide "
             "the map into equal square windows: change the output size or the input size")
    k = hw[0] // n[0]
    return avg_pool(what, name, v, shape, k, k)


def pool_module(m: nn.Module, name: str, v, shape):
    """The value of an ``AvgPool2d`` or ``AdaptiveAvgPool2d`` module ``m`` on ``v``."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return adaptive_pool(type(m).__name__, name, v, shape, m.output_size)
    return avg_pool(type(m).__name__, name, v, shape, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                    m.count_include_pad, m.divisor_override)


def slice_map(name: str, v, index, shape) -> Mapped | object:
    """``v[:, c0:c1:t, ::s, ::s]``: the 0/1 1×1 stride-s convolution keeping those channels (``v`` itself when
    it keeps everything)."""
    what = "the slice"
    v = _source(name, v, what)
    index = list(index) if isinstance(index, tuple) else [index]
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index[at:at + 1] = [slice(None)] * (5 - len(index))
    index += [slice(None)] * (4 - len(index))
    if len(index) != 4 or not all(isinstance(i, slice) for i in index) or index[0] != slice(None):
        fail(f"the slice '{name}' {tuple(index)}", "slice only channels and spatial steps: y[:, c0:c1, ::s, ::s]")
    c, h, w = v.shape
    keep = range(c)[index[1]]
    rows, cols = range(h)[index[2]], range(w)[index[3]]
    s = rows.step
    if rows != range(0, h, s) or cols != range(0, w, s) or s < 1:
        fail(f"the slice '{name}' {tuple(index)} of a {h}×{w} map", "slice the spatial dims as ::s (from 0 to the "
             "end, the same step in both): only that is a strided 1×1 convolution")
    if keep == range(c) and s == 1:
        return v
    weight = torch.zeros(len(keep), c, 1, 1)
    weight[torch.arange(len(keep)), torch.tensor(list(keep), dtype=torch.long)] = 1.0
    return fixed_map(name, v, weight, {"kernel": 1, "stride": s, "padding": 0}, shape, what)


def pad_map(name: str, v, pad, mode="constant", value=0.0, shape=()) -> Mapped:
    """``F.pad(v, (0, 0, 0, 0, a, b))``: a zero channels before and b after, the 1×1 convolution with the identity
    shifted by a."""
    pad = tuple(pad) + (0,) * (6 - len(pad))
    if mode != "constant" or value not in (None, 0) or len(pad) != 6 or any(pad[:4]) or min(pad) < 0:
        fail(f"F.pad '{name}' with pad {pad}, mode {mode!r}, value {value!r}", "only zero padding of the channel dim "
             "converts (F.pad(y, (0, 0, 0, 0, a, b))); pad spatially with the Conv2d's padding")
    v = _source(name, v, "F.pad")
    c = v.shape[0]
    weight = torch.zeros(pad[4] + c + pad[5], c, 1, 1)
    weight[torch.arange(c) + pad[4], torch.arange(c)] = 1.0
    return fixed_map(name, v, weight, {"kernel": 1, "stride": 1, "padding": 0}, shape, "F.pad")


def concat(parts: list, dim, shape, site: str) -> Cat:
    """``torch.cat(parts, dim)`` along the channels of (C, H, W) values or the features of flat ones."""
    flat = [q for p in parts for q in (p.parts if isinstance(p, Cat) else [p])]
    ok = all(isinstance(p, (Act, Input, Mapped, View)) for p in flat) and not any(
        isinstance(p, Input) and (p.mean is not None or p.std is not None) for p in flat)
    if not ok:
        fail("concatenation (torch.cat) of something else than activations", "concatenate the outputs of ReLUs "
             "(not of Conv2d/Linear layers) and feed the result to a Conv2d or Linear")
    if dim not in (1, 1 - len(shape) - 1):
        fail(f"concatenation (torch.cat) along dim {dim}", "concatenate along the channel dim (dim=1)")
    return Cat(flat, tuple(shape), site)


def compose(weight: torch.Tensor, geometry: dict, inner: Mapped, name: str) -> tuple[torch.Tensor, dict]:
    """(weight, geometry) of the convolution ``(weight, geometry)`` of the map ``inner``, as one convolution of
    ``inner.src`` (module docstring), refused where B's zero padding would read rows the map does not zero."""
    k, s, p = (inner.geometry[a] for a in ("kernel", "stride", "padding"))
    big_k, big_s, big_p = (geometry.get(a, d) for a, d in (("kernel", 1), ("stride", 1), ("padding", 0)))
    for n, n_map in zip(inner.src.shape[1:], inner.shape[1:]):
        reach = big_s * ((n_map + 2 * big_p - big_k) // big_s) - big_p + big_k - 1  # the last map row B reads
        if big_p and k > s + p or reach >= n_map and n_map * s - p < n:
            fail(f"{name} with padding {big_p} on a map of kernel {k}, stride {s}, padding {p} (a pooling, slice or "
                 f"channel pad) of a {n}-row input", "its zero padding would not be the map's zeros: use padding=0 "
                 "here, a pooling with kernel ≤ stride + padding, or an input size the map divides")
    groups, inner_groups = geometry.get("groups", 1), inner.geometry.get("groups", 1)
    full = F.conv_transpose2d(dense_weight(weight, groups), inner.weight, stride=s, groups=inner_groups)
    depthwise = inner_groups == inner.weight.shape[0] == inner.src.shape[0]  # channel c maps to channel c
    out = {"kernel": (big_k - 1) * s + k, "stride": s * big_s, "padding": big_p * s + p}
    if groups > 1 and depthwise:
        return _regroup(full, groups), dict(out, groups=groups)
    return full, out


def _dense_of_map(weight: torch.Tensor, inner: Mapped) -> torch.Tensor:
    """A dense weight on the flattened map ``inner`` as a dense weight on the flattened ``inner.src``."""
    k, s, p = (inner.geometry[a] for a in ("kernel", "stride", "padding"))
    extra = tuple(n + 2 * p - k - (m - 1) * s for n, m in zip(inner.src.shape[1:], inner.shape[1:]))
    w = F.conv_transpose2d(weight.reshape(weight.shape[0], *inner.shape), inner.weight, stride=s, padding=p,
                           output_padding=extra, groups=inner.geometry.get("groups", 1))
    return w.reshape(weight.shape[0], -1)


def resolve(t: Term, name: str) -> list[Term]:
    """The terms on activations/inputs (or their views) that ``t`` is, its maps absorbed and its
    concatenations split (module docstring)."""
    src = t.src
    if isinstance(src, Cat):
        geometry = {a: v for a, v in t.geometry.items() if a != "groups"}
        weight = dense_weight(t.weight, t.geometry.get("groups", 1)) if t.kind == "conv" else t.weight
        out, at = [], 0
        for part in src.parts:
            n = part.shape[0] if t.kind == "conv" else math.prod(part.shape)
            out += resolve(Term(part, t.kind, weight[:, at:at + n], dict(geometry)), src.consumer or name)
            at += n
        return out
    if isinstance(src, Mapped):
        return [Term(src.src, "conv", *compose(t.weight, t.geometry, src, src.consumer or name))]
    if isinstance(src, View) and isinstance(src.src, Mapped):
        base = src.src.src
        return [Term(View(base, False, (math.prod(base.shape),)), "dense", _dense_of_map(t.weight, src.src))]
    return [t]


def _key(v):
    if isinstance(v, View):
        return ("view", v.pool, _key(v.src))
    return ("input",) if isinstance(v, Input) else ("act", v.index)


def resolved(pre: Pre, name: str) -> list[Term]:
    """The terms of ``pre``, each resolved (:func:`resolve`), those of one source with one geometry summed
    (``conv(cat([y, y]))``)."""
    merged: dict = {}
    out = []
    for t in (r for term in pre.terms for r in resolve(term, name)):
        key = None if t.kind == "identity" else (t.kind, _key(t.src), tuple(sorted(t.geometry.items())))
        if key in merged:
            merged[key].weight = merged[key].weight + t.weight
            continue
        t = Term(t.src, t.kind, t.weight, dict(t.geometry))
        if key is not None:
            merged[key] = t
        out.append(t)
    return out
