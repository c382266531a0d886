"""Residual networks end to end: a user-written ResNet (torch.fx) → QAT grid → integer network with
skips → netx file → reference and Lava, plus the presets and the converter's errors."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from fastsnn_lava import checkpoint
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import convert, quantize
from fastsnn_lava.hardware import check_network, load_target
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.models import QuantNet, build_float, resolve_arch
from fastsnn_lava.netx import read_network, write_network
from fastsnn_lava.quant import QReLU, activation_level
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward
from fastsnn_lava.runtime import Runtime
from fastsnn_lava.training import fit as _fit

BITS = 2


class Block(nn.Module):
    """A basic residual block as a user would write it: the shortcut joins before the second QReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), QReLU()
        self.conv2, self.bn2, self.act2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), QReLU()
        self.shortcut = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), QReLU(BITS))
        self.block1, self.block2 = Block(8, 8, 1), Block(8, 16, 2)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


@pytest.fixture(scope="module")
def user_resnet():
    """TinyResNet trained briefly on digits, quantized through torch.fx: (QuantNet, float net, spec)."""
    torch.manual_seed(0)
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_train, dtype=torch.float32)
    y = torch.as_tensor(ds.y_train)
    model = TinyResNet()
    rt = Runtime(torch.device("cpu"))  # one process on the CPU
    _fit(model, lambda a: a.reshape(-1, 1, 8, 8) / ds.input_max, x, y, 2, 3e-3, 64, "float", 0, rt, False)
    qann, float_net, spec = quantize(model, ds.input_shape, BITS, ds.input_max, x[:1000])
    _fit(qann, lambda a: a, x, y, 2, 1e-3, 64, "qat", 1, rt, False)
    return qann, float_net, spec


def test_fx_spec_and_folded_float_net_match_the_user_model():
    torch.manual_seed(1)
    model = TinyResNet()
    for m in model.modules():  # non-trivial BatchNorm statistics, so that folding is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    c = convert(model, (1, 8, 8))
    assert [s["kind"] for s in c.spec] == ["conv"] * 5 + ["avgpool"]
    assert c.spec[2]["skips"] == [{"from": 1}]
    assert c.spec[4]["skips"] == [{"from": 3, "kind": "conv", "kernel": 1, "stride": 2, "padding": 0}]
    assert c.n_classes == 10 and c.bits == BITS
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-5)


def test_user_resnet_converts_exports_and_runs_on_lava_exactly(user_resnet, tmp_path, require_lava):
    from fastsnn_lava.lava.runner import run_lava
    qann, float_net, _ = user_resnet
    net = to_network(qann)
    assert [len(layer.skips) for layer in net.layers] == [0, 0, 1, 0, 1, 0]
    identity = net.layers[2].skips[0].weight[:, :, 0, 0]
    assert np.array_equal(identity, np.diag(np.diag(identity))) and 64 <= identity[0, 0] <= 127
    check_network(net, load_target("loihi2"))
    h5 = tmp_path / "resnet.h5"
    write_network(net, h5)
    assert read_network(h5).equals(net)
    x = load_dataset("digits").x_test[:16]
    ref = run_batches(net, x, snn_forward)
    out, info = run_lava(h5, x, progress=False)
    mismatched = np.flatnonzero(~(out == ref).all(1))
    assert mismatched.size == 0, f"samples {mismatched} differ from the reference"
    assert info["steps_per_sample"] == net.timesteps + len(net.layers)
    # checkpoint round trip of the user model: the same integer network comes back
    path = tmp_path / "user.pt"
    checkpoint.save(str(path), qann, float_net, {"dataset": "digits", "arch": "user"})
    assert to_network(checkpoint.load(str(path))[0]).equals(net)


def test_shortcut_delay_is_what_makes_lava_equal_the_reference(user_resnet, tmp_path, require_lava, monkeypatch):
    """Negative control: without the delay line the shortcut spikes arrive a step early and outputs differ."""
    from fastsnn_lava.lava import loader
    from fastsnn_lava.lava.runner import run_lava
    net = to_network(user_resnet[0])
    write_network(net, tmp_path / "r.h5")
    x = load_dataset("digits").x_test[:4]
    monkeypatch.setattr(loader, "skip_delay", lambda index, source: 0)
    out, _ = run_lava(tmp_path / "r.h5", x, progress=False)
    assert not np.array_equal(out, run_batches(net, x, snn_forward))


