"""Architecture specs: presets and the checks and shapes of a layer list.

An architecture is a list of layer specs (JSON-able dicts)::

    {"kind": "conv", "out": 16, "kernel": 3, "stride": 2, "padding": 1}
    {"kind": "dense", "out": 64}

followed by a dense classifier that the builders append. Max-pooling is not
offered: Fast-SNN replaces it by stride-2 convolutions. Two more entries build
residual networks:

* ``"skips": [{"from": j}, ...]`` on a conv/dense layer adds, before its
  activation, the output of the earlier hidden layer ``j`` (1-based, counting
  conv/dense layers): an identity shortcut, or a projection
  ``{"from": j, "kind": "conv", "kernel": 1, "stride": 2, "padding": 0}``
  (``{"from": j, "kind": "dense"}`` between flat layers), BatchNorm folded.
* ``{"kind": "avgpool"}`` (global average pooling) before a dense layer, or
  last, before the appended classifier. It is not a layer of its own: it is
  folded into the dense layer (see :mod:`.grid`).

A conv layer may be grouped (``"groups": g``, absent for 1): its input and output channels split into
g groups, output group i seeing only input group i (weight ``(out, in/g, k, k)``; depthwise: g = in).
"""
from __future__ import annotations

from .errors import FastSNNError
from .ir import conv_out_hw

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


def resnet_spec(stages: tuple, blocks: int, first_stride: int = 1) -> list[dict]:
    """A CIFAR-style ResNet: a 3×3 stem, ``blocks`` basic blocks per stage, global average pooling.

    A basic block is conv3×3 (stride 2 where a stage starts, except the first, which has
    ``first_stride``) → conv3×3 whose neuron also receives the block's input: identity, or a 1×1
    projection of the same stride where the shape changes. The classifier is appended.
    """
    spec = [{"kind": "conv", "out": stages[0], "kernel": 3, "stride": 1, "padding": 1}]
    channels = stages[0]
    for n, width in enumerate(stages):
        for b in range(blocks):
            stride = (2 if n > 0 else first_stride) if b == 0 else 1
            source = len(spec)  # 1-based index of the block's input layer
            skip = {"from": source}
            if stride != 1 or width != channels:
                skip.update(kind="conv", kernel=1, stride=stride, padding=0)
            spec.append({"kind": "conv", "out": width, "kernel": 3, "stride": stride, "padding": 1})
            spec.append({"kind": "conv", "out": width, "kernel": 3, "stride": 1, "padding": 1, "skips": [skip]})
            channels = width
    return spec + [{"kind": "avgpool"}]


def vgg_spec(widths: tuple, dense: int) -> list[dict]:
    """VGG-style: 3×3 convs where an 'M' (a max-pool in VGG) makes the conv before it stride 2."""
    spec = []
    for w in widths:
        if w == "M":
            spec[-1]["stride"] = 2
        else:
            spec.append({"kind": "conv", "out": w, "kernel": 3, "stride": 1, "padding": 1})
    return spec + [{"kind": "dense", "out": dense}]


PRESETS["vgg11"] = vgg_spec((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), 512)
PRESETS["resnet8"] = resnet_spec((16, 32, 64), 1)
# twice resnet8's width at about its cost (13 M MACs per 32×32 image): every stage starts with stride 2,
# so the three blocks run at 16×16, 8×8 and 4×4; wider layers lose less to 2-bit activations
PRESETS["resnet8w"] = resnet_spec((32, 64, 128), 1, first_stride=2)
PRESETS["resnet20"] = resnet_spec((16, 32, 64), 3)
PRESETS["resnet18"] = resnet_spec((64, 128, 256, 512), 2)


def resolve_arch(arch: str) -> list[dict]:
    if arch not in PRESETS:
        raise FastSNNError(f"unknown architecture {arch!r}: use one of {sorted(PRESETS)}")
    return json_copy(PRESETS[arch])


def json_copy(spec: list[dict]) -> list[dict]:
    """A deep copy of a spec (plain dicts and lists)."""
    return [{k: ([dict(x) for x in v] if k == "skips" else v) for k, v in s.items()} for s in spec]


