"""Reliability: fuzzed files meet only the project's own error, overflow is caught (signals: test_signals.py)."""

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsnn_lava import checkpoint
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.hardware import check_network, load_target, membrane_bounds
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.netx import read_network, write_network


def small_net():
    rng = np.random.default_rng(0)
    return Network((1, 4, 4), [
        Layer("conv", rng.integers(-9, 10, (2, 1, 3, 3)), rng.integers(-5, 6, 2), SignedIF(40), (1, 4, 4),
              (2, 2, 2), stride=2, padding=1),
        Layer("dense", rng.integers(-9, 10, (3, 8)), rng.integers(-5, 6, 3), Accumulator(), (2, 2, 2), (3,)),
    ], bits=2, input_max=15)


@pytest.fixture(scope="module")
def good_h5(tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "good.h5"
    write_network(small_net(), p)
    return p


def corrupted(good, out, cut, flips):
    """``good``'s bytes truncated at ``cut`` (mod length) with ``flips`` (position, byte) applied, at ``out``."""
    raw = bytearray(good.read_bytes())
    raw = raw[:cut % (len(raw) + 1)]
    for pos, val in flips:
        if raw:
            raw[pos % len(raw)] = val
    out.write_bytes(bytes(raw))
    return out


def _datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_mutated_netx_files_give_only_our_error(good_h5, tmp_path, data):
    p = tmp_path / "f.h5"
    p.write_bytes(good_h5.read_bytes())
    with h5py.File(p, "r+") as f:
        names = _datasets(f)
        for _ in range(data.draw(st.integers(1, 3))):
            name = data.draw(st.sampled_from(names))
            if name not in f:
                continue
            action = data.draw(st.sampled_from(["delete", "replace", "scalar", "string"]))
            del f[name]
            if action == "replace":
                shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=4)))
                dtype = data.draw(st.sampled_from([np.int8, np.int64, np.float32, np.float64, np.uint16]))
                f[name] = (np.random.default_rng(0).normal(0, 300, shape)).astype(dtype)
            elif action == "scalar":
                f[name] = data.draw(st.one_of(st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True)))
            elif action == "string":
                f[name] = data.draw(st.text(st.characters(blacklist_characters="\x00"), max_size=12))
    try:
        read_network(p)
    except FastSNNError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(cut=st.integers(0, 10 ** 6), flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                                   max_size=8))
def test_truncated_and_corrupted_netx_bytes(good_h5, tmp_path, cut, flips):
    p = corrupted(good_h5, tmp_path / "f.h5", cut, flips)
    try:
        read_network(p)
    except FastSNNError as e:
        assert str(e) and "\n" not in str(e)


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory):
    from fastsnn_lava.models import QuantNet, build_float
    spec = [{"kind": "dense", "out": 8}]
    p = tmp_path_factory.mktemp("ck") / "m.pt"
    checkpoint.save(p, QuantNet(spec, (1, 4, 4), 3, 2, 15), build_float(spec, (1, 4, 4), 3), {"dataset": "x"})
    return p


@FUZZ
@given(cut=st.integers(0, 10 ** 6), flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                                   max_size=6))
def test_truncated_and_corrupted_checkpoints(good_ckpt, tmp_path, cut, flips):
    p = corrupted(good_ckpt, tmp_path / "m.pt", cut, flips)
    try:
        checkpoint.load(p)
    except FastSNNError as e:
        assert str(e) and "\n" not in str(e)


def test_membrane_overflow_is_caught_at_export():
    net = Network((784,), [Layer("dense", np.full((4, 784), 127), np.zeros(4), SignedIF(1000), (784,), (4,)),
                           Layer("dense", np.ones((2, 4)), np.zeros(2), Accumulator(), (4,), (2,))],
                  bits=4, input_max=255)
    assert membrane_bounds(net)[0] == 1000 + 15 * 784 * 127 * 255
    with pytest.raises(FastSNNError, match=r"layer 1 .*membrane could reach .*24-bit state"):
        check_network(net, load_target("loihi2"))
    check_network(small_net(), load_target("loihi2"))  # a small one passes