def test_user_resnet_is_lossless_and_snn_follows_qann(user_resnet):
    """The integer QANN equals the QAT network (every level, ties included, and the predictions; the
    float quantizer formula on the pre-activation up to exact ties; logits times the unit);
    the SNN's spike counts equal the QANN levels where there is no sequential error (layer 1, whose
    input is constant); deeper layers, shortcut layers included, carry T = 3's sequential error."""
    qann, _, _ = user_resnet
    net = to_network(qann)
    ds = load_dataset("digits")
    trace = qann_forward(net, ds.x_test)
    with torch.no_grad():
        levels = qann.levels(torch.as_tensor(ds.x_test, dtype=torch.float32))
    for k, ref in enumerate(trace.levels):
        assert torch.equal(levels[k].double(), ref), k
    assert torch.equal(levels[-1].argmax(1), trace.out.argmax(1))
    q = QuantNet(qann.spec, qann.input_shape, qann.n_classes, BITS, qann.input_max).double()
    q.load_state_dict(qann.state_dict())
    T, units = net.timesteps, q.units_in()
    x = torch.as_tensor(ds.x_test, dtype=torch.float64) / ds.input_max
    with torch.no_grad():
        for k, layer in enumerate(q.layers):
            skips = tuple((trace.levels[sk["from"] - 1] * float(q.layers[sk["from"] - 1].alpha) / T, a)
                          for sk, a in zip(layer.skips, q.skip_alphas(k)))
            z = layer.pre_activation(x, units[k], skips)
            if not layer.hidden:
                unit = layer.grid(units[k])[2]
                assert torch.allclose(z * T / unit, trace.out, rtol=0, atol=1e-6)
                break
            theta = net.layers[k].threshold
            at_tie = (trace.accs[k] + theta // 2) % theta == 0
            assert bool(((activation_level(z, layer.alpha, BITS) == trace.levels[k]) | at_tie).all()), k
            x = trace.levels[k] * float(layer.alpha) / T
    snn = snn_forward(net, ds.x_test)
    assert torch.equal(snn.counts[0], trace.levels[0])  # constant input: no sequential error
    for k in range(1, len(snn.counts)):
        assert float((snn.counts[k] == trace.levels[k]).double().mean()) > 0.6, k
    agree = (snn.out.argmax(1) == trace.out.argmax(1)).double().mean()
    assert agree >= 0.8, float(agree)
    assert (trace.out.argmax(1).numpy() == ds.y_test).mean() > 0.7


def _tiny_skip_net(delay_ok=True) -> Network:
    rng = np.random.default_rng(0)
    c = 3
    conv = [Layer("conv", rng.integers(-9, 10, (c, 1 if i == 0 else c, 3, 3)), rng.integers(-3, 4, c), SignedIF(40),
                  (1 if i == 0 else c, 4, 4), (c, 4, 4), padding=(1, 1)) for i in range(3)]
    conv[2].skips = [Skip(1, "conv", 20 * np.eye(c, dtype=int)[:, :, None, None], (c, 4, 4))]
    out = Layer("dense", rng.integers(-9, 10, (5, c * 16)), np.zeros(5, int), Accumulator(), (c, 4, 4), (5,))
    return Network((1, 4, 4), conv + [out], bits=2, input_max=16)


def test_dense_shortcuts_run_exactly_on_lava(tmp_path, require_lava):
    """Dense shortcuts through netx's weight optimizer: identity (delay 1) and a projection (delay 0)."""
    from fastsnn_lava.lava.runner import run_lava
    rng = np.random.default_rng(1)
    dense = [Layer("dense", rng.integers(-9, 10, (12, 64 if i == 0 else 12)), rng.integers(-3, 4, 12),
                   SignedIF(60 if i == 0 else 20), (64,) if i == 0 else (12,), (12,)) for i in range(3)]
    dense[2].skips = [Skip(1, "dense", 13 * np.eye(12, dtype=int), (12,)),
                      Skip(2, "dense", rng.integers(-7, 8, (12, 12)), (12,))]
    out = Layer("dense", rng.integers(-9, 10, (10, 12)), np.zeros(10, int), Accumulator(), (12,), (10,))
    net = Network((64,), dense + [out], bits=2, input_max=16)
    write_network(net, tmp_path / "d.h5")
    x = load_dataset("digits").x_test[:8].reshape(8, -1)
    out, _ = run_lava(tmp_path / "d.h5", x, progress=False)
    assert np.array_equal(out, run_batches(net, x, snn_forward))


def test_skip_network_file_round_trip_and_reader_checks(tmp_path):
    import h5py
    net = _tiny_skip_net()
    h5 = tmp_path / "s.h5"
    write_network(net, h5)
    back = read_network(h5)
    assert back.equals(net) and back.layers[2].skips[0].source == 1
    with h5py.File(h5, "r") as f:
        g = f["layer/3/skip/0"]
        assert int(g["source"][()]) == 1 and int(g["delay"][()]) == 1 and f["fastsnn/format_version"][()] == 2
    other = _tiny_skip_net()
    other.layers[2].skips[0].weight[0, 0, 0, 0] = 19
    assert not back.equals(other)
    with h5py.File(h5, "r+") as f:
        f["layer/3/skip/0/delay"][()] = 0
    with pytest.raises(FastSNNError, match=r"/layer/3/skip/0: key 'delay' must be 1"):
        read_network(h5)


def test_skip_validation_errors():
    net = _tiny_skip_net()
    with pytest.raises(FastSNNError, match="earlier hidden layer"):
        Network(net.input_shape, [net.layers[0], net.layers[1],
                                  Layer(**{**net.layers[2].__dict__, "skips": [Skip(3, "conv", np.ones((3, 3, 1, 1)),
                                                                                    (3, 4, 4))]}), net.layers[3]], 2)
    with pytest.raises(FastSNNError, match="skip conv weight"):
        Skip(1, "conv", np.ones((2, 3, 1, 1)), (3, 4, 4)).check((3, 4, 4))
    with pytest.raises(FastSNNError, match="dense skip needs a flat"):
        Skip(1, "dense", np.ones((3, 48)), (3, 4, 4)).check((3,))
    with pytest.raises(FastSNNError, match="skip weights from layer 1 .*8-bit"):
        bad = _tiny_skip_net()
        bad.layers[2].skips[0].weight *= 10
        check_network(bad, load_target("loihi2"))


def test_unmodified_netx_refuses_a_file_with_skips(tmp_path, require_lava):
    from lava.lib.dl.netx import hdf5
    from fastsnn_lava.lava.loader import install_neuron_types, load_network
    write_network(_tiny_skip_net(), tmp_path / "s.h5")
    install_neuron_types()
    with pytest.raises(NotImplementedError, match="residual skips"):
        hdf5.Network(net_config=str(tmp_path / "s.h5"), reset_interval=4, reset_offset=1)
    lava_net, _, _ = load_network(tmp_path / "s.h5")
    assert len(lava_net.skip_processes) == 2  # the delay line and the 1×1 conv


@pytest.mark.parametrize("module,message", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10)),
     r"MaxPool2d '2' is not supported: use a stride-2 Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(144, 10)),
     r"Sigmoid '1' is not supported: use nn.ReLU, F.relu or QReLU \(only ReLU activations"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Flatten(),
                   nn.Linear(36, 10)),
     r"AvgPool2d '2' with ceil_mode=True \(a partial window at the border of the 6×6 map\) is not supported"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU()), r"ends in an activation"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10)),
     r"Conv2d '1' after another linear layer without an activation is not supported: put a QReLU"),
])
def test_unsupported_models_name_the_module(module, message):
    with pytest.raises(FastSNNError, match=message):
        convert(module, (1, 8, 8))


