"""--format nir: the CUBA network as a NIR graph.

The file reads back equal (nir.read); what NIR cannot hold (the signed/unsigned IF, residual
networks, leaky or delayed LIF layers) is refused in one line; and a real NIR consumer, Norse
(``norse.torch.from_nir``), runs the exported graph on the digits test set with exactly the
integers of the project's LIF reference (``run_lif_batches``), which equals Lava (tests/test_cuba.py).
"""
import os
import re
from dataclasses import replace
import warnings

import nir
import numpy as np
import pytest
import torch

from fastsnn_lava.cli.export import main as export_main
from fastsnn_lava.data import load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.formats.nir_graph import RESIDUAL, VOLTAGE_SCALE, to_nir, write_nir
from fastsnn_lava.lif import lif_forward, run_lif_batches
from fastsnn_lava.neuron import NEVER_FIRES, Accumulator, CubaLIF, SignedIF
from fastsnn_lava.pipeline import convert, export
from fastsnn_lava.runtime import cpu_threads


def _norse():
    """norse.torch (the peer), or a skip (a failure under FASTSNN_STRICT=1, as CI runs)."""
    try:
        import norse.torch
        return norse.torch
    except ImportError:
        if os.environ.get("FASTSNN_STRICT") == "1":
            pytest.fail("required in CI: norse (pip install -e '.[test]')")
        pytest.skip("norse is not installed (pip install -e '.[test]')")


def run_norse(graph, x: np.ndarray, timesteps: int) -> np.ndarray:
    """Norse's import of ``graph`` on the raw samples ``x`` (B, *input_shape): each sample on its own
    (NIR shapes have no batch axis; Norse maps Flatten(start_dim=0) onto torch.nn.Flatten(0, -1)), held
    for ``timesteps`` steps from a fresh state; returns the read-out node's membrane v after the last step."""
    norse = _norse()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch.load's DeprecationWarning
        module = norse.from_nir(graph)
    node = graph.metadata["readout_node"]
    out = []
    with torch.no_grad(), cpu_threads(1):  # one sample at a time: threads only add overhead
        for sample in x:
            xi, state = torch.as_tensor(np.asarray(sample, dtype=np.float32)), None
            for _ in range(timesteps):
                _, state = module(xi, state)
            out.append(state.state[node][0].v.reshape(-1).numpy())
    return np.array(out, dtype=np.float64)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_nir_file_reads_back_equal(trained, tmp_path, arch):
    path = tmp_path / "net.nir"
    lif = export(str(trained(arch, 2)[3]), str(path), neuron="cuba", format="nir")
    g, want = nir.read(str(path)), to_nir(lif)
    assert {k: type(n).__name__ for k, n in g.nodes.items()} == {k: type(n).__name__ for k, n in want.nodes.items()}
    assert g.edges == want.edges
    chain = {"mlp": ["flatten1", "affine1", "if1", "affine2", "if2", "affine3"],
             "cnn": ["conv1", "if1", "conv2", "if2", "conv3", "if3", "flatten4", "affine4", "if4", "affine5"]}[arch]
    assert g.edges == list(zip(["input"] + chain + ["readout"], chain + ["readout", "output"]))
    flat = g.nodes["flatten4" if arch == "cnn" else "flatten1"]
    assert (int(flat.start_dim), int(flat.end_dim)) == (0, -1)  # NIR shapes have no batch axis
    hidden, kinds = len(lif.layers) - 1, ["conv" if layer.kind == "conv" else "affine" for layer in lif.layers]
    for i, layer in enumerate(lif.layers, start=1):
        syn = g.nodes[f"{kinds[i - 1]}{i}"]
        assert syn.weight.dtype.kind == "i" and syn.bias.dtype.kind == "i"
        assert np.array_equal(syn.weight.reshape(layer.weight.shape), layer.weight)
        assert np.array_equal(syn.bias, layer.bias)
        if layer.kind == "conv":
            assert tuple(syn.stride) == layer.stride and tuple(syn.padding) == layer.padding
            assert tuple(syn.dilation) == layer.dilation and int(syn.groups) == layer.groups
            assert tuple(syn.input_shape) == layer.in_shape[1:]
        neuron = g.nodes[f"if{i}" if i <= hidden else "readout"]
        assert isinstance(neuron, nir.IF) and neuron.v_threshold.shape == layer.out_shape
        assert np.all(neuron.v_threshold == layer.neuron.vth + 0.5) and np.all(neuron.r == 1) and np.all(neuron.v_reset == 0)
    assert lif.layers[-1].neuron.vth == NEVER_FIRES and np.all(g.nodes["readout"].v_threshold == 2 ** 17 - 0.5)
    assert tuple(g.nodes["input"].input_type["input"]) == lif.input_shape
    assert tuple(g.nodes["output"].output_type["output"]) == lif.output_shape
    m = g.metadata
    assert (m["timesteps"], m["dt"], m["lava_voltage_scale"], m["readout"], m["readout_node"], m["bits"]) == \
        (lif.timesteps, 1.0, 64, "voltage", "readout", 2)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_norse_runs_the_export_equal_to_the_lif_reference(trained, tmp_path, digits, arch):
    """The issue asks for >= 99 % agreement; stepping NIR's IF at dt = 1 is Lava's update, so Norse
    gives the reference's integers exactly: every read-out voltage (×64), hence every prediction."""
    path = tmp_path / "net.nir"
    lif = export(str(trained(arch, 2)[3]), str(path), neuron="cuba", format="nir")
    x = digits.x_test
    ref = run_lif_batches(lif, x)
    peer = run_norse(nir.read(str(path)), x, lif.timesteps)
    assert np.array_equal(peer * VOLTAGE_SCALE, ref), np.flatnonzero((peer * VOLTAGE_SCALE != ref).any(1))[:10]
    agreement = float((peer.argmax(1) == ref.argmax(1)).mean())
    assert agreement == 1.0 >= 0.99


