"""Fixed linear maps in a user's model convert exactly (issue 29): non-global average pooling (a depthwise
convolution of weight 1/k², made a layer by a ReLU or absorbed by the next Conv2d/Linear), option-A shortcuts
(``F.pad(y[:, :, ::2, ::2], (0, 0, 0, 0, a, a))``: a 0/1 1×1 stride-2 projection) and ``torch.cat`` into a
Conv2d/Linear (one term per part, the weight split by input channel). Each model converts (``check_same`` inside
``convert``: the float network computes the model), its QuantNet's integer forward equals the exported integer
network's (``qann_forward``) and the engine's SNN equals the reference's; each model also runs on Lava.
Where the composition is not exact, the conversion is refused naming the module, and :func:`compose`'s condition is
checked to be the exact one."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.engine import Engine
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import convert, quantize
from fastsnn_lava.fx_maps import compose
from fastsnn_lava.fx_patterns import Input, Mapped
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward

DIGITS = (1, 8, 8)


class LambdaLayer(nn.Module):
    """The CIFAR ResNet idiom: a module whose forward calls a lambda (torch.fx traces through it)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    """A CIFAR ResNet basic block with the option-A shortcut where the shape changes."""

    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != planes:
            pad = (planes - inp) // 2
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class OptionANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4)
        self.layer1, self.layer2 = BasicBlock(4, 4, 1), BasicBlock(4, 8, 2)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        out = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class PoolNet(nn.Module):
    """Every use of a non-global pooling: a pooled input → Conv2d, AdaptiveAvgPool2d(4) → ReLU (a depthwise layer),
    a padded pooling added as a shortcut, pooling → padded Conv2d (one conv), a padded overlapping pooling →
    Flatten → Linear (one dense layer)."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6)
        self.pool, self.q = nn.AdaptiveAvgPool2d(4), nn.ReLU()
        self.c2, self.b2 = nn.Conv2d(6, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6)
        self.c3, self.fc1, self.fc = nn.Conv2d(6, 8, 3, 1, 1), nn.Linear(8 * 9, 16), nn.Linear(16, 10)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x) + self.c1(F.avg_pool2d(x, 1))))  # a 1×1 pool of the input: the input
        p = self.q(self.pool(y))                                      # 8×8 → 4×4, a depthwise layer
        z = F.relu(self.b2(self.c2(p)) + F.avg_pool2d(y, 3, 2, 1))    # a pooled shortcut from y
        w = F.relu(self.c3(F.avg_pool2d(z, 2)))                       # 4×4 → 2×2: a 6×6 stride-2 conv of z
        return self.fc(F.relu(self.fc1(torch.flatten(F.avg_pool2d(w, 2, 1, 1), 1))))  # 3×3 of the 2×2 map


class CatNet(nn.Module):
    """``torch.cat`` of the previous and an earlier activation into a grouped Conv2d, and into a Linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, 1, 1), nn.Conv2d(4, 4, 3, 1, 1)
        self.c3 = nn.Conv2d(8, 6, 3, 2, 1, groups=2)
        self.f1, self.f2, self.f3 = nn.Linear(6 * 16, 12), nn.Linear(12, 8), nn.Linear(20, 9)
        self.fc = nn.Linear(9, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))
        c = F.relu(self.c3(torch.cat([F.relu(self.c2(a)), a], 1)))
        h1 = F.relu(self.f1(c.flatten(1)))
        return self.fc(F.relu(self.f3(torch.cat([F.relu(self.f2(h1)), h1], dim=1))))