def test_shortcut_from_the_input_is_refused():
    class FromInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act, self.fc = nn.Conv2d(1, 1, 3, 1, 1), QReLU(), nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.act(self.conv(x) + x).flatten(1))
    with pytest.raises(FastSNNError, match="shortcut from the network input"):
        convert(FromInput(), (1, 8, 8))


def test_presets_resnet20_and_vgg11_build_convert_and_reload(tmp_path):
    """resnet20 by name: 19 hidden layers + classifier, 9 shortcuts (2 projections); checkpoint round trip."""
    torch.manual_seed(0)
    spec = resolve_arch("resnet20")
    float_net = build_float(spec, (1, 16, 16), 10)
    x = torch.randint(0, 256, (16, 1, 16, 16)).float()
    float_net.train()
    float_net(x / 255)  # BatchNorm statistics
    float_net.eval()
    qann = QuantNet(spec, (1, 16, 16), 10, 2, 255)
    qann.init_from_float(float_net, x)
    net = to_network(qann)
    assert len(net.layers) == 20 and sum(len(layer.skips) for layer in net.layers) == 9
    assert sorted({s.weight.shape[2:] for layer in net.layers for s in layer.skips}) == [(1, 1)]
    assert net.layers[-1].weight.shape == (10, 64 * 4 * 4)  # pooled classifier, codes repeated over H·W
    assert np.array_equal(net.layers[-1].weight[:, ::16], qann.layers[-1].codes(qann.units_in()[-1])[0].numpy())
    check_network(net, load_target("loihi2"))
    path = tmp_path / "r20.pt"
    checkpoint.save(str(path), qann, float_net, {"arch": "resnet20"})
    q2, f2, meta = checkpoint.load(str(path))
    assert to_network(q2).equals(net) and meta["spec"] == spec
    with torch.no_grad():
        assert torch.equal(f2(x[:4] / 255), float_net(x[:4] / 255))
    vgg = resolve_arch("vgg11")
    assert sum(s.get("stride", 1) == 2 for s in vgg) == 5 and all(s["kind"] != "maxpool" for s in vgg)


