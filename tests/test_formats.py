"""One network description, one handler per file format: detection, write → read round trips, precise refusals."""
import dataclasses

import numpy as np
import pytest

from fastsnn_lava import formats
from fastsnn_lava.cuba import to_cuba
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.lif import lif_forward
from fastsnn_lava.neuron import Accumulator, CubaLIF, SignedIF, UnsignedIF


def if_net(skips: bool = False) -> Network:
    rng = np.random.default_rng(4)
    conv = Layer("conv", rng.integers(-9, 10, (3, 1, 3, 3)), rng.integers(-3, 4, 3), SignedIF(40), (1, 4, 4),
                 (3, 4, 4), padding=1)
    hid = Layer("conv", rng.integers(-9, 10, (3, 3, 3, 3)), rng.integers(-3, 4, 3), UnsignedIF(20), (3, 4, 4),
                (3, 2, 2), stride=2, padding=1)
    out = Layer("dense", rng.integers(-9, 10, (5, 12)), rng.integers(-3, 4, 5), Accumulator(), (3, 2, 2), (5,))
    if skips:
        hid = dataclasses.replace(hid, stride=(1, 1), out_shape=(3, 4, 4),
                                  skips=[Skip(1, "conv", 7 * np.eye(3, dtype=int)[:, :, None, None], (3, 4, 4))])
        out = dataclasses.replace(out, weight=rng.integers(-9, 10, (5, 48)), in_shape=(3, 4, 4))
    return Network((1, 4, 4), [conv, hid, out], bits=2, input_max=15, meta={"arch": "test"})


def cuba_net() -> Network:
    return to_cuba(if_net().with_neuron("signed_if"), "half")


@pytest.mark.parametrize("name,make", [("netx-if", lambda: if_net(True)), ("netx-if", if_net),
                                       ("netx-cuba", cuba_net), ("nir", cuba_net)])
def test_each_handler_reads_back_what_it_wrote_and_is_detected(name, make, tmp_path):
    net, path = make(), tmp_path / f"net.{name}"
    formats.write(net, path, name)
    assert formats.detect(path).name == name
    back = formats.read(path)
    assert back.equals(net) and back.family == net.family
    assert (back.timesteps, back.reset_interval, back.bits) == (net.timesteps, net.reset_interval, net.bits)
    assert [layer.neuron for layer in back.layers] == [layer.neuron for layer in net.layers]


def test_a_file_of_no_known_format_gets_the_netx_readers_precise_error(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"not an hdf5 file")
    assert formats.detect(path) is formats.DEFAULT
    with pytest.raises(FastSNNError, match="x.h5"):
        formats.read(path)
    with pytest.raises(FastSNNError, match="unknown format 'onnx'"):
        formats.by_name("onnx")


@pytest.mark.parametrize("name,make,message", [
    ("netx-if", cuba_net, "netx IF file .* needs a network of IF neurons .*; this one has CUBA LIF neurons"),
    ("netx-cuba", if_net, "vanilla CUBA netx file .* needs a network of CUBA LIF neurons"),
    ("nir", if_net, "--format nir cannot hold the signed IF neuron"),
    ("nir", lambda: if_net(True), "--format nir cannot hold a residual network"),
])
def test_each_handler_refuses_what_its_format_cannot_hold_before_writing(name, make, message, tmp_path):
    with pytest.raises(FastSNNError, match=message):
        formats.write(make(), tmp_path / "x", name)
    assert not (tmp_path / "x").exists()


def test_a_cuba_network_refuses_the_if_only_operations_by_name():
    cuba, ifn = cuba_net(), if_net()
    assert cuba.family == "cuba" and ifn.family == "if" and cuba.readout == "voltage" and ifn.readout == "sum"
    for op, what in [(lambda: cuba.with_neuron("unsigned_if"), "--neuron signed/unsigned"),
                     (lambda: to_cuba(cuba), "--neuron cuba"),
                     (lambda: formats.by_name("netx-if").check(cuba), "the netx IF file")]:
        with pytest.raises(FastSNNError, match=f"^{what}.* needs a network of IF neurons"):
            op()
    with pytest.raises(FastSNNError, match="^the CUBA LIF reference .* needs a network of CUBA LIF neurons"):
        lif_forward(ifn, np.zeros((1, 1, 4, 4)))


@pytest.mark.parametrize("make,message", [
    (lambda: Network((4,), [Layer("dense", np.ones((3, 4)), np.zeros(3), SignedIF(2), (4,), (3,)),
                            Layer("dense", np.ones((2, 3)), np.zeros(2), CubaLIF(5, 0, 0), (3,), (2,))], bits=2),
     "mix IF and CUBA"),
    (lambda: Network((4,), [Layer("dense", np.ones((2, 4)), np.zeros(2), Accumulator(), (4,), (2,))]),
     "needs its activation bits"),
    (lambda: Network((4,), [Layer("dense", np.ones((2, 4)), np.zeros(2), Accumulator(), (4,), (2,))], bits=2,
                     timesteps=4), "has timesteps 3, got 4"),
    (lambda: Network((4,), [Layer("dense", np.ones((2, 4)), np.zeros(2), CubaLIF(5, 0, 0), (4,), (2,))], bits=2),
     "needs its timesteps and reset_interval"),
    (lambda: Network((4,), [Layer("dense", np.ones((2, 4)), np.zeros(2), CubaLIF(5, 0, 0), (4,), (2,))],
                     timesteps=4, reset_interval=3), "reset interval 3 are not valid"),
    (lambda: Network((4,), [Layer("dense", np.ones((4, 4)), np.zeros(4), CubaLIF(5, 0, 0), (4,), (4,)),
                            Layer("identity", None, np.zeros(4), CubaLIF(5, 0, 0), (4,), (4,))],
                     timesteps=4, reset_interval=4), "only the first layer"),
    (lambda: Layer("identity", None, np.zeros(4), SignedIF(2), (4,), (4,)), "layer kind 'identity'"),
    (lambda: Layer("dense", np.ones((2, 4)), np.zeros(2), SignedIF(2), (4,), (2,), delay=np.ones((2, 4))),
     "an IF layer has none"),
    (lambda: Layer("dense", np.ones((2, 4)), np.zeros(2), CubaLIF(5, 0, 0), (4,), (2,),
                   skips=[Skip(1, "dense", np.ones((2, 2)), (2,))]), "no residual skips"),
    (lambda: Layer("conv", np.ones((2, 1, 1, 1)), np.zeros(3), CubaLIF(5, 0, 0), (1, 2, 2), (2, 2, 2)),
     "fits neither the channels"),
    (lambda: Layer("dense", np.ones((2, 4)), np.zeros(2), "signed_if", (4,), (2,)), "neuron 'signed_if'"),
])
def test_invalid_network_descriptions_are_refused_precisely(make, message):
    with pytest.raises(FastSNNError, match=message):
        make()
