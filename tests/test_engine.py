"""The evaluation engine equals the reference simulation (and Lava) bit for bit."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsnn_lava import engine
from fastsnn_lava.data import balanced_subset, load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Network
from fastsnn_lava.neuron import if_step
from fastsnn_lava.pipeline import convert, evaluate, export
from fastsnn_lava.reference import run_batches, snn_forward

_spec = importlib.util.spec_from_file_location("fastsnn_test_netgen", Path(__file__).with_name("netgen.py"))
netgen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netgen)  # the random network builders, shared with test_kernel (importlib mode)
make_layer, networks, skip_networks = netgen.make_layer, netgen.networks, netgen.skip_networks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.booleans())
def test_engine_equals_reference_on_random_networks(case, unfold):
    net, x = case
    ref = run_batches(net, x, snn_forward)
    out = engine.Engine(net, device="cpu", unfold=unfold).run(x, batch_size=4)
    assert out.dtype == np.int64 and out.shape == ref.shape
    assert np.array_equal(out, ref)


def spec_outputs(net: Network, x: np.ndarray, steps: int) -> np.ndarray:
    """Step-by-step simulation in int64 with the shared IF step: the specification for T' steps."""
    def syn(layer, a):
        t = torch.as_tensor(a, dtype=torch.float64)
        if layer.kind == "dense":
            return (t.reshape(len(a), -1) @ torch.as_tensor(layer.weight, dtype=torch.float64).T).numpy()
        return torch.nn.functional.conv2d(t.reshape(len(a), *layer.in_shape),
                                          torch.as_tensor(layer.weight, dtype=torch.float64), None, layer.stride,
                                          layer.padding, layer.dilation, layer.groups).numpy()
    bias = [l.bias.reshape(1, -1, *([1] * (len(l.out_shape) - 1))) for l in net.layers]
    v = [np.full((len(x), *l.out_shape), l.v_init, dtype=np.int64) for l in net.layers]
    n = [np.zeros_like(a) for a in v]
    for _ in range(steps):
        a = x
        for i, layer in enumerate(net.layers):
            cur = np.rint(syn(layer, a)).astype(np.int64) + bias[i]
            if layer.accumulates:
                v[i] = v[i] + cur
                break
            v[i], n[i], a = if_step(v[i], n[i], cur, layer.threshold, layer.signed)
    return v[-1]


@settings(max_examples=25, deadline=None)
@given(networks(), st.integers(1, 20))
def test_timesteps_override_equals_step_by_step_spec(case, steps):
    net, x = case
    assert np.array_equal(engine.Engine(net, timesteps=steps, device="cpu").run(x), spec_outputs(net, x, steps))


def test_float64_when_float32_cannot_hold_the_values():
    rng = np.random.default_rng(1)
    big = 2 ** 20
    net = Network((6,), [make_layer("dense", rng.integers(-127, 128, (4, 6)), np.zeros(4), "signed_if", 2 * big, (6,),
                                    (4,)),
                         make_layer("dense", rng.integers(-127, 128, (3, 4)), np.zeros(3), "accumulate", None, (4,),
                                    (3,))],
                  bits=3, input_max=big)
    assert engine.exact_dtype(net, 7, big) == torch.float64
    x = rng.integers(0, big, (20, 6))
    assert np.array_equal(engine.run(net, x, device="cpu"), run_batches(net, x, snn_forward))
    small = Network((6,), net.layers, bits=3, input_max=255)
    assert engine.exact_dtype(small, 7, 255) == torch.float32
    # an input beyond input_max switches that batch to float64 rather than losing exactness
    assert np.array_equal(engine.run(small, x, device="cpu"), run_batches(small, x, snn_forward))
    with pytest.raises(FastSNNError, match="2\\^53"):
        engine.exact_dtype(Network((6,), net.layers, bits=3, input_max=2 ** 50), 7, 2 ** 50)


@pytest.mark.parametrize("arch,bits,neuron", [("mlp", 2, "signed"), ("cnn", 2, "signed"), ("cnn", 3, "unsigned")])
def test_engine_equals_reference_on_trained_digits(trained, arch, bits, neuron):
    _, _, _, path = trained(arch, bits)
    net = convert(str(path), neuron)
    x = load_dataset("digits").x_test
    ref = run_batches(net, x, snn_forward)
    assert np.array_equal(engine.run(net, x, batch_size=100), ref)
    assert np.array_equal(engine.Engine(net, unfold=True).run(x), ref)
    assert (ref.argmax(1) == load_dataset("digits").y_test).mean() > 0.8


