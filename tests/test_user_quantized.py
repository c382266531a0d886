"""A user's own quantized layers (issue 29): the layers of Fast-SNN's model code, as look-alikes written for
these tests (``tests/models/paper_like.py``), trained with the user's own QAT loop, convert with their trained
weights and clips.

Each model: ``fx.convert`` captures the weight each layer's F.conv2d/F.linear uses and reads the clip α and bits b
of each activation quantizer from a probe; the converted float network, every activation followed by the user's
staircase, equals the model; ``fx.quantize`` keeps the user's α; the integer network equals the QuantNet's integer
forward pass and the engine's SNN equals the reference (and Lava). What cannot convert is refused in one line
naming the module.
"""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava.convert import to_network
from fastsnn_lava.engine import Engine
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import convert, quantize
from fastsnn_lava.fx_quant import agreement, quantized_float_forward, staircase, weight_steps
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))
import paper_like as pl  # noqa: E402

SHAPE, INPUT_MAX = (1, 8, 8), 16
_TRAINED = {}


def trained(name: str) -> nn.Module:
    """The ResNet-like or VGG-like model at 2 bits after a few steps of the user's own QAT (cached)."""
    if name not in _TRAINED:
        torch.manual_seed(0)
        _TRAINED[name] = pl.train_own_way(pl.ResNetLike() if name == "resnet" else pl.VGGLike())
    return _TRAINED[name]


def raw_inputs(n: int, seed: int) -> torch.Tensor:
    """Integer inputs 0..INPUT_MAX, as the pipeline feeds them (the model sees x / INPUT_MAX)."""
    return torch.randint(0, INPUT_MAX + 1, (n, *SHAPE), generator=torch.Generator().manual_seed(seed)).float()


def act_alphas(model: nn.Module) -> list:
    return [float(m.act_alpha) for m in model.modules() if isinstance(m, pl.ClipQuantReLU)]


@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_the_converted_float_qann_is_the_model(name):
    model = trained(name)
    alphas = act_alphas(model)
    assert max(abs(a - 2.0) for a in alphas) > 1e-3  # the user's training moved the clips
    c = convert(model, SHAPE)  # check_same: layer by layer, the staircases included
    assert c.bits == 2 and c.clips == pytest.approx(alphas, rel=1e-6)
    steps = {u.name: u.weight_steps for u in c.user_layers if u.alpha is None}
    assert len(steps) == 4 and set(steps.values()) <= {3, 127} and 127 in steps.values()
    x = raw_inputs(64, 1) / INPUT_MAX
    with torch.no_grad():
        want, got = model(x), quantized_float_forward(c.float_net, c.clips, c.bits, x)
        plain = c.float_net(x)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-2)  # the staircases matter


def integer_exact(qann, n: int = 64):
    """The integer network of ``qann``: its levels equal the QuantNet's, its SNN the reference's. Returns it."""
    x = raw_inputs(n, 2)
    net = to_network(qann)
    ref = qann_forward(net, x.numpy())
    levels = qann.levels(x)
    assert len(levels) == len(ref.levels) + 1
    assert all(torch.equal(a.double(), b) for a, b in zip(levels, ref.levels))
    assert torch.equal(levels[-1].argmax(1), ref.out.argmax(1))
    snn = run_batches(net, x.numpy(), snn_forward)
    assert np.array_equal(Engine(net, device="cpu").run(x.numpy()), snn)
    return net


@pytest.mark.parametrize("name", ["resnet", "vgg"])
def test_quantize_keeps_the_users_clips_and_the_integer_network_is_exact(name):
    model = trained(name)
    qann, _, spec = quantize(model, SHAPE, 2, INPUT_MAX, raw_inputs(256, 3))
    assert [float(m.alpha) for m in qann.layers if m.hidden] == pytest.approx(act_alphas(model), rel=1e-6)
    integer_exact(qann)
    # the integer grid re-quantizes the BN-folded weights: close to the user's model, not claimed equal
    a = agreement(model, qann, raw_inputs(256, 4), INPUT_MAX)
    assert 0.0 <= a["top1_agreement"] <= 1.0 and a["max_abs_logit_diff"] >= 0.0
    assert a["top1_agreement"] >= 0.5, a


def test_a_quantized_model_runs_on_lava_like_the_reference(tmp_path, require_lava):
    from fastsnn_lava.lava.runner import run_lava
    from fastsnn_lava.netx import write_network
    qann, _, _ = quantize(trained("vgg"), SHAPE, 2, INPUT_MAX, raw_inputs(256, 3))
    net = integer_exact(qann, 16)
    write_network(net, tmp_path / "net.h5")
    x = raw_inputs(4, 5).numpy()
    out, _ = run_lava(tmp_path / "net.h5", x, progress=False)
    assert np.array_equal(out, run_batches(net, x, snn_forward))


def test_weight_grids_are_found_or_reported_as_float():
    w = torch.tensor([-3.0, -1.0, 0.0, 2.0, 3.0]) * 0.37
    assert weight_steps(w) == 3
    assert weight_steps(torch.tensor([0.5, -0.25, 0.125])) == 4
    assert weight_steps(torch.randn(64, generator=torch.Generator().manual_seed(0))) is None
    assert weight_steps(torch.arange(-127.0, 128.0) * 0.01) == 127


def Staircase(fn) -> nn.ReLU:  # noqa: N802 - a class of its own per fn
    """A ReLU subclass whose forward is ``fn``."""
    return type("Staircase", (nn.ReLU,), {"forward": lambda self, x: fn(x)})()