def _ready(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with seeded weights and BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    model = model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
    return model


def _integer_exact(model: nn.Module):
    """quantize (calibrated clips) → integer network: the QuantNet's levels and outputs are the exported network's
    (``qann_forward``), and the engine's SNN is the reference's. Returns (spec, network, test inputs)."""
    ds = load_dataset("digits")
    qann, _, spec = quantize(model, DIGITS, 2, ds.input_max, torch.as_tensor(ds.x_train[:256], dtype=torch.float32))
    net, x = to_network(qann), ds.x_test[:100]
    trace = qann_forward(net, x)
    with torch.no_grad():
        levels = qann.levels(torch.as_tensor(x, dtype=torch.float32))
    assert len(levels) == len(trace.levels) + 1
    for got, want in zip(levels, trace.levels):
        assert torch.equal(got.double(), want)
    assert torch.equal(levels[-1].argmax(1), trace.out.argmax(1))
    assert any(float(level.max()) > 0 for level in trace.levels[1:])  # the layers carry spikes
    assert np.array_equal(Engine(net, device="cpu").run(x[:24]), run_batches(net, x[:24], snn_forward))
    return spec, net, x


def test_non_global_pooling_converts_as_depthwise_layers_and_folded_convolutions():
    spec, net, _ = _integer_exact(_ready(PoolNet()))
    assert spec[1] == {"kind": "conv", "out": 6, "kernel": 2, "stride": 2, "padding": 0, "groups": 6}  # pool → ReLU
    assert spec[2]["skips"] == [{"from": 1, "kind": "conv", "kernel": 3, "stride": 2, "padding": 1}]  # pooled skip
    assert {k: spec[3][k] for k in ("kernel", "stride", "padding")} == {"kernel": 6, "stride": 2, "padding": 2}
    assert spec[4] == {"kind": "dense", "out": 16}  # the pooling folded into the dense weights over the 2×2 map
    assert net.layers[1].groups == 6 and net.layers[4].weight.shape == (16, 8 * 2 * 2)
    w = net.layers[1].weight  # the pooling's codes: one code for every tap
    assert np.unique(w).size == 1 and w.shape == (6, 1, 2, 2)


def test_option_a_shortcut_is_a_fixed_0_1_projection():
    spec, net, _ = _integer_exact(_ready(OptionANet()))
    assert spec[-2]["skips"] == [{"from": 3, "kind": "conv", "kernel": 1, "stride": 2, "padding": 0}]
    assert spec[2]["skips"] == [{"from": 1}]  # the identity shortcut of the first block
    q = net.layers[4].skips[0].weight[:, :, 0, 0]  # 0 on the padded channels 0, 1, 6, 7; one code on the diagonal
    assert q.shape == (8, 4) and not q[[0, 1, 6, 7]].any() and np.count_nonzero(q) == 4
    assert np.array_equal(q[2:6], np.diag(np.diag(q[2:6]))) and np.unique(np.diag(q[2:6])).size == 1


@pytest.mark.parametrize("make", [PoolNet, OptionANet, CatNet])
def test_converted_maps_run_on_lava_like_the_reference(make, tmp_path, require_lava):
    """Depthwise pooling layers, folded kernels, 0/1 and padded k×k shortcuts through the netx file on Lava."""
    from fastsnn_lava.lava.runner import run_lava
    from fastsnn_lava.netx import read_network, write_network
    _, net, x = _integer_exact(_ready(make()))
    write_network(net, tmp_path / "net.h5")
    assert read_network(tmp_path / "net.h5").equals(net)
    out, _ = run_lava(tmp_path / "net.h5", x[:4], progress=False)
    assert np.array_equal(out, run_batches(net, x[:4], snn_forward))


def test_cat_into_a_conv_and_a_linear_splits_the_weight_by_source():
    model = _ready(CatNet())
    spec, _, _ = _integer_exact(model)
    assert spec[2]["skips"] == [{"from": 1, "kind": "conv", "kernel": 3, "stride": 2, "padding": 1}]
    assert spec[5] == {"kind": "dense", "out": 9, "skips": [{"from": 4, "kind": "dense"}]}
    with torch.no_grad():  # the split weights are the model's: the main term keeps the columns of the first part
        w = convert(model, DIGITS).float_net.syn[5].weight
        assert torch.equal(w, model.f3.weight[:, :8])


class Fn(nn.Module):
    """stem conv → ReLU → ``fn`` → ``head`` (a Flatten → Linear of ``n`` features when None)."""

    def __init__(self, fn, n: int, conv: nn.Module | None = None):
        super().__init__()
        self.stem, self.fn, self.conv, self.fc = nn.Conv2d(1, 4, 3, 1, 1), fn, conv, nn.Linear(n, 10)

    def forward(self, x):
        y = self.fn(F.relu(self.stem(x)))
        if self.conv is not None:
            y = F.relu(self.conv(y))
        return self.fc(y.flatten(1))


REFUSED = {  # model, input shape, message
    "overlapping pool → padded conv": (Fn(nn.AvgPool2d(3, 1), 4 * 36, nn.Conv2d(4, 4, 3, 1, 1)), DIGITS,
                                       r"Conv2d 'conv' with padding 1 on a map of kernel 3, stride 1"),
    "odd map pool → padded conv": (Fn(nn.AvgPool2d(2), 4 * 9, nn.Conv2d(4, 4, 3, 1, 1)), (1, 7, 7),
                                   r"Conv2d 'conv' with padding 1 .* of a 7-row input"),
    "count_include_pad=False": (Fn(nn.AvgPool2d(3, 2, 1, count_include_pad=False), 64), DIGITS,
                                r"AvgPool2d 'fn' with count_include_pad=False"),
    "ceil_mode": (Fn(nn.AvgPool2d(2, ceil_mode=True), 64), (1, 7, 7), r"AvgPool2d 'fn' with ceil_mode=True"),
    "adaptive 3 on 8×8": (Fn(nn.AdaptiveAvgPool2d(3), 36), DIGITS, r"'fn' \(output size 3 on a 8×8 map\)"),
    "max pool": (Fn(nn.MaxPool2d(2), 64), DIGITS, r"MaxPool2d 'fn'.*not a linear map"),
    "spatial pad": (Fn(lambda y: F.pad(y, (1, 1, 1, 1)), 400), DIGITS, r"F.pad 'pad' with pad \(1, 1, 1, 1"),
    "offset slice": (Fn(lambda y: y[:, :, 1::2, 1::2], 64), DIGITS, r"slice the spatial dims as ::s"),
    "cat activated": (Fn(lambda y: F.relu(torch.cat([y, y], 1)), 512), DIGITS,
                      r"test_user_maps.py:\d+: in the model \(Fn\): torch.cat\) used other than"),
    "cat returned": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), LambdaLayer(lambda y: torch.cat([y, y], 1))),
                     DIGITS, r"^the concatenation \(\S*test_user_maps.py:\d+: in '2' \(LambdaLayer\): torch.cat\)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_maps_without_an_exact_conversion_are_refused_in_one_line(case):
    model, shape, message = REFUSED[case]
    with pytest.raises(FastSNNError, match=message) as e:
        convert(model.eval(), shape)
    assert "\n" not in str(e.value)