def test_norse_matches_at_threshold_ties():
    """A random network whose membranes land exactly on ϑ - 1 and ϑ: v_threshold = vThMant + 1/2 fires as
    Lava's strict v > vThMant << 6 does; conv + per-channel bias, flatten, dense, a never-firing read-out."""
    rng = np.random.default_rng(3)
    conv = Layer("conv", rng.integers(-2, 4, (3, 2, 3, 3)), rng.integers(-2, 3, 3), CubaLIF(2, 4096, 0),
                 (2, 5, 5), (3, 3, 3), stride=(2, 2), padding=(1, 1))
    dense = Layer("dense", rng.integers(-1, 3, (6, 27)), rng.integers(-1, 2, 6), CubaLIF(1, 4096, 0), (3, 3, 3),
                  (6,))
    out = Layer("dense", rng.integers(-3, 4, (4, 6)), rng.integers(-2, 3, 4), CubaLIF(NEVER_FIRES, 4096, 0), (6,),
                (4,))
    net = Network((2, 5, 5), [conv, dense, out], timesteps=7, reset_interval=8, input_max=3)
    x = rng.integers(0, 4, (40, 2, 5, 5))
    ref = run_lif_batches(net, x)
    peer = run_norse(to_nir(net), x, net.timesteps)
    assert np.array_equal(peer * VOLTAGE_SCALE, ref)
    # the ties happen: membranes equal to vThMant (= ϑ - 1, must not fire) and to ϑ (must fire)
    trace = lif_forward(net, x, keep_state=True)
    for k, layer in enumerate(net.layers[:2]):
        u, v = trace.currents[k], trace.voltages[k]
        bias = torch.as_tensor(layer.bias).reshape(-1, 1, 1) if layer.kind == "conv" else torch.as_tensor(layer.bias)
        before = torch.cat([torch.zeros_like(v[:1]), v[:-1]]) + u + 64 * bias  # v before the step's reset
        assert (before == 64 * layer.neuron.vth).any() and (before == 64 * (layer.neuron.vth + 1)).any(), k