def conv_args(s: dict) -> tuple:
    """The geometry of the conv spec ``s`` as ``F.conv2d``'s positional arguments after the bias:
    ``(stride, padding)``, or ``(stride, padding, dilation 1, groups)`` for a grouped conv."""
    g = s.get("groups", 1)
    return (s.get("stride", 1), s.get("padding", 0)) if g == 1 else (s.get("stride", 1), s.get("padding", 0), 1, g)


def has_residuals(spec: list[dict]) -> bool:
    """True when the spec needs the general float network (skips or average pooling)."""
    return any(s.get("skips") or s["kind"] == "avgpool" for s in spec)


def layer_shapes(spec: list[dict], input_shape: tuple, n_classes: int) -> list[tuple[dict, tuple, tuple]]:
    """(spec, in_shape, out_shape) per layer, the classifier appended; checks the geometry.

    ``avgpool`` entries disappear: the dense layer after one gets ``"pool": "avg"``
    and the (C, H, W) input. Skips are checked against their source's shape.
    """
    full = list(spec) + [{"kind": "dense", "out": n_classes}]
    shapes, shape, seen_dense, pool = [], tuple(input_shape), False, False
    for s in full:
        if s["kind"] == "avgpool":
            if pool or len(shape) != 3:
                raise FastSNNError("avgpool needs a (C, H, W) input and must be followed by a dense layer")
            pool = True
            continue
        s = dict(s)
        if s["kind"] == "conv":
            if seen_dense or len(shape) != 3 or pool:
                raise FastSNNError("conv layers must come before avgpool and dense layers and need (C, H, W) input")
            k, st, p = s["kernel"], s.get("stride", 1), s.get("padding", 0)
            h, w = conv_out_hw(shape[1], shape[2], (k, k), (st, st), (p, p), (1, 1))
            if h < 1 or w < 1:
                raise FastSNNError(f"conv layer {s} shrinks the {shape} input to nothing: use fewer stride-2 layers")
            out = (s["out"], h, w)
            g = s.get("groups", 1)
            if not isinstance(g, int) or g < 1 or shape[0] % g or s["out"] % g:
                raise FastSNNError(f"conv layer {s}: groups must be a positive int dividing the {shape[0]} input "
                                   f"and the {s['out']} output channels")
        elif s["kind"] == "dense":
            seen_dense, out = True, (s["out"],)
            if pool:
                s["pool"], pool = "avg", False
        else:
            raise FastSNNError(f"layer kind {s['kind']!r} is not supported: use conv, dense or avgpool")
        if "skips" in s:
            s["skips"] = [dict(sk) for sk in s["skips"]]
        for sk in s.get("skips", []):
            _check_skip(sk, len(shapes) + 1, shapes, out)
        shapes.append((s, shape, out))
        shape = out
    return shapes


def skip_out_shape(sk: dict, src: tuple, n_out: int) -> tuple:
    """Output shape of a shortcut with ``n_out`` channels applied to a source of shape ``src``."""
    kind = sk.get("kind", "identity")
    if kind == "identity":
        return tuple(src)
    if kind == "conv":
        k, st, p = sk.get("kernel", 1), sk.get("stride", 1), sk.get("padding", 0)
        return (n_out,) + conv_out_hw(src[1], src[2], (k, k), (st, st), (p, p), (1, 1))
    return (n_out,)


def _check_skip(sk: dict, index: int, shapes: list, out: tuple) -> None:
    j = sk.get("from")
    if not isinstance(j, int) or not 1 <= j < index:
        raise FastSNNError(f"layer {index}: a skip must come from an earlier hidden layer 1..{index - 1}, got {j!r}")
    src = shapes[j - 1][2]
    kind = sk.get("kind", "identity")
    if kind not in ("identity", "conv", "dense") or (kind == "conv" and len(src) != 3) or (
            kind == "dense" and len(src) != 1):
        raise FastSNNError(f"layer {index}: skip kind {kind!r} does not fit the {src} output of layer {j}: use "
                           "identity, conv (from a (C,H,W) layer) or dense (from a flat layer)")
    got = skip_out_shape(sk, src, out[0])
    if tuple(got) != tuple(out):
        raise FastSNNError(f"layer {index}: the skip from layer {j} gives shape {got}, not the layer's {out}: "
                           "use a projection (kind conv with the right stride)")