def test_pooling_an_h_row_map_may_drop_rows_without_a_padded_conv():
    """A 2×2 pool of a 7×7 map drops the last row and column; a conv without padding after it converts."""
    model = Fn(nn.AvgPool2d(2), 4 * 4, nn.Conv2d(4, 4, 2, 1, 0))
    c = convert(model.eval(), (1, 7, 7))
    assert {k: c.spec[1][k] for k in ("kernel", "stride", "padding")} == {"kernel": 4, "stride": 2, "padding": 0}


@pytest.mark.parametrize("n, k, s, p, big_k, big_s, big_p", [
    c for c in itertools.product((6, 7), (1, 2, 3), (1, 2), (0, 1), (1, 3), (1, 2), (0, 1))
    if c[3] <= c[1] // 2 and (c[0] + 2 * c[3] - c[1]) // c[2] + 1 + 2 * c[6] >= c[4]])  # pool padding ≤ k/2, fits
def test_compose_is_exact_exactly_when_it_accepts(n, k, s, p, big_k, big_s, big_p):
    """conv(pool(x)) = composed conv(x) whenever :func:`compose` accepts; where it refuses, the composition differs
    from the model on random inputs: the condition is the exact one, not a conservative guess."""
    g = torch.Generator().manual_seed(n + 10 * k + 100 * s)
    x, b = torch.rand(2, 3, n, n, generator=g), torch.rand(5, 3, big_k, big_k, generator=g) + 0.1
    a = torch.full((3, 1, k, k), 1.0 / (k * k))
    pooled = F.conv2d(x, a, None, s, p, 1, 3)
    want = F.conv2d(pooled, b, None, big_s, big_p)
    inner = Mapped(Input((3, n, n)), a, {"kernel": k, "stride": s, "padding": p, "groups": 3}, tuple(pooled.shape[1:]))
    try:
        w, geo = compose(b, {"kernel": big_k, "stride": big_s, "padding": big_p}, inner, "Conv2d 'conv'")
    except FastSNNError:  # the naive composition must then be wrong
        full = F.conv_transpose2d(b, a, stride=s, groups=3)
        got = F.conv2d(x, full, None, s * big_s, big_p * s + p)
        assert got.shape != want.shape or not torch.allclose(got, want, atol=1e-5)
        return
    got = F.conv2d(x, w, None, geo["stride"], geo["padding"])
    assert torch.allclose(got, want, atol=1e-5)
