"""The simulation kernel's layer loop equals the readable reference, spike for spike and level for level."""
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsnn_lava.bounds import EXACT_BITS, value_bound
from fastsnn_lava.ir import Network
from fastsnn_lava.kernel import Kernel, if_run, level
from fastsnn_lava.reference import qann_forward, snn_forward
from fastsnn_lava.surrogate import if_bptt

_spec = importlib.util.spec_from_file_location("fastsnn_test_netgen", Path(__file__).with_name("netgen.py"))
netgen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netgen)  # the random network builders, shared with test_engine (importlib mode)


def exact_dtypes(net, x) -> list:
    """float32 where the network's values fit 2^24, and float64 always (the values fit 2^53 here)."""
    bound = value_bound(net, net.timesteps, int(np.abs(x).max()))
    return [d for d in (torch.float32, torch.float64) if bound < 2 ** EXACT_BITS[d]]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.double(), b.double())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(netgen.networks(), netgen.skip_networks()), st.booleans(), st.data())
def test_kernel_equals_reference_on_random_networks(case, unfold, data):
    """Dense and conv, signed and unsigned IF, identity and projection skips (dense and conv): the SNN's
    spike trains, counts and outputs and the QANN's levels and outputs are the reference's, in every exact
    dtype, and ``upto`` stops after that many hidden layers."""
    net, x = case
    snn, qann = snn_forward(net, x, keep_spikes=True), qann_forward(net, x)
    hidden = len(net.layers) - 1
    dtypes = exact_dtypes(net, x)
    assert torch.float64 in dtypes
    for dtype in dtypes:
        kernel = Kernel(net, dtype, unfold=unfold)
        xt = kernel.input(x)
        outs = kernel.outputs(xt)
        assert len(outs) == hidden + 1 and all(o.dtype == dtype for o in outs)
        assert all(same(s, r) for s, r in zip(outs[:-1], snn.spikes))
        assert all(same(s.sum(0), n) for s, n in zip(outs[:-1], snn.counts))
        assert same(outs[-1], snn.out)
        levels = kernel.outputs(xt, "qann")
        assert all(same(k, r) for k, r in zip(levels[:-1], qann.levels)) and same(levels[-1], qann.out)
        if hidden:
            upto = data.draw(st.integers(1, hidden))
            assert len(kernel.outputs(xt, upto=upto)) == upto
            assert all(same(a, b) for a, b in zip(kernel.outputs(xt, upto=upto), outs[:upto]))
            assert all(same(a, b) for a, b in zip(kernel.outputs(xt, "qann", upto), levels[:upto]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(netgen.skip_networks(neurons=("signed_if",)))
def test_kernel_hooks_keep_the_integers(case):
    """Substituted codes equal to the network's own (the plain synapse), the surrogate neuron as ``fire``,
    a zero ``shift`` and the level rule as ``quantize`` all give the same integers as the plain loop."""
    net, x = case
    kernel = Kernel(net, torch.float64)
    xt = kernel.input(x)
    outs, levels = kernel.outputs(xt), kernel.outputs(xt, "qann")
    own = {i: (torch.as_tensor(layer.weight, dtype=torch.float64), torch.as_tensor(layer.bias, dtype=torch.float64))
           for i, layer in enumerate(net.layers)}
    plain = kernel.substitute(own)
    assert all(s.plain for s in plain.synapses) and not any(s.plain for s in kernel.synapses)
    assert all(same(a, b) for a, b in zip(plain.outputs(xt), outs))
    assert all(same(a, b) for a, b in zip(plain.outputs(xt, "qann"), levels))
    surrogate = plain.outputs(xt, fire=lambda cur, layer: if_bptt(cur, layer.threshold, layer.signed))
    assert all(same(a, b) for a, b in zip(surrogate, outs))
    shifted = kernel.outputs(xt, shift=lambda i, cur: torch.zeros(cur.shape[2], dtype=cur.dtype))
    assert all(same(a, b) for a, b in zip(shifted, outs))
    seen = []
    rule = kernel.outputs(xt, "qann", quantize=lambda i, acc: seen.append(i) or level(acc, net.layers[i].threshold,
                                                                                     net.timesteps))
    assert seen == list(range(len(net.layers) - 1)) and all(same(a, b) for a, b in zip(rule, levels))


def test_a_bias_shift_moves_every_step_s_current():
    """``shift`` adds δ_c to channel c's current at every step: the same spikes as a bias raised by δ."""
    rng = np.random.default_rng(3)
    layers = [netgen.make_layer("dense", rng.integers(-9, 10, (6, 5)), rng.integers(-9, 10, 6), "signed_if", 20,
                                (5,), (6,)),
              netgen.make_layer("dense", rng.integers(-9, 10, (4, 6)), rng.integers(-9, 10, 4), "signed_if", 20,
                                (6,), (4,)),
              netgen.make_layer("dense", rng.integers(-9, 10, (3, 4)), rng.integers(-9, 10, 3), "accumulate", None,
                                (4,), (3,))]
    net = Network((5,), layers, bits=3, input_max=255)
    x = rng.integers(0, 256, (16, 5))
    delta = torch.tensor([-7.0, 0.0, 3.0, 11.0], dtype=torch.float64)
    raised = dataclasses.replace(net, layers=[layers[0], dataclasses.replace(layers[1], bias=layers[1].bias
                                                                            + delta.long().numpy()), layers[2]])
    kernel = Kernel(net, torch.float64)
    got = kernel.outputs(kernel.input(x), shift=lambda i, cur: delta if i == 1 else None)
    want = snn_forward(raised, x, keep_spikes=True)
    assert all(same(a, b) for a, b in zip(got[:-1], want.spikes)) and same(got[-1], want.out)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500).map(lambda k: 2 * k), st.integers(1, 31), st.integers(0, 2 ** 31), st.booleans())
def test_level_is_the_if_neurons_count_under_a_constant_current(theta, steps, seed, signed):
    """``level(T·I, θ, T)`` is the spike count of T steps of IF neurons under a constant current I (the QANN
    level equals the SNN count without sequential error), ties ``T·I + θ/2 = mθ`` included, in float32
    and float64."""
    rng = np.random.default_rng(seed)
    ties = [(m * theta - theta // 2) // steps for m in range(-1, steps + 2) if (m * theta - theta // 2) % steps == 0]
    cur = np.concatenate([rng.integers(-2 * theta, 2 * theta + 1, 300), ties]).astype(np.float64)
    for dtype in (torch.float32, torch.float64):
        i = torch.as_tensor(cur, dtype=dtype)
        count = if_run(i.expand(steps, len(cur)).contiguous(), theta, signed, False, steps).sum(0)
        got = level(steps * i, theta, steps)
        assert got.dtype == dtype and same(got, count)
