"""The IF step rule: closed form under constant input, signed-spike invariants, sequential error."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsnn_lava.neuron import constant_input_count, if_step


def simulate(currents, theta, signed):
    v = np.full(currents.shape[1:], theta // 2, dtype=np.int64)
    n = np.zeros_like(v)
    spikes = []
    for cur in currents:
        v, n, s = if_step(v, n, cur, theta, signed)
        spikes.append(s)
    return v, n, np.array(spikes)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(theta=st.integers(1, 500).map(lambda h: 2 * h), bits=st.integers(1, 5),
       current=st.integers(-2000, 2000), signed=st.booleans())
def test_constant_input_matches_closed_form_quantizer(theta, bits, current, signed):
    T = 2 ** bits - 1
    _, n, s = simulate(np.full((T, 1), current), theta, signed)
    expected = min(max((T * current + theta // 2) // theta, 0), T)
    assert n[0] == expected == constant_input_count(np.array([current]), theta, T)[0]
    assert s.sum() == n[0]


def test_ties_round_half_up():
    # T·I + θ/2 lands exactly on a multiple of θ: T·I/θ = k + 1/2 rounds up to k + 1
    theta, T = 10, 3
    current = 5  # T·I/θ = 1.5
    _, n, _ = simulate(np.full((T, 1), current), theta, signed=True)
    assert n[0] == 2


@settings(max_examples=200, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10 ** 6), bits=st.integers(1, 4))
def test_signed_invariants_on_random_input(seed, bits):
    rng = np.random.default_rng(seed)
    T, theta = 2 ** bits - 1, 2 * int(rng.integers(1, 50))
    currents = rng.integers(-3 * theta, 3 * theta, size=(T, 64))
    _, n, s = simulate(currents, theta, signed=True)
    assert np.all((n >= 0) & (n <= T))
    assert np.array_equal(s.sum(0), n)
    assert set(np.unique(s)) <= {-1, 0, 1}
    # a −1 only retracts a spike already sent: the running count never goes negative
    assert np.all(np.cumsum(s, axis=0) >= 0)


def test_signed_reduces_sequential_error():
    """Time-varying input with a known mean: the signed neuron tracks the quantized mean better."""
    rng = np.random.default_rng(0)
    theta = 100
    for bits in (2, 3, 4):
        T = 2 ** bits - 1
        mean = rng.integers(-50, 150, size=20000)
        currents = mean + rng.normal(0, 100, size=(T, 20000)).round().astype(np.int64)
        currents -= (currents.sum(0) - T * mean) // T  # keep Σ_t I(t) ≈ T·mean
        target = constant_input_count(currents.sum(0) / T, theta, T)
        err = {}
        for signed in (False, True):
            _, n, _ = simulate(currents, theta, signed)
            err[signed] = np.abs(n - np.floor(target)).mean()
        assert err[True] < err[False], (bits, err)


def test_numpy_and_torch_give_the_same_step():
    rng = np.random.default_rng(1)
    v = rng.integers(-50, 50, 100)
    n = rng.integers(0, 3, 100)
    cur = rng.integers(-80, 80, 100)
    a = if_step(v, n, cur, 40, True)
    b = if_step(torch.tensor(v, dtype=torch.float64), torch.tensor(n, dtype=torch.float64),
                torch.tensor(cur, dtype=torch.float64), 40, True)
    for x, y in zip(a, b):
        assert np.array_equal(x, y.numpy())


@pytest.mark.parametrize("signed", [True, False])
def test_no_plus_and_minus_in_one_step(signed):
    rng = np.random.default_rng(2)
    v = np.full(1000, 20)
    n = np.zeros(1000, dtype=np.int64)
    for _ in range(20):
        v2, n2, s = if_step(v, n, rng.integers(-100, 100, 1000), 40, signed)
        assert np.all(np.abs(n2 - n) <= 1) and np.array_equal(n2 - n, s)
        v, n = v2, n2


def test_typed_neurons_validate_their_parameters_and_compare_by_value():
    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.neuron import NEVER_FIRES, Accumulator, CubaLIF, SignedIF, UnsignedIF, if_neuron
    assert SignedIF(4) == if_neuron("signed_if", 4) != UnsignedIF(4) and Accumulator() == Accumulator()
    assert (SignedIF(4).signed, UnsignedIF(4).signed, Accumulator().accumulates) == (True, False, True)
    assert Accumulator().threshold is None and CubaLIF(3, 4096, 0).threshold is None
    assert CubaLIF(NEVER_FIRES, 0, 0).never_fires and not CubaLIF(NEVER_FIRES - 1, 0, 0).never_fires
    assert {SignedIF(2).family, Accumulator().family, CubaLIF(1, 0, 0).family} == {"if", "cuba"}
    for bad in (lambda: SignedIF(3), lambda: UnsignedIF(0), lambda: SignedIF(-2), lambda: SignedIF(2.5)):
        with pytest.raises(FastSNNError, match="even positive integer"):
            bad()
    for bad in (lambda: CubaLIF(5, 4097, 0), lambda: CubaLIF(5, 0, -1)):
        with pytest.raises(FastSNNError, match="must lie in 0..4096"):
            bad()
    with pytest.raises(FastSNNError, match="'cuba' is not supported"):
        if_neuron("cuba", 2)
    with pytest.raises(Exception):  # frozen: θ cannot change behind a validated layer's back
        SignedIF(4).threshold = 6
