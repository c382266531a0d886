"""No silent approximation (issue 29): random small user models, built from every construct the converter
accepts (tests/modelgen.py: plain float layers, fixed linear maps, the user's own quantized layers), convert
exactly.

For each drawn model and bits b ∈ {1, 2, 3} (the b its quantized layers name, if any):

1. ``fx.convert`` succeeds (it checks the model itself) and its float network computes the model: equal on
   random inputs, every hidden activation followed by the user's b-bit staircase where the model has one
   (``fx_quant.quantized_float_forward``; there a pre-activation within float rounding of a rounding tie may
   round either way, so 3 of 4 samples must agree);
2. ``fx.quantize`` (the user's clips α kept) → ``convert.to_network``: the integer network's QANN pass
   (``reference.qann_forward``) has the QuantNet's own integer levels ``qann.levels(x)`` at every hidden layer,
   exactly, and its integer outputs ``A^L`` are the QuantNet's logits in units of ``u/T``;
3. the engine's spiking network equals the reference SNN (``reference.snn_forward``), exactly;

and a converted float network whose classifier weight is changed is refused by ``fx.check_same``. A model the
generator found is kept as a test at the end.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsnn_lava.convert import to_network
from fastsnn_lava.engine import Engine
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import check_same, convert, quantize
from fastsnn_lava.fx_quant import quantized_float_forward
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward

_spec = importlib.util.spec_from_file_location("fastsnn_test_modelgen", Path(__file__).with_name("modelgen.py"))
modelgen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(modelgen)  # the random model builders (importlib mode)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(shape: tuple, input_max: int, n: int, seed: int) -> np.ndarray:
    """``n`` raw integer inputs 0..input_max (as the pipeline feeds them)."""
    return np.random.default_rng(seed).integers(0, input_max + 1, (n, *shape)).astype(np.int64)


def check_lossless(model: nn.Module, shape: tuple, bits: int, input_max: int, seed: int = 0):
    """Properties 1-3 for one model; returns the integer network."""
    c = convert(model, shape)
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        want, got = model(x), quantized_float_forward(c.float_net, c.clips, c.bits, x)
    close = ((got - want).abs() <= 1e-4 * max(1.0, float(want.abs().max()))).all(1)
    if any(a is not None for a in c.clips):  # the user's staircases: a pre-activation within float rounding
        assert float(close.float().mean()) >= 0.75  # of a rounding tie may round the other way in one sample
    else:
        assert bool(close.all()), float((got - want).abs().max())

    calib = torch.as_tensor(inputs(shape, input_max, 64, seed), dtype=torch.float32)
    qann, _, _ = quantize(model, shape, bits, input_max, calib)
    alphas = [float(m.alpha) for m in qann.layers if m.hidden]
    assert [a for a, clip in zip(alphas, c.clips) if clip is not None] == [  # the user's clips are kept
        pytest.approx(clip, rel=1e-6) for clip in c.clips if clip is not None]
    net = to_network(qann)
    xt = inputs(shape, input_max, 32, seed + 2)
    trace = qann_forward(net, xt)
    levels = qann.levels(torch.as_tensor(xt, dtype=torch.float32))
    assert len(levels) == len(trace.levels) + 1
    for k, ref in enumerate(trace.levels):
        assert torch.equal(levels[k].double(), ref), f"layer {k + 1}"
    T = net.timesteps
    _, _, unit = qann.layers[-1].grid(qann.units_in()[-1])
    assert torch.allclose(levels[-1].double(), trace.out * unit / T, rtol=1e-5, atol=1e-6 * unit)
    assert np.array_equal(Engine(net, device="cpu").run(xt[:8]), run_batches(net, xt[:8], snn_forward))
    return net


@SETTINGS
@given(modelgen.models(), modelgen.BITS, st.sampled_from([15, 255]))
def test_random_user_models_convert_exactly(case, bits, input_max):
    model, shape = case
    check_lossless(model, shape, bits, input_max)


FEW = settings(SETTINGS, max_examples=4, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("construct", modelgen.BODY + modelgen.TO_FLAT, ids=lambda c: c.name)
@FEW
@given(data=st.data(), bits=modelgen.BITS)
def test_every_construct_converts_exactly(construct, data, bits):
    """Each construct of the generator in every run, whatever the random draws above cover."""
    body, to_flat = ([construct], modelgen.TO_FLAT) if construct in modelgen.BODY else (modelgen.BODY, [construct])
    model, shape = data.draw(modelgen.models(body=body, to_flat=to_flat, min_body=1, shapes=tuple(
        s for s in modelgen.INPUT_SHAPES if construct.applies(s))))
    assert construct.name in model.names
    check_lossless(model, shape, bits, 15)


SPELLINGS = [("ACTIVATIONS", s) for s in modelgen.ACTIVATIONS] + [("POOLS", s) for s in modelgen.POOLS] + [
    ("FLATS", s) for s in modelgen.FLATS]


@pytest.mark.parametrize("table, spelling", SPELLINGS, ids=[s for _, s in SPELLINGS])
@FEW
@given(data=st.data(), bits=modelgen.BITS)
def test_every_spelling_converts_exactly(monkeypatch, table, spelling, data, bits):
    """Every spelling of an activation, a global pooling and a flatten, in every run: the generator draws
    only ``spelling`` from its table (a pooling or flatten then makes the map flat)."""
    monkeypatch.setattr(modelgen, table, (spelling,))
    to_flat = {"ACTIVATIONS": modelgen.TO_FLAT, "POOLS": [modelgen.GLOBAL_POOL], "FLATS": [modelgen.FLATTEN]}[table]
    model, shape = data.draw(modelgen.models(to_flat=to_flat, shapes=modelgen.INPUT_SHAPES[:2]))
    check_lossless(model, shape, bits, 15)


FLOAT_MODELS = modelgen.models(body=modelgen.PLAIN_BODY + modelgen.MAPS_BODY,
                               to_flat=modelgen.PLAIN_TO_FLAT + modelgen.MAPS_TO_FLAT, head=modelgen.PLAIN_HEAD)


@settings(SETTINGS, max_examples=40)
@given(FLOAT_MODELS)
def test_a_changed_weight_is_refused_by_check_same(case):
    """The classifier weight whose input feature is largest on ``check_same``'s inputs, moved by 1 % of the
    output scale per unit of that feature: the outputs move that much, and ``check_same`` refuses it."""
    model, shape = case
    net = convert(model, shape).float_net
    check_same(model, net, shape)
    classifier = net.syn[-1] if hasattr(net, "syn") else net[-1]  # a ResidualNet's or a Sequential's last layer
    assert isinstance(classifier, nn.Linear) and classifier.bias is not None
    seen = []
    hook = classifier.register_forward_hook(lambda m, a, out: seen.append((a[0].abs().max(0).values, out)))
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0))  # check_same's inputs
    with torch.no_grad():
        net(x)
    hook.remove()
    feature, out = seen[0]
    scale = max(1.0, float(out.abs().max()))
    with torch.no_grad():
        if float(feature.max()) > 0:
            col = int(feature.argmax())
            classifier.weight[0, col] += 0.01 * scale / float(feature[col])
        else:  # every feature is 0 on these inputs: only the bias reaches the output
            classifier.bias[0] += 0.01 * scale
    with pytest.raises(FastSNNError, match="computes something else than the model"):
        check_same(model, net, shape)


def test_a_global_pooling_made_a_layer_by_a_relu_converts():
    """Found by the generator: a pooling that averages the whole map (here ``AvgPool2d(2)`` of a 2×2 map) followed
    by a ReLU is the depthwise layer ``relu(mean_hw(y))``: it converts exactly (it used to be refused, the message
    blaming "the input or a reshaped value")."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4, 3))
    check_lossless(model.eval(), (1, 4, 4), 2, 15)
    assert convert(model, (1, 4, 4)).spec[1].get("groups") == 4  # the pooling is a depthwise layer of its own