def test_evaluate_reference_backend_uses_the_engine(trained, tmp_path, monkeypatch):
    _, _, _, path = trained("cnn", 2)
    h5 = tmp_path / "net.h5"
    net = export(str(path), str(h5))
    calls = []
    real = engine.Engine.run
    monkeypatch.setattr(engine.Engine, "run", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    rec = evaluate(str(h5), "digits", "reference", samples=100, progress=False)
    assert calls, "evaluate(backend='reference') did not use the engine"
    ds = load_dataset("digits")
    idx = balanced_subset(ds.y_test, 100)  # --samples N: a class-balanced seeded subset
    x, y = ds.x_test[idx], ds.y_test[idx]
    assert rec["snn_accuracy"] == float((run_batches(net, x, snn_forward).argmax(1) == y).mean())
    assert rec["reference_agreement"] == 1.0


@pytest.mark.usefixtures("require_lava")
@pytest.mark.parametrize("arch,neuron,n", [("mlp", "signed", 24), ("cnn", "unsigned", 8)])
def test_engine_equals_lava(trained, tmp_path, arch, neuron, n):
    from fastsnn_lava.lava.runner import run_lava
    _, _, _, path = trained(arch, 2)
    h5 = tmp_path / "net.h5"
    net = export(str(path), str(h5), neuron=neuron)
    x = load_dataset("digits").x_test[-n:]
    out, _ = run_lava(h5, x, progress=False)
    assert np.array_equal(engine.run(net, x), out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skip_networks(), st.booleans(), st.integers(1, 9))
def test_engine_equals_reference_on_random_residual_networks(case, unfold, steps):
    net, x = case
    tr = snn_forward(net, torch.as_tensor(x), timesteps=steps)
    out = engine.Engine(net, timesteps=steps, device="cpu", unfold=unfold).run(x, batch_size=4)
    assert np.array_equal(out, tr.out.numpy().astype(np.int64))
    counts = []  # the per-layer spike counts the diagnosis reads
    engine.Engine(net, timesteps=steps, device="cpu", unfold=unfold).forward(x, counts)
    assert len(counts) == len(tr.counts)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(counts, tr.counts))


def test_engine_runs_residual_networks_itself(monkeypatch):
    """A residual network no longer falls back to the reference simulation."""
    from fastsnn_lava.ir import Skip
    rng = np.random.default_rng(0)
    conv = [make_layer("conv", rng.integers(-9, 10, (3, 1 if i == 0 else 3, 3, 3)), rng.integers(-3, 4, 3),
                       "signed_if", 40, (1 if i == 0 else 3, 4, 4), (3, 4, 4), padding=(1, 1)) for i in range(3)]
    conv[2].skips = [Skip(1, "conv", 20 * np.eye(3, dtype=int)[:, :, None, None], (3, 4, 4))]
    out = make_layer("dense", rng.integers(-9, 10, (5, 48)), np.zeros(5, int), "accumulate", None, (3, 4, 4), (5,))
    net = Network((1, 4, 4), conv + [out], bits=2, input_max=16)
    x = np.random.default_rng(1).integers(0, 256, (6, *net.input_shape))
    ref = run_batches(net, x, snn_forward)
    monkeypatch.setattr("fastsnn_lava.reference.snn_forward", lambda *a, **k: pytest.fail("fell back"))
    assert np.array_equal(engine.Engine(net, device="cpu").run(x), ref)


@settings(max_examples=60, deadline=None)
@given(theta=st.integers(1, 3000).map(lambda k: 2 * k), steps=st.integers(1, 40), seed=st.integers(0, 2 ** 31),
       signed=st.booleans(), constant=st.booleans())
def test_if_run_equals_the_neuron_step_by_step(theta, steps, seed, signed, constant):
    """The in-place IF kernel (including its unsigned shortcut for constant currents) equals
    ``neuron.if_step`` for currents below, around and above θ, negative ones included."""
    rng = np.random.default_rng(seed)
    shape = (steps, 64) if not constant else (64,)
    cur = torch.as_tensor(rng.integers(-2 * theta, 2 * theta + 1, shape), dtype=torch.float32)
    out = engine.if_run(cur, theta, signed, constant, steps)
    v, n = torch.full((64,), float(theta // 2)), torch.zeros(64)
    for t in range(steps):
        v, n, s = if_step(v, n, cur if constant else cur[t], theta, signed)
        assert torch.equal(out[t], s.float()), f"step {t}"