@pytest.mark.parametrize("arch, projections", [("resnet8", 2), ("resnet8w", 3)])
def test_pipeline_trains_a_resnet_preset_by_name(tmp_path, arch, projections):
    """The by-name path (resolve_arch → build_float → QuantNet → checkpoint → export); no epochs, to stay cheap.
    resnet8w starts every stage with stride 2, so each of its three shortcuts is a projection."""
    from fastsnn_lava.pipeline import export, train
    path = tmp_path / "r8.pt"
    qann, _, meta = train("digits", arch, 2, str(path), epochs=0, qat_epochs=0, progress=False)
    net = export(str(path), str(tmp_path / "r8.h5"))
    assert read_network(tmp_path / "r8.h5").equals(net) and meta["arch"] == arch
    assert sum(len(layer.skips) for layer in net.layers) == 3
    assert sum(skip.stride == (2, 2) for layer in net.layers for skip in layer.skips) == projections


def test_fx_accepts_functional_forms_and_dense_residuals():
    """F.relu, view(size(0), -1), a dense identity shortcut and mean((2, 3)) as global pooling."""
    import torch.nn.functional as F

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc1, self.fc2 = nn.Conv2d(1, 4, 3, 2, 1), nn.Linear(64, 32), nn.Linear(32, 32)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            y = F.relu(self.conv(x))
            h = F.relu(self.fc1(y.view(y.size(0), -1)))
            return self.fc(torch.relu(self.fc2(h) + h))

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, 2, 1), nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).mean((2, 3)))

    x = torch.rand(4, 1, 8, 8)
    for model, spec in [(Functional(), [{"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1},
                                        {"kind": "dense", "out": 32},
                                        {"kind": "dense", "out": 32, "skips": [{"from": 2}]}]),
                        (Pooled(), [{"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1},
                                    {"kind": "avgpool"}])]:
        c = convert(model.eval(), (1, 8, 8))
        assert c.spec == spec
        with torch.no_grad():
            assert torch.allclose(c.float_net(x), model(x), atol=1e-5)