paper_like = modelgen.paper_like  # tests/models/paper_like.py


class TieNet(nn.Module):
    """Found by the generator (a quantized Conv2d without BatchNorm or bias after a clip quantizer), made minimal:
    1-bit activations {0, 1} (α = 1), 1-bit weights {−1, 0, 1}, so the next pre-activation z is an integer and
    the next quantizer (α = 2, one step) rounds z/2: at z = 1 exactly (141 of its 1024 pre-activations here, on any
    machine: small integers) the model's ``torch.round`` (half to even) gives 0 and the integer network's IF neuron
    (v(0) = θ/2: half up) gives 1. ``convert`` accepts it (its layer check lets ties round either way), and the
    converted QANN differs from the model on every sample."""

    def __init__(self):
        super().__init__()
        self.c1, self.a1 = nn.Conv2d(1, 4, 3, 1, 1), paper_like.ClipQuantReLU(1, 1.0)
        self.c2, self.a2 = paper_like.WeightQuantConv2d(4, 4, 1, bias=False, bits=1), paper_like.ClipQuantReLU(1, 2.0)
        with torch.no_grad():
            self.c2.wgt_alpha.fill_(1.0)
        self.fc = nn.Linear(4 * 16, 3)

    def forward(self, x):
        return self.fc(self.a2(self.c2(self.a1(self.c1(x)))).flatten(1))


def test_rounding_ties_the_model_rounds_to_even_are_counted_not_hidden():
    """The IF neuron (v(0) = θ/2) rounds a tie half up; ``torch.round`` rounds it half to even. Where the model's
    quantized values meet quantized weights with commensurate clips, ties are frequent (here 141 of 1024
    pre-activations of the second quantizer): the conversion accepts the model (one IF layer cannot round to even)
    and says how often it happens (``Converted.ties``), which ``fastsnn-export --model`` prints. After a BatchNorm
    (the paper's blocks) no pre-activation ties: 0."""
    torch.manual_seed(0)
    model = TieNet().eval()
    c = convert(model, (1, 4, 4))
    x = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ties = int((model.c2(model.a1(model.c1(x))) == 1.0).sum())
        want, got = model(x), quantized_float_forward(c.float_net, c.clips, c.bits, x)
    assert c.clips == [1.0, 2.0] and c.bits == 1 and ties > 0
    assert not torch.allclose(got, want, atol=1e-5)  # the half-up network differs from the model...
    assert 0 < c.ties < 1  # ...and the conversion says so
    bn = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), paper_like.ClipQuantReLU(1, 1.0), nn.Flatten(),
                       nn.Linear(64, 3)).eval()
    assert convert(bn, (1, 4, 4)).ties == 0.0
