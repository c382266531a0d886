"""Exact rounding ties: the float QAT network computes the exported integer network's levels, ties included.

A tie is an accumulator with ``A + θ/2 ≡ 0 (mod θ)``: the quantizer's ``T·z/α + 1/2`` is then an integer, and
the float32 value of ``z`` (from the float weight and bias grids) lands a few ulps on either side of it. The
integer network (:func:`reference.qann_forward`, what Lava computes) rounds it up; training must too.
"""
import math

import pytest
import torch

from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.models import QuantNet
from fastsnn_lava.quant import quant_synapse
from fastsnn_lava.reference import qann_forward

INPUT_MAX = 255  # 1/255 is not a float32 number: the float grid is inexact
HIDDEN_THETA = 6

CONV = {"kind": "conv", "kernel": 3, "stride": 1, "padding": 1}
SPECS = {
    ("dense", False): [{"kind": "dense", "out": 12}, {"kind": "dense", "out": 12}],
    ("dense", True): [{"kind": "dense", "out": 12},
                      {"kind": "dense", "out": 12, "skips": [{"from": 1}]},
                      {"kind": "dense", "out": 12, "skips": [{"from": 1, "kind": "dense"}, {"from": 2}]}],
    ("conv", False): [dict(CONV, out=5), dict(CONV, out=6, stride=2), {"kind": "dense", "out": 12}],
    ("conv", True): [dict(CONV, out=5),
                     dict(CONV, out=5, skips=[{"from": 1}]),
                     dict(CONV, out=6, stride=2,
                          skips=[{"from": 2, "kind": "conv", "kernel": 1, "stride": 2, "padding": 0}]),
                     {"kind": "avgpool"}, {"kind": "dense", "out": 8}],
}
INPUT = {"dense": (20,), "conv": (2, 6, 6)}


def _first_theta(T: int) -> int:
    """θ = 2d with d | T (largest below 252): then A = T·S is a tie exactly when S is odd."""
    return max(2 * d for d in range(1, 126) if T % d == 0)


