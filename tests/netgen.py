"""Random integer networks for property tests (hypothesis strategies), shared by the engine and kernel tests."""
import numpy as np
from hypothesis import strategies as st

from fastsnn_lava.ir import Layer, Network, Skip, conv_out_hw

from fastsnn_lava.neuron import Accumulator, if_neuron


def make_layer(kind, weight, bias, neuron: str, theta, in_shape, out_shape, **geometry) -> Layer:
    """A layer with neuron ``"signed_if"``, ``"unsigned_if"`` (threshold θ) or ``"accumulate"``."""
    record = Accumulator() if neuron == "accumulate" else if_neuron(neuron, theta)
    return Layer(kind, weight, bias, record, in_shape, out_shape, **geometry)


@st.composite
def networks(draw):
    """Random integer networks: 0-2 conv layers (stride, padding, groups), 0-2 dense, signed or unsigned."""
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    neuron = draw(st.sampled_from(["signed_if", "unsigned_if"]))
    wmax = draw(st.sampled_from([3, 127]))
    n_conv, n_dense = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    shape = (draw(st.sampled_from([1, 2, 4])), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    if n_conv == 0:
        shape = (int(np.prod(shape)),)
    input_shape, layers = shape, []

    def theta():
        return 2 * int(rng.integers(1, 400))
    for _ in range(n_conv):
        groups = draw(st.sampled_from([1, 2])) if shape[0] % 2 == 0 else 1
        c_out = groups * draw(st.integers(1, 4))
        k, s, p = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
        hw = conv_out_hw(shape[1], shape[2], (k, k), (s, s), (p, p), (1, 1))
        if min(hw) < 1:
            break
        out = (c_out, *hw)
        layers.append(make_layer("conv", rng.integers(-wmax, wmax + 1, (c_out, shape[0] // groups, k, k)),
                                 rng.integers(-300, 301, c_out), neuron, theta(), shape, out, stride=s, padding=p,
                                 groups=groups))
        shape = out
    for _ in range(n_dense):
        out = (draw(st.integers(1, 12)),)
        layers.append(make_layer("dense", rng.integers(-wmax, wmax + 1, (out[0], int(np.prod(shape)))),
                                 rng.integers(-300, 301, out[0]), neuron, theta(), shape, out))
        shape = out
    last_kind = draw(st.sampled_from(["dense", "conv"])) if len(shape) == 3 else "dense"
    if last_kind == "conv":
        layers.append(make_layer("conv", rng.integers(-wmax, wmax + 1, (3, shape[0], 1, 1)),
                                 rng.integers(-50, 51, 3), "accumulate", None, shape, (3, *shape[1:])))
    else:
        layers.append(make_layer("dense", rng.integers(-wmax, wmax + 1, (5, int(np.prod(shape)))),
                                 rng.integers(-50, 51, 5), "accumulate", None, shape, (5,)))
    net = Network(input_shape, layers, bits=draw(st.integers(1, 4)), input_max=255)
    x = rng.integers(0, 256, (draw(st.integers(1, 9)), *input_shape))
    return net, x


def _skip(draw, rng, j: int, src: tuple, tgt: Layer) -> Skip | None:
    """A shortcut from hidden layer ``j`` (output ``src``) into ``tgt``: an identity (one code on the diagonal)
    where the shapes allow it, else a projection (1×1 conv, stride 1 or 2, or dense); None if none fits."""
    n_out = tgt.out_shape[0]
    if tgt.kind == "dense" and len(src) == 1:
        if src[0] == n_out and draw(st.booleans()):
            return Skip(j, "dense", int(rng.integers(1, 21)) * np.eye(n_out, dtype=np.int64), src)
        return Skip(j, "dense", rng.integers(-20, 21, (n_out, src[0])), src)
    if tgt.kind != "conv" or len(src) != 3:
        return None
    s = next((s for s in (1, 2) if conv_out_hw(src[1], src[2], (1, 1), (s, s), (0, 0), (1, 1))
              == tuple(tgt.out_shape[1:])), None)
    if s is None:
        return None
    if s == 1 and src[0] == n_out and draw(st.booleans()):
        eye = int(rng.integers(1, 21)) * np.eye(n_out, dtype=np.int64)
        return Skip(j, "conv", eye[:, :, None, None], src)
    return Skip(j, "conv", rng.integers(-20, 21, (n_out, src[0], 1, 1)), src, stride=s)


@st.composite
def skip_networks(draw, neurons=("signed_if", "unsigned_if")):
    """Random residual networks: 2-4 conv layers (3×3, stride 1 or 2), 0-2 dense, a dense read-out, and random
    shortcuts into later layers — identity or 1×1 conv skips (stride 1 or 2) between conv layers of matching
    size, identity or dense skips between flat layers."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    neuron = draw(st.sampled_from(list(neurons)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(4, 8)), draw(st.integers(4, 8)))
    input_shape, layers = shape, []
    for _ in range(draw(st.integers(2, 4))):
        s = draw(st.sampled_from([1, 1, 2]))
        out = (draw(st.integers(1, 4)), *conv_out_hw(shape[1], shape[2], (3, 3), (s, s), (1, 1), (1, 1)))
        layers.append(make_layer("conv", rng.integers(-20, 21, (out[0], shape[0], 3, 3)),
                                 rng.integers(-30, 31, out[0]), neuron, 2 * int(rng.integers(5, 60)), shape, out,
                                 stride=s, padding=1))
        shape = out
    for _ in range(draw(st.integers(0, 2))):
        out = (draw(st.integers(2, 10)),)
        layers.append(make_layer("dense", rng.integers(-20, 21, (out[0], int(np.prod(shape)))),
                                 rng.integers(-30, 31, out[0]), neuron, 2 * int(rng.integers(5, 60)), shape, out))
        shape = out
    layers.append(make_layer("dense", rng.integers(-20, 21, (4, int(np.prod(shape)))), rng.integers(-9, 10, 4),
                             "accumulate", None, shape, (4,)))
    for li in range(2, len(layers)):
        for j in range(1, li):  # source: 1-based hidden layer j, not the previous layer's own path
            if draw(st.booleans()):
                skip = _skip(draw, rng, j, layers[j - 1].out_shape, layers[li])
                if skip is not None:
                    layers[li].skips.append(skip)
    net = Network(input_shape, layers, bits=draw(st.integers(1, 3)), input_max=255)
    return net, rng.integers(0, 256, (draw(st.integers(1, 9)), *input_shape))
