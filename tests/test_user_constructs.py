"""User-model constructs that convert exactly (issue 29): ReLU6 (a clip bounded by α ≤ 6), grouped and
depthwise convolutions. Each model converts (``check_same``: the float network computes the model), trains
a little with QAT, and its integer network is lossless: the QANN's own levels equal ``qann_forward``'s,
and the engine's SNN equals ``snn_forward``."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava import checkpoint
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.engine import Engine
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import convert, quantize
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward
from fastsnn_lava.runtime import Runtime
from fastsnn_lava.training import fit

BITS = 2


class Relu6Net(nn.Module):
    """The three spellings of ReLU6, and an unbounded ReLU, on digits (1×8×8)."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.a1 = nn.Conv2d(1, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU6()
        self.c2, self.b2 = nn.Conv2d(6, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.c3, self.fc1, self.fc2 = nn.Conv2d(8, 8, 3, 1, 1), nn.Linear(8 * 16, 16), nn.Linear(16, 10)

    def forward(self, x):
        y = F.relu6(self.b2(self.c2(self.a1(self.b1(self.c1(x))))))
        y = F.hardtanh(self.c3(y), 0.0, 6.0)
        return self.fc2(torch.relu(self.fc1(y.flatten(1))))


def _scaled(model: nn.Module, scale: float) -> nn.Module:
    """``model`` with its BatchNorm scales multiplied: pre-activations well beyond 6, so the clip matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.mul_(scale)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-0.1, 0.1)
    return model.eval()


def _lossless(model: nn.Module, steps_data: int = 512):
    """quantize → QAT one short epoch → integer network; asserts the QANN is its integer network and the
    engine's SNN is the reference's. Returns (qann, spec, network)."""
    torch.manual_seed(0)
    ds = load_dataset("digits")
    x, y = torch.as_tensor(ds.x_train, dtype=torch.float32)[:steps_data], torch.as_tensor(ds.y_train)[:steps_data]
    qann, _, spec = quantize(model, ds.input_shape, BITS, ds.input_max, x)
    fit(qann, lambda a: a, x, y, 1, 1e-3, 64, "qat", 1, Runtime(torch.device("cpu")), False)
    net = to_network(qann)
    xt = ds.x_test[:200]
    trace = qann_forward(net, xt)
    with torch.no_grad():
        levels = qann.levels(torch.as_tensor(xt, dtype=torch.float32))
    for k, ref in enumerate(trace.levels):
        assert torch.equal(levels[k].double(), ref), f"layer {k + 1}"
    assert torch.equal(levels[-1].argmax(1), trace.out.argmax(1))
    assert np.array_equal(Engine(net, device="cpu").run(xt[:40]), run_batches(net, xt[:40], snn_forward))
    return qann, spec, net


def test_relu6_spellings_convert_exactly_with_a_bounded_clip():
    model = _scaled(Relu6Net(), 20.0)
    c = convert(model, (1, 8, 8))  # check_same: min(relu(z), 6) in the float network
    assert [s.get("alpha_max") for s in c.spec] == [6.0, 6.0, 6.0, None]
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        assert float(model.a1(model.b1(model.c1(x))).max()) == 6.0  # the clip is active on these inputs
        assert torch.allclose(c.float_net(x), model(x), atol=1e-4)


def test_relu6_bound_holds_at_calibration_qat_and_conversion():
    qann, spec, net = _lossless(_scaled(Relu6Net(), 20.0))
    alphas = [float(m.alpha) for m in qann.layers if m.hidden]
    assert all(a <= 6.0 for a in alphas[:3]), alphas
    assert alphas[0] > 5.5  # calibrated at the bound, then a short QAT
    qann.calibrate(torch.as_tensor(load_dataset("digits").x_train[:256], dtype=torch.float32))
    assert float(qann.layers[0].alpha) == 6.0  # the 99.7th percentile lies far beyond 6
    with torch.no_grad():  # QAT pushing α past the bound is undone before the next use
        qann.layers[0].alpha.fill_(9.0)
    assert float(qann.layers[0].alpha) == 9.0
    qann.codes()
    assert float(qann.layers[0].alpha) == 6.0


def test_a_plain_relu_gets_no_bound():
    """A plain ReLU's spec entry is unchanged (no alpha_max entry)."""
    model = _scaled(Relu6Net(), 1.0)
    model.a1 = nn.ReLU()
    spec = convert(model, (1, 8, 8)).spec
    assert "alpha_max" not in spec[0] and spec[1]["alpha_max"] == 6.0


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (0.0, 0.0)])
def test_hardtanh_that_is_not_a_clipped_relu_is_refused(lo, hi):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 36, 10)

        def forward(self, x):
            return self.fc(F.hardtanh(self.c(x), lo, hi).flatten(1))

    with pytest.raises(FastSNNError, match="hardtanh"):
        convert(M().eval(), (1, 8, 8))


