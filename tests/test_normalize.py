"""Input normalisation folded into the first layer: exact, padding included (normalize.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava import checkpoint
from fastsnn_lava.data import load_dataset
from fastsnn_lava.models import QuantNet, build_float, resolve_arch
from fastsnn_lava.normalize import InputNorm

NORM = {"mean": [0.45, 0.5, 0.55], "std": [0.2, 0.25, 0.3]}


def _random_bn(net):
    torch.manual_seed(1)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return net.eval()


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_fold_is_exact(arch):
    """Float ANN on (x/255 − μ)/σ (its InputNorm pads raw zeros) vs the QuantNet's first layer
    on raw x/255 with zero padding: equal up to float32 rounding (relative 1e-6)."""
    spec = resolve_arch(arch)
    float_net = _random_bn(build_float(spec, (3, 8, 8), 10, NORM))
    assert isinstance(float_net[0], InputNorm)
    x = torch.randint(0, 256, (64, 3, 8, 8)).float()
    qann = QuantNet(spec, (3, 8, 8), 10, 2, 255)
    qann.init_from_float(float_net, x)
    layer = qann.layers[0]
    with torch.no_grad():
        z_float = x / 255
        for m in float_net:  # InputNorm, (Flatten,) first conv/dense, its BatchNorm
            z_float = m(z_float)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                break
        z_fold = F.conv2d(x / 255, layer.weight, layer.bias, 1, 1) if arch == "cnn" \
            else F.linear((x / 255).flatten(1), layer.weight, layer.bias)
    err = (z_float - z_fold).abs().max() / z_float.abs().max()
    assert err < 1e-6, err


def test_padding_normalised_zeros_would_not_be_exact():
    """Why InputNorm pads raw zeros itself: padding the *normalised* input with zeros
    differs from the folded layer's raw-zero padding on the border."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    norm = InputNorm(NORM["mean"], NORM["std"])
    x = torch.randint(0, 256, (8, 3, 8, 8)).float() / 255
    std, mean = norm.std.view(1, -1, 1, 1), norm.mean.view(1, -1, 1, 1)
    w2, b2 = w / std, -(w / std * mean).sum((1, 2, 3))
    naive = F.conv2d(norm(x), w, padding=1)
    folded = F.conv2d(x, w2, b2, padding=1)
    exact = F.conv2d(InputNorm(NORM["mean"], NORM["std"], pad=1)(x), w)
    assert torch.allclose(exact, folded, atol=1e-4)
    border = (naive - folded).abs()
    assert border[..., 1:-1, 1:-1].max() < 1e-4 and border.max() > 0.1


def test_checkpoint_keeps_the_normalisation(tmp_path):
    spec = resolve_arch("cnn")
    float_net = _random_bn(build_float(spec, (3, 8, 8), 10, NORM))
    qann = QuantNet(spec, (3, 8, 8), 10, 2, 255)
    x = torch.randint(0, 256, (16, 3, 8, 8)).float()
    qann.init_from_float(float_net, x)
    checkpoint.save(tmp_path / "m.pt", qann, float_net, {"dataset": "x"})
    _, f2, meta = checkpoint.load(tmp_path / "m.pt")
    assert meta["norm"]["std"] == pytest.approx(NORM["std"])
    with torch.no_grad():
        assert torch.equal(float_net(x / 255), f2(x / 255))


def test_digits_has_no_normalisation():
    ds = load_dataset("digits")
    assert ds.norm is None and not isinstance(build_float(resolve_arch("cnn"), ds.input_shape, 10, ds.norm)[0],
                                              InputNorm)


@pytest.mark.parametrize("arch", ["resnet8", "resnet20"])
def test_residual_fold_is_exact(arch):
    """A residual network on a normalised dataset: the float ANN's InputNorm + first convolution +
    BatchNorm equals the QuantNet's folded first layer on raw x/255 with zero padding (relative 1e-6)."""
    spec = resolve_arch(arch)
    float_net = _random_bn(build_float(spec, (3, 8, 8), 10, NORM))
    assert isinstance(next(iter(float_net.children())), InputNorm)
    x = torch.randint(0, 256, (64, 3, 8, 8)).float()
    qann = QuantNet(spec, (3, 8, 8), 10, 2, 255)
    qann.init_from_float(float_net, x)
    layer, first = qann.layers[0], spec[0]
    with torch.no_grad():
        z_float = float_net.bn[0](float_net.syn[0](float_net.norm(x / 255)))
        z_fold = F.conv2d(x / 255, layer.weight, layer.bias, first.get("stride", 1), first.get("padding", 0))
    err = (z_float - z_fold).abs().max() / z_float.abs().max()
    assert err < 1e-6, err


def test_residual_checkpoint_keeps_the_normalisation(tmp_path):
    spec = resolve_arch("resnet8")
    float_net = _random_bn(build_float(spec, (3, 8, 8), 10, NORM))
    qann = QuantNet(spec, (3, 8, 8), 10, 2, 255)
    x = torch.randint(0, 256, (16, 3, 8, 8)).float()
    qann.init_from_float(float_net, x)
    checkpoint.save(tmp_path / "m.pt", qann, float_net, {"dataset": "x"})
    _, f2, meta = checkpoint.load(tmp_path / "m.pt")
    assert meta["norm"]["mean"] == pytest.approx(NORM["mean"])
    with torch.no_grad():
        assert torch.equal(float_net(x / 255), f2(x / 255))


@pytest.mark.parametrize("source", ["imagefolder", "idx"])
def test_residual_net_on_a_normalised_dataset_exports_losslessly_and_runs_on_lava(source, tmp_path, datagen,
                                                                                   require_lava):
    """The paper's setting in miniature: a ResNet on a dataset with mean/std trains, converts, exports
    losslessly (net.h5 = the QANN's integer network) and Lava's outputs equal the reference's."""
    from fastsnn_lava.netx import read_network
    from fastsnn_lava.pipeline import convert, evaluate, export, train
    root = (datagen.imagefolder(tmp_path / "pics", n_per_class=12, channels=3) if source == "imagefolder"
            else datagen.idx_folder(tmp_path / "idx", n_per_class=12))
    name = f"{source}:{root}"
    model, h5 = tmp_path / "r8.pt", tmp_path / "r8.h5"
    _, _, meta = train(name, "resnet8", 2, str(model), epochs=1, qat_epochs=1, progress=False, threads=1)
    assert checkpoint.load(model)[2]["norm"] is not None and meta["arch"] == "resnet8"
    net = export(str(model), str(h5))
    assert read_network(h5).equals(net) and net.equals(convert(str(model)))
    assert any(layer.skips for layer in net.layers)
    ref = evaluate(str(h5), name, "reference", model_path=str(model), progress=False)
    assert ref["qann_accuracy"] == meta["qann_test_accuracy"]
    lava = evaluate(str(h5), name, "lava-sim", 6, progress=False)
    assert lava["reference_agreement"] == 1.0
