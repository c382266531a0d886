"""The integer network description validates itself."""
import numpy as np
import pytest

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import Accumulator, SignedIF, UnsignedIF, if_neuron


def dense(n_in, n_out, neuron="signed_if", theta=10):
    record = Accumulator() if neuron == "accumulate" else if_neuron(neuron, theta)
    return Layer("dense", np.ones((n_out, n_in), int), np.zeros(n_out, int), record, (n_in,), (n_out,))


def test_valid_network_and_timesteps():
    net = Network((4,), [dense(4, 3), dense(3, 2, "accumulate")], bits=3)
    assert net.timesteps == 7 and net.layers[0].v_init == 5 and net.output_shape == (2,)
    assert net.with_neuron("unsigned_if").layers[0].neuron == UnsignedIF(10)
    assert net.equals(Network((4,), [dense(4, 3), dense(3, 2, "accumulate")], bits=3))
    assert not net.equals(Network((4,), [dense(4, 3, theta=12), dense(3, 2, "accumulate")], bits=3))


@pytest.mark.parametrize("make,message", [
    (lambda: dense(4, 3, theta=7), "even positive"),
    (lambda: Layer("dense", np.ones((3, 5)), np.zeros(3), SignedIF(10), (4,), (3,)), "does not match"),
    (lambda: Layer("dense", np.full((3, 4), 0.5), np.zeros(3), SignedIF(10), (4,), (3,)), "non-integer"),
    (lambda: Layer("pool", np.ones((3, 4)), np.zeros(3), SignedIF(10), (4,), (3,)), "not supported"),
    (lambda: Layer("conv", np.ones((2, 1, 3, 3)), np.zeros(2), SignedIF(10), (1, 8, 8), (2, 8, 8),
                   stride=2, padding=1), "geometry"),
    (lambda: Network((4,), [dense(4, 3), dense(3, 2)], bits=2), "only the last layer accumulates"),
    (lambda: Network((5,), [dense(4, 3), dense(3, 2, "accumulate")], bits=2), "expects input"),
    (lambda: Network((4,), [dense(4, 3), dense(3, 2, "accumulate")], bits=9), "bits"),
])
def test_invalid_descriptions_are_refused(make, message):
    with pytest.raises(FastSNNError, match=message):
        make()