@pytest.mark.parametrize("fn, want", [
    (lambda x: 1.5 * torch.clamp(torch.round(F.relu(x) / 1.5 * 7), max=7) / 7, (1.5, 3)),
    (lambda x: torch.clamp(torch.floor(x / 0.5 + 0.5), 0, 1) * 0.5, (0.5, 1)),
    (lambda x: F.relu(x), None),
])
def test_activation_quantizers_are_read_from_a_probe(fn, want):
    got = staircase(Staircase(fn), "q", (4, 3, 3))
    assert got == (pytest.approx(want[0]), want[1]) if want else got is None


def one_line(model: nn.Module, match: str) -> str:
    with pytest.raises(FastSNNError) as e:
        convert(model, SHAPE)
    message = str(e.value)
    assert "\n" not in message and match in message, message
    return message


def test_a_power_of_two_activation_grid_is_refused_naming_why():
    message = one_line(pl.VGGLike(act=pl.PowerOfTwoReLU).eval(), "levels are not equally spaced")
    assert "'features.0.2' (PowerOfTwoReLU" in message and "paper_like.py:" in message
    assert "a spike count k carries k·θ" in message and "use a uniform quantizer" in message


@pytest.mark.parametrize("fn, match", [
    (lambda x: torch.clamp(torch.floor(F.relu(x) * 2), max=3) / 2, "not the staircase"),
    (lambda x: torch.clamp(torch.round(x * 2), -1, 3) / 2, "negative outputs"),
    (lambda x: torch.clamp(torch.round(F.relu(x) * 4), max=4) / 4, "5 levels, not 2^b"),
    (lambda x: torch.sigmoid(x), "neither a ReLU nor"),
])
def test_activations_that_are_no_uniform_staircase_are_refused(fn, match):
    model = pl.VGGLike(act=lambda bits: Staircase(fn)).eval()
    assert "'features.0.2' (Staircase" in one_line(model, match)


def test_a_per_channel_clip_is_refused():
    model = pl.VGGLike(act=lambda bits: pl.ClipQuantReLU(bits, channels=8)).eval()
    with torch.no_grad():
        model.features[0][2].act_alpha.copy_(torch.linspace(1.0, 2.0, 8).view(8, 1, 1))
    one_line(model, "'features.0.2' (ClipQuantReLU")
    one_line(model, "per-channel or per-element clip")


def test_a_layer_with_two_convolutions_is_refused():
    model = pl.VGGLike().eval()
    model.features[1][0] = pl.TwoConvs(8, 8, 3, 2, 1)
    message = one_line(model, "its forward makes 2 F.conv2d calls")
    assert "'features.1.0' (TwoConvs" in message


def test_different_bits_in_different_layers_are_refused():
    message = one_line(pl.VGGLike(bits2=3).eval(), "it quantizes to 3 bits, an earlier layer to 2")
    assert "'features.1.2' (ClipQuantReLU" in message


def test_a_quantizer_that_passes_the_probe_but_not_the_model_is_caught_by_the_layer_check():
    """Equal on constant inputs (the probe), different on real ones: the layer-by-layer check names it."""
    def fn(x):
        return 2 * torch.clamp(torch.round(F.relu(x) / 2 * 3), max=3) / 3 + 0.5 * (x - x.mean((2, 3), keepdim=True))

    model = pl.VGGLike(act=lambda bits: Staircase(fn) if bits == 3 else pl.ClipQuantReLU(bits), bits2=3).eval()
    one_line(model, "something else than the model at the activation 'features.1.2' (hidden layer 2")


def test_a_quantized_average_pool_converts_as_a_pooling_layer_with_the_users_clip():
    """QuantAvg (average pooling, then the activation quantizer) between two stages: a hidden layer whose main
    term is the pooling's depthwise convolution (fastsnn_lava.fx_maps), with the user's clip."""
    torch.manual_seed(0)
    model = pl.VGGLike()
    model.features.insert(1, pl.QuantAvg(2, alpha=1.5))
    model.classifier = pl.Int8Linear(8 * 4, 10)
    model = pl.train_own_way(model)
    c = convert(model, SHAPE)
    assert c.clips[1] == pytest.approx(float(model.features[1].act.act_alpha), rel=1e-6)
    assert c.spec[1].get("groups") == 8 and c.spec[1]["stride"] == 2
    qann, _, _ = quantize(model, SHAPE, 2, INPUT_MAX, raw_inputs(256, 3))
    integer_exact(qann)


def test_a_global_quantized_average_pool_before_the_classifier():
    """AvgPool2d(8) then the quantizer, then the classifier: the pooled values are quantized again, which
    needs a layer of its own after the global pooling."""
    torch.manual_seed(0)
    model = pl.train_own_way(pl.ResNetLike(pool=pl.QuantAvg(8)))
    c = convert(model, SHAPE)
    assert c.clips[-1] == pytest.approx(float(model.pool.act.act_alpha), rel=1e-6)
    integer_exact(quantize(model, SHAPE, 2, INPUT_MAX, raw_inputs(256, 3))[0])


def test_the_training_path_starts_from_the_users_clips():
    """fastsnn-train --model on a quantized model: after its float phase (none here) the QANN's clips are the
    user's act_alpha, not calibrated percentiles."""
    from fastsnn_lava.data import load_dataset
    from fastsnn_lava.training import train
    model = trained("vgg")
    spec = convert(model, SHAPE).spec
    qann, _, _ = train(load_dataset("digits"), spec, 2, epochs=0, qat_epochs=0, progress=False, model=model)
    assert [float(m.alpha) for m in qann.layers if m.hidden] == pytest.approx(act_alphas(model), rel=1e-6)
