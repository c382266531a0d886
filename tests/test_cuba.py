"""--neuron cuba: a vanilla netx network that stock netx runs, equal to the LIF reference on every sample."""
import subprocess
import sys

import numpy as np
import pytest

from fastsnn_lava.cuba import to_cuba
from fastsnn_lava.data import load_dataset
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.lif import run_lif_batches
from fastsnn_lava.neuron import CubaLIF
from fastsnn_lava.netx.cuba import is_lif_file, read_lif_network, write_lif_network
from fastsnn_lava.pipeline import convert, export
from fastsnn_lava.reference import qann_forward, run_batches

SAMPLES = 32


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_cuba_export_on_stock_netx_equals_lif_reference(require_lava, trained, tmp_path, arch):
    from fastsnn_lava.lava.vanilla import run_vanilla
    h5 = tmp_path / "cuba.h5"
    lif = export(str(trained(arch, 2)[3]), str(h5), neuron="cuba")
    assert is_lif_file(h5)
    x = load_dataset("digits").x_test[:SAMPLES]
    ref = run_lif_batches(read_lif_network(h5), x)
    assert np.array_equal(ref, run_lif_batches(lif, x))  # the file holds exactly the converted network
    out, info = run_vanilla(h5, x)
    mismatched = np.flatnonzero(~(out == ref).all(1))
    assert mismatched.size == 0, f"samples {mismatched[:10]} differ from the LIF reference"
    assert info["steps_per_sample"] == lif.timesteps + len(lif.layers)


def test_stock_netx_builds_lif_blocks_without_the_project(require_lava, trained, tmp_path):
    h5 = tmp_path / "cuba.h5"
    export(str(trained("mlp", 2)[3]), str(h5), neuron="cuba")
    code = ("from lava.lib.dl.netx import hdf5\n"
            f"net = hdf5.Network(net_config={str(h5)!r}, input_message_bits=8, reset_interval=4, reset_offset=1)\n"
            "print(len(net), {type(b.neuron).__name__ for b in net.layers})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip().splitlines()[-1] == "3 {'LIFReset'}"


def test_lif_reference_matches_lava_with_leaks(require_lava, tmp_path):
    """Decays other than the export's (current and voltage leak, small threshold) stay bit-exact."""
    from fastsnn_lava.lava.vanilla import run_vanilla
    rng = np.random.default_rng(1)
    w1, w2 = 2 * rng.integers(-30, 31, (12, 6)), 2 * rng.integers(-30, 31, (4, 12))
    net = Network((6,), [Layer("dense", w1, rng.integers(-20, 21, 12), CubaLIF(90, 1024, 300), (6,), (12,)),
                         Layer("dense", w2, rng.integers(-5, 6, 4), CubaLIF(40, 2048, 100), (12,), (4,))],
                  timesteps=7, reset_interval=8, input_max=15)
    h5 = tmp_path / "leaky.h5"
    write_lif_network(net, h5)
    x = rng.integers(0, 16, (12, 6))
    ref = run_lif_batches(net, x)
    assert ref.sum() > 0, "the test network should spike"
    out, _ = run_vanilla(h5, x)
    assert np.array_equal(out, ref)


def test_lif_reference_matches_lava_where_a_voltage_saturates_and_climbs_back(require_lava, tmp_path):
    """Layer 2's membrane falls below Lava's 24-bit voltage register (48 inputs of −127 firing every step)
    and climbs back once 64..96 inputs of +127 fire every step too (their current persists, iDecay 8, so
    they fire ever more often): the saturating reference equals Lava spike for spike, and where it saturated
    and climbed back it fires sooner than unbounded arithmetic would (the saturated membrane is
    ``64·k + 1``, above the unbounded one)."""
    import torch

    from fastsnn_lava.ir import reset_window
    from fastsnn_lava.lava.vanilla import run_vanilla
    from fastsnn_lava.lif import lif_forward
    w1 = np.r_[np.full(48, 60), np.ones(96, dtype=np.int64)].reshape(-1, 1)  # 48 fast inputs, 96 slow ones
    w2 = np.stack([np.r_[np.full(48, -127), np.where(np.arange(96) < n, 127, 0)] for n in (64, 72, 80, 96)])
    net = Network((1,), [Layer("dense", w1, np.zeros(144, dtype=np.int64), CubaLIF(120, 8, 0), (1,), (144,)),
                         Layer("dense", w2, np.zeros(4, dtype=np.int64), CubaLIF(3000, 4096, 0), (144,), (4,))],
                  timesteps=120, reset_interval=reset_window(120), input_max=3)
    h5 = tmp_path / "saturating.h5"
    write_lif_network(net, h5)
    x = np.array([[1], [2], [3]])
    tr = lif_forward(net, x, keep_spikes=True, keep_state=True)
    saturated = (tr.voltages[1] == -(2 ** 23 - 1)).any(0)
    free = torch.as_tensor(np.cumsum(tr.currents[1].numpy(), 0))  # 64·Σ a_in: the unbounded membrane until a spike
    first_free = torch.where((free > 64 * 3000).any(0), (free > 64 * 3000).int().argmax(0), len(free))
    first = torch.where(tr.counts[1] > 0, tr.spikes[1].argmax(0), len(free))
    assert (saturated & (first < first_free)).any() and not saturated.all()  # (unbounded: later or never)
    out, _ = run_vanilla(h5, x)
    assert np.array_equal(out, run_lif_batches(net, x))


def test_cuba_accuracy_close_to_qann(trained):
    """The lossy mapping (reset to zero, no -1 spikes, no θ/2) stays close to the QANN on digits."""
    net = convert(str(trained("mlp", 2)[3]))
    ds = load_dataset("digits")
    q = run_batches(net, ds.x_test, qann_forward).argmax(1)
    agree = {m: float((run_lif_batches(to_cuba(net, m), ds.x_test).argmax(1) == q).mean())
             for m in ("theta", "half", "bias")}
    assert agree["half"] >= 0.9, agree
    assert agree["half"] >= agree["theta"], agree


def test_cuba_output_bound_is_checked():
    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.neuron import Accumulator, SignedIF
    net = Network((100,), [Layer("dense", np.full((8, 100), 100), np.zeros(8), SignedIF(40), (100,), (8,)),
                           Layer("dense", np.full((2, 8), 127), np.zeros(2), Accumulator(), (8,), (2,))],
                  bits=8, input_max=255)
    with pytest.raises(FastSNNError, match=r"layer 2 \(output\).*never-firing"):
        to_cuba(net)


def test_slayer_mnist_export_is_read(lavadl_mnist_net):
    """lava-dl's own slayer-exported MNIST network (input neuron, default output neuron) is read and simulated."""
    path = lavadl_mnist_net
    net = read_lif_network(path, timesteps=8)
    assert [layer.kind for layer in net.layers] == ["identity", "dense", "dense", "dense"]
    assert net.readout == "voltage" and net.layers[1].neuron == CubaLIF(80, net.layers[1].neuron.i_decay, 123)
    out = run_lif_batches(net, np.random.default_rng(0).integers(0, 2, (4, 784)))
    assert out.shape == (4, 10)