@torch.no_grad()
def tie_net(kind: str, residual: bool, bits: int, seed: int = 0) -> tuple[QuantNet, torch.Tensor]:
    """A QuantNet whose grids are set so that many accumulators are ties, and its raw integer input.

    Each hidden layer gets a chosen even θ: its weights are integer codes (small, in −3..3) times
    ``Δ = α/(θ·u_in)`` with one code 126 on an input that is always 0 (input channel/feature 0; in
    later layers the previous layer's dead channel 0), so that the grid's
    ``θ = 2·⌊α·127/(2·u_in·max|W|)⌋ = 2·⌊θ·127/252⌋`` gives back that θ and the codes. Clips α are
    irregular numbers, so the float grid (Δ, u, α in float32) is inexact.
    """
    g = torch.Generator().manual_seed(seed)
    T = 2 ** bits - 1
    spec = SPECS[(kind, residual)]
    net = QuantNet(spec, INPUT[kind], 7, bits, INPUT_MAX)
    alphas = []
    for k, layer in enumerate(net.layers):
        u_in = 1 / INPUT_MAX if k == 0 else alphas[-1]
        theta = _first_theta(T) if k == 0 else HIDDEN_THETA
        if layer.hidden:
            alpha = [0.7310937, 1.9130117, 2.318773, 1.4470033][k % 4]
            identity = [sk["from"] for sk in layer.skips if sk.get("kind", "identity") == "identity"]
            if identity:  # identity code round(α_j/u) = round(α_j·θ/α) = 2: α = α_j·θ/2.13
                alpha = alphas[identity[0] - 1] * theta / 2.13
            layer.alpha.fill_(alpha)
            alphas.append(alpha)
            delta = alpha / (theta * u_in / layer.pool)
        else:
            delta = 0.0173  # the classifier's Δ is max|W|/127: any scale
        q = torch.randint(-3, 4, layer.weight.shape, generator=g).float()
        flat = q.view(len(q), -1)
        # the input's leading columns that are always 0: channel 0 (conv, pooled dense), its H·W
        # positions (dense on a flattened conv output) or feature 0 (dense on a flat input)
        dead = math.prod(layer.in_shape[1:]) if kind == "conv" and not layer.pool else 1
        if layer.spec["kind"] == "conv":
            q[:, 0] = 0
        else:
            flat[:, :dead] = 0
        flat[1, 0] = 126  # sets max|W|, hence θ, and never contributes
        c = torch.randint(-2, 3, (len(q),), generator=g).float()
        if layer.hidden:
            q[0], c[0] = 0, -5  # channel 0 never fires: the next layer's dead input
        layer.weight.copy_(q * delta)
        unit = delta * u_in / layer.pool
        layer.bias.copy_(c * unit)
        for sk, w_s in zip(layer.skips, layer.skip_weight if layer.skips else []):
            if sk.get("kind", "identity") != "identity":
                q_s = torch.randint(-3, 4, w_s.shape, generator=g).float()
                q_s[0] = 0  # keeps channel 0 dead
                w_s.copy_(q_s * (unit / alphas[sk["from"] - 1]))
    for k, layer in enumerate(net.layers[:-1]):  # the construction holds: θ and codes as chosen
        q, c, theta = layer.codes(net.units_in()[k], net.skip_alphas(k))
        assert theta == (_first_theta(T) if k == 0 else HIDDEN_THETA), (k, theta)
        assert float(q.abs().max()) == 126
    d = _first_theta(T) // 2
    x = torch.randint(0, 2 + d // 3, (1024, *INPUT[kind]), generator=g).float()
    x[:, 0] = 0  # input channel (or feature) 0 is dead
    return net, x


def _ties(trace, net) -> list[torch.Tensor]:
    """Per hidden layer: where the accumulator is a tie that decides a level (between n−1 and n ≤ T)."""
    T, out = net.timesteps, []
    for acc, layer in zip(trace.accs, net.layers):
        theta = layer.threshold
        n = (acc + theta // 2) / theta
        out.append(((acc + theta // 2) % theta == 0) & (n >= 1) & (n <= T))
    return out


def _forward_outputs(qann: QuantNet, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each hidden layer's output y in the training forward pass (QuantNet.forward), and the logits."""
    ys = []
    hooks = [layer.register_forward_hook(lambda m, i, o: ys.append(o.detach())) for layer in qann.layers]
    try:
        with torch.no_grad():
            logits = qann(x)
    finally:
        for h in hooks:
            h.remove()
    return ys[:-1], logits


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_float_qat_levels_equal_integer_levels_at_ties(kind, residual, bits):
    qann, x = tie_net(kind, residual, bits)
    net = to_network(qann)
    T = net.timesteps
    trace = qann_forward(net, x)
    ties = _ties(trace, net)
    for k, tie in enumerate(ties):  # the case is not vacuous: every layer decides many levels at ties
        assert int(tie.sum()) >= 20, f"layer {k + 1}: only {int(tie.sum())} ties"
    ys, logits = _forward_outputs(qann, x)
    with torch.no_grad():
        direct = qann.levels(x)
    for k, (ref, layer) in enumerate(zip(trace.levels, qann.layers)):
        level = torch.round(ys[k] * T / layer.alpha.detach()).double()
        bad = level != ref
        assert int(bad.sum()) == 0, f"layer {k + 1}: the forward pass differs from the integer network at " \
                                    f"{int(bad.sum())} levels, {int(bad[ties[k]].sum())} of {int(ties[k].sum())} ties"
        # the output is α·k/T rounded as the quantizer rounds it, and QuantNet.levels gives the same k
        assert torch.equal(ys[k], ref.float() / T * layer.alpha.detach())
        assert torch.equal(direct[k].double(), ref), f"layer {k + 1}: QuantNet.levels"
    unit = qann.layers[-1].grid(qann.units_in()[-1])[2]
    torch.testing.assert_close(logits.double(), trace.out * (unit / T), rtol=1e-6, atol=0)
    assert torch.equal(logits.argmax(1), trace.out.argmax(1))
    assert torch.equal(direct[-1], logits)


def test_a_tie_is_computed_off_the_half_in_float32():
    """The cause, on constructed ties: T·z/α + 1/2 from the float grids misses the integer that
    (A + θ/2)/θ is at a tie, so floor() can take the level below; the network uses the integers instead."""
    qann, x = tie_net("conv", False, 2)
    net = to_network(qann)
    trace = qann_forward(net, x)
    tie = _ties(trace, net)[0]
    layer, T = qann.layers[0], 3
    theta, delta, unit = layer.grid(qann.units_in()[0])
    with torch.no_grad():
        z = torch.nn.functional.conv2d(x / INPUT_MAX, torch.floor(layer.weight / delta + 0.5) * delta,
                                       torch.floor(layer.bias / unit + 0.5) * unit, 1, 1)
        r = (z / layer.alpha).clamp(0, 1) * T + 0.5  # the float quantizer's argument of floor()
    exact = (trace.accs[0] + theta // 2) / theta
    assert torch.equal(exact[tie], exact[tie].round())  # at ties: integers
    assert int(((r.double() != exact) & tie).sum()) > 0 and float((r.double() - exact)[tie].abs().max()) < 1e-5
    assert int(((r.floor().double() != trace.levels[0]) & tie).sum()) > 0  # some fall to the level below
    assert torch.equal(qann.levels(x)[0].double(), trace.levels[0])


@pytest.mark.parametrize("conv", [None, (1, 1), (2, 1)])
@pytest.mark.parametrize("levels", [0, 1, 3, 15])
def test_exact_forward_keeps_the_straight_through_gradients(conv, levels):
    """quant_synapse given the accumulator (``exact``) has the float layer's gradients: same formula, on
    ``z = u·A/T`` instead of the float z (random values: no ties, so both forward values agree)."""
    g = torch.Generator().manual_seed(levels * 10 + (conv or (0,))[0])
    x0 = torch.rand(16, 6, 9, 9, generator=g) * 2 if conv else torch.rand(16, 40, generator=g) * 2
    w0 = torch.randn((12, 6, 3, 3) if conv else (12, 40), generator=g) * 0.2
    b0 = torch.randn(12, generator=g) * 0.5
    steps, theta, unit = levels or 3, 6, 0.25  # α = θ·u = 1.5
    grid = (0.2 / 127 * 1.3, unit, 127, -4096, 4095, levels)
    out_shape = torch.nn.functional.conv2d(x0, w0, b0, *conv).shape if conv else (16, 12)
    e0 = [torch.randn(out_shape, generator=g)]
    up = torch.randn(out_shape, generator=g)
    results = []
    for exact in (False, True):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        alpha = torch.tensor([theta * unit], requires_grad=True)
        es = [e.clone().requires_grad_(True) for e in e0]
        ex = None
        if exact:  # V = A + θ/2 with A = T·z/u of the same layer (here not integer: quant_synapse does not care)
            with torch.no_grad():
                z = quant_synapse(x0.double(), w0.double(), b0.double(), None, grid[:5] + (0,), conv,
                                  tuple(e.double() for e in e0))
            ex = (z * (steps / unit) + (theta // 2 if levels else 0), theta if levels else None, steps)
        y = quant_synapse(x, w, b, alpha, grid, conv, tuple(es), exact=ex)
        y.backward(up)
        results.append([y.detach(), x.grad, w.grad, b.grad] + [e.grad for e in es] + ([alpha.grad] if levels else []))
    for a, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
    assert 0 < float(results[0][0].abs().sum())


def test_trained_digits_cnn_float_qat_equals_integer_network(trained):
    """The tiny digits CNN as trained: on every test image, every hidden layer's level of the training
    forward pass equals the exported integer network's (0 differences, ties included), and so do the
    predictions and the two test accuracies in the checkpoint's meta."""
    qann, _, meta, _ = trained("cnn", 2)
    net = to_network(qann)
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_test, dtype=torch.float32)
    trace = qann_forward(net, ds.x_test)
    ties = _ties(trace, net)
    ys, logits = _forward_outputs(qann, x)
    with torch.no_grad():
        direct = qann.levels(x)
    for k, (ref, layer) in enumerate(zip(trace.levels, qann.layers)):
        level = torch.round(ys[k] * net.timesteps / layer.alpha.detach()).double()
        assert int((level != ref).sum()) == 0, f"layer {k + 1}: {int((level != ref).sum())} levels differ " \
                                               f"({int(ties[k].sum())} ties in the layer)"
        assert torch.equal(direct[k].double(), ref)
    assert sum(int(t.sum()) for t in ties) > 0  # the trained network has ties to get right
    assert torch.equal(logits.argmax(1), trace.out.argmax(1))
    assert meta["qann_test_accuracy_float_forward"] == meta["qann_test_accuracy"]


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0), ((2, 1), (0, 1))])
def test_conv_unfold_is_the_convolution(stride, padding):
    """The CUDA form of the exact integer convolution (unfold + matmul), checked on the CPU."""
    from fastsnn_lava.quant import conv_unfold
    g = torch.Generator().manual_seed(0)
    m = torch.randint(0, 256, (3, 4, 9, 7), generator=g).float()
    q = torch.randint(-127, 128, (5, 4, 3, 3), generator=g).float()
    ref = torch.nn.functional.conv2d(m.double(), q.double(), None, stride, padding)
    assert torch.equal(conv_unfold(m, q, stride, padding).double(), ref)


def test_accumulator_goes_float64_when_float32_cannot_hold_it():
    """b = 8 with a large first-layer input: T·(Σ q·x + c) beyond 2^24 is still exact (float64), and the
    levels equal the integer network's."""
    qann, x = tie_net("conv", False, 8)
    g = torch.Generator().manual_seed(1)
    layer = qann.layers[0]
    _, delta, _ = layer.grid(qann.units_in()[0])
    with torch.no_grad():  # large codes (max 126 keeps the grid) on full-range pixels
        q = torch.randint(-126, 127, layer.weight.shape, generator=g).float()
        q[1, 0, 0, 0] = 126
        layer.weight.copy_(q * delta)
    x = torch.randint(0, 256, x.shape, generator=g).float()
    net = to_network(qann)
    trace = qann_forward(net, x)
    acc, theta = qann.layers[0].accumulator(x / INPUT_MAX, qann.units_in()[0])
    assert acc.dtype == torch.float64 and float(trace.accs[0].abs().max()) >= 2 ** 24
    assert torch.equal(acc, trace.accs[0])
    with torch.no_grad():
        for k, level in enumerate(qann.levels(x)[:-1]):
            assert torch.equal(level.double(), trace.levels[k])