def test_cli_writes_nir_and_refuses_the_if_neurons(trained, tmp_path, capsys):
    model, out = str(trained("mlp", 2)[3]), tmp_path / "net.nir"
    assert export_main([model, "--neuron", "cuba", "--format", "nir", "-o", str(out)]) == 0
    assert "as a NIR graph" in capsys.readouterr().out
    assert isinstance(nir.read(str(out)), nir.NIRGraph)
    for neuron, why in (("signed", "-1 spikes and resets by subtracting"), ("unsigned", "resets by subtracting")):
        bad = tmp_path / f"{neuron}.nir"
        args = [model, "--format", "nir", "-o", str(bad)] + (["--neuron", neuron] if neuron != "signed" else [])
        assert export_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"cannot hold the {neuron} IF neuron" in err and why in err, err
        assert "--neuron cuba" in err and not bad.exists()
    assert export_main([model, "--neuron", "cuba", "-o", str(tmp_path / "net.h5")]) == 0  # netx stays the default
    from fastsnn_lava.netx.cuba import is_lif_file
    assert is_lif_file(tmp_path / "net.h5")


def test_signed_if_network_is_refused(trained):
    net = convert(str(trained("mlp", 2)[3]))
    with pytest.raises(FastSNNError, match=r"cannot hold the signed IF neuron: .*-1 spikes") as e:
        to_nir(net)
    assert "\n" not in str(e.value)


def _residual() -> Network:
    hid = Layer("dense", np.eye(4, dtype=int) * 3, np.zeros(4), SignedIF(4), (4,), (4,))
    res = Layer("dense", np.eye(4, dtype=int) * 3, np.zeros(4), SignedIF(4), (4,), (4,),
                skips=[Skip(1, "dense", np.eye(4, dtype=int) * 2, (4,))])
    return Network((4,), [hid, res, Layer("dense", np.ones((2, 4)), np.zeros(2), Accumulator(), (4,), (2,))],
                   bits=2, input_max=3)


def test_residual_network_is_refused():
    with pytest.raises(FastSNNError) as e:
        to_nir(_residual())
    assert str(e.value) == RESIDUAL and "\n" not in RESIDUAL and "residual" in RESIDUAL


def test_residual_checkpoint_is_refused_before_writing(tmp_path):
    from fastsnn_lava.pipeline import train
    model, out = tmp_path / "r8.pt", tmp_path / "r8.nir"
    train("digits", "resnet8", 2, str(model), epochs=1, qat_epochs=1, progress=False, threads=1, train_samples=32)
    with pytest.raises(FastSNNError) as e:
        export(str(model), str(out), neuron="cuba", format="nir")
    assert str(e.value) == RESIDUAL and not out.exists()


def test_lif_layers_nir_cannot_hold_are_refused(tmp_path):
    good = Layer("dense", np.ones((3, 4)), np.zeros(3), CubaLIF(5, 4096, 0), (4,), (3,))
    cases = {"leaky CUBA layer (iDecay 1024, vDecay 0)": replace(good, neuron=CubaLIF(5, 1024, 0)),
             "leaky CUBA layer (iDecay 4096, vDecay 300)": replace(good, neuron=CubaLIF(5, 4096, 300)),
             "synaptic delays": replace(good, delay=np.ones((3, 4))),
             "identity": Layer("identity", None, np.zeros(4), CubaLIF(5, 4096, 0), (4,), (4,))}
    for what, layer in cases.items():
        with pytest.raises(FastSNNError, match=re.escape(what)) as e:
            write_nir(Network((4,), [layer], timesteps=3, reset_interval=4), tmp_path / "x.nir")
        assert "\n" not in str(e.value)
    conv = Layer("conv", np.ones((2, 1, 3, 3)), np.arange(2 * 4 * 4), CubaLIF(5, 4096, 0), (1, 4, 4), (2, 4, 4),
                    padding=(1, 1))
    with pytest.raises(FastSNNError, match="one bias per channel"):
        to_nir(Network((1, 4, 4), [conv], timesteps=3, reset_interval=4))
    uniform = replace(conv, bias=np.repeat([3, -1], 16))  # per neuron but constant per channel: collapsed
    assert list(to_nir(Network((1, 4, 4), [uniform], timesteps=3, reset_interval=4)).nodes["conv1"].bias) == [3, -1]
    assert not (tmp_path / "x.nir").exists()