class GroupedNet(nn.Module):
    """stem → depthwise 3×3 (groups = channels) → grouped 3×3 stride 2 (groups 4) → a residual block whose
    first conv is grouped (identity shortcut) → pool → classifier."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.bn1 = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.gc, self.bn2 = nn.Conv2d(8, 16, 3, 2, 1, groups=4, bias=False), nn.BatchNorm2d(16)
        self.r1, self.bn3 = nn.Conv2d(16, 16, 3, 1, 1, groups=2, bias=False), nn.BatchNorm2d(16)
        self.r2, self.bn4 = nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = F.relu(self.bn2(self.gc(F.relu(self.bn1(self.dw(F.relu(self.bn0(self.stem(x)))))))))
        y = F.relu(self.bn4(self.r2(F.relu(self.bn3(self.r1(y))))) + y)
        return self.fc(y.mean((2, 3)))


def test_grouped_and_depthwise_convolutions_convert_and_are_lossless(tmp_path):
    model = _scaled(GroupedNet(), 1.0)
    c = convert(model, (1, 8, 8))  # check_same: the float network's grouped convs compute the model's
    assert [s.get("groups", 1) for s in c.spec if s["kind"] == "conv"] == [1, 8, 4, 2, 1]
    qann, _, net = _lossless(model)
    assert [layer.groups for layer in net.layers if layer.kind == "conv"] == [1, 8, 4, 2, 1]
    assert tuple(net.layers[1].weight.shape) == (8, 1, 3, 3) and tuple(net.layers[2].weight.shape) == (16, 2, 3, 3)
    path = tmp_path / "grouped.pt"  # a checkpoint rebuilds the grouped layers from the spec
    checkpoint.save(str(path), qann, c.float_net, {"dataset": "digits", "arch": "user"})
    assert to_network(checkpoint.load(str(path))[0]).equals(net)


def test_grouped_convolutions_run_on_lava_like_the_reference(tmp_path, require_lava):
    from fastsnn_lava.lava.runner import run_lava
    from fastsnn_lava.netx import read_network, write_network
    _, _, net = _lossless(_scaled(GroupedNet(), 1.0))
    h5 = tmp_path / "grouped.h5"
    write_network(net, h5)
    assert read_network(h5).equals(net)
    x = load_dataset("digits").x_test[:4]
    out, _ = run_lava(h5, x, progress=False)
    assert np.array_equal(out, run_batches(net, x, snn_forward))


def test_grouped_conv_unfold_is_the_grouped_convolution():
    """The CUDA path's im2col GEMM (quant.conv_unfold) with groups equals F.conv2d on integers."""
    from fastsnn_lava.quant import conv_unfold
    g = torch.Generator().manual_seed(1)
    m = torch.randint(0, 4, (2, 8, 7, 7), generator=g).double()
    q = torch.randint(-9, 10, (12, 2, 3, 3), generator=g).double()
    assert torch.equal(conv_unfold(m, q, 2, 1, 1, 4), F.conv2d(m, q, None, 2, 1, 1, 4))


class NormNet(nn.Module):
    """``(x - mean) / std`` in forward with per-channel buffers, a first conv without padding (the fold is exact
    only there), then a padded conv and a classifier."""

    def __init__(self, padding: int = 0, spelling: str = "div"):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.3]).view(1, 1, 1))
        self.register_buffer("std", torch.tensor([0.2]).view(1, 1, 1))
        self.spelling = spelling
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, 1, padding, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std if self.spelling == "div" else (x - 0.3) * (1 / self.std)
        y = F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))))
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("spelling", ["div", "mul"])
def test_input_normalisation_in_forward_folds_into_the_first_layer(spelling):
    model = _scaled(NormNet(spelling=spelling), 1.0)
    c = convert(model, (1, 8, 8))  # check_same: the folded first layer computes the normalised model
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-4)
        assert not torch.allclose(c.float_net(x), model.fc(F.relu(model.b2(model.c2(F.relu(model.b1(model.c1(
            x)))))).mean((2, 3))), atol=1e-2)  # the normalisation is not dropped
    _lossless(model)


def test_input_normalisation_before_a_padded_conv_is_refused():
    with pytest.raises(FastSNNError, match="padded Conv2d 'c1' on the normalised input"):
        convert(_scaled(NormNet(padding=1), 1.0), (1, 8, 8))


class RawPadNet(NormNet):
    """``F.pad`` of the raw input by p pixels, then (maybe) the normalisation, then an unpadded conv: the first
    conv of the trained model computes exactly a conv with padding p on raw pixels."""

    def __init__(self, pad=(1, 1, 1, 1), normalise: bool = True, value=0.0, c1_padding: int = 0, then: str = "conv"):
        super().__init__(padding=c1_padding)
        self.pad, self.normalise, self.value, self.then = pad, normalise, value, then
        self.flat_fc = nn.Linear(100, 10)

    def forward(self, x):
        x = F.pad(x, self.pad, value=self.value)
        if self.normalise:
            x = (x - self.mean) / self.std
        if self.then == "relu":
            x = F.relu(x)
        elif self.then == "pool":
            x = F.avg_pool2d(x, 2)
        elif self.then == "linear":
            return self.flat_fc(x.flatten(1))
        y = F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))))
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("normalise", [True, False])
def test_raw_padding_before_the_normalisation_folds_exactly(normalise):
    model = _scaled(RawPadNet(normalise=normalise), 1.0)
    c = convert(model, (1, 8, 8))  # check_same inside
    first = c.spec[0]
    assert first.get("padding", 0) == 1, first
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-4)
        zero_padded = model.c1.padding
        model.c1.padding, model.pad = (1, 1), (0, 0, 0, 0)  # the published alternative: pad the normalised input
        differs = not torch.allclose(c.float_net(x), model(x), atol=1e-2)
        model.c1.padding, model.pad = zero_padded, (1, 1, 1, 1)
    assert differs or not normalise  # without normalisation the two paddings are the same
    _lossless(model)


@pytest.mark.parametrize("kw, words", [
    (dict(c1_padding=1), "pad once"),
    (dict(pad=(1, 2, 1, 1)), "same number of pixels on every side"),
    (dict(value=0.5), "only zero padding"),
    (dict(then="relu"), "not supported"),
    (dict(then="pool"), "not supported"),
    (dict(then="linear"), "not supported"),
])
def test_a_padded_input_read_other_than_by_an_unpadded_conv_is_refused(kw, words):
    with pytest.raises(FastSNNError) as e:
        convert(_scaled(RawPadNet(**kw), 1.0), (1, 8, 8))
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
