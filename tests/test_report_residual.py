"""fastsnn-report on residual networks: shortcut synops, synapses, fan-in and axons counted on the
receiving layer, the JSON still recomputable, and the CLI and plot on an exported resnet8."""
import dataclasses
import json

import numpy as np
import pytest

from fastsnn_lava.activity import measure
from fastsnn_lava.hardware import load_target
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.mapping import map_network
from fastsnn_lava.reference import qann_forward, snn_forward
from fastsnn_lava.report import build_report


def _sibling(name: str):
    """A module of tests/ loaded by path (the suite runs in importlib mode, tests/ is not on sys.path)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(f"fastsnn_test_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_report = _sibling("test_report")
check_recomputable, cli = _report.check_recomputable, _report.cli
_tiny_skip_net = _sibling("test_residual")._tiny_skip_net

C, N = 3, 16  # channels and 4×4 positions of _tiny_skip_net's hidden layers


def _x(n=12):
    return np.random.default_rng(3).integers(0, 17, (n, 1, 4, 4))


def _with_skips(net: Network, skips: list) -> Network:
    layers = list(net.layers)
    layers[2] = dataclasses.replace(layers[2], skips=skips)
    return dataclasses.replace(net, layers=layers)


def _source_events(net, x) -> float:
    """Mean per sample of Σ_t Σ_i |s^1_i(t)|, the skip source's spikes (independent of activity.py)."""
    return float(snn_forward(net, x, keep_spikes=True).spikes[0].abs().sum()) / len(x)


def test_depthwise_identity_skip_counts_one_synop_per_source_spike():
    x = _x()
    depthwise = Skip(1, "conv", 20 * np.ones((C, 1, 1, 1), int), (C, 4, 4), groups=C)
    net = _with_skips(_tiny_skip_net(), [depthwise])
    a, plain = measure(net, x), measure(_with_skips(net, []), x)
    events = _source_events(net, x)
    assert events > 10  # the check below is not vacuous
    assert a[2]["skip_input_events"] == pytest.approx(events) and a[2]["skip_synops"] == pytest.approx(events)
    # the main path into layer 3 (layer 2's spikes) is the same with or without the shortcut
    assert a[2]["input_events"] == pytest.approx(plain[2]["input_events"] + events)
    assert a[2]["synops"] == pytest.approx(plain[2]["synops"] + events)
    assert a[2]["qann_macs"] == plain[2]["qann_macs"] + C * N
    assert all(r["skip_synops"] == 0 and r["skip_input_events"] == 0 for i, r in enumerate(a) if i != 2)


def test_full_identity_skip_counts_its_zeros_and_totals_include_it():
    """_tiny_skip_net's shortcut is a C×C 1×1 conv with codes on the diagonal: C synapses per source neuron."""
    net, x = _tiny_skip_net(), _x()
    a, plain = measure(net, x), measure(_with_skips(net, []), x)
    events = _source_events(net, x)
    assert a[2]["skip_synops"] == pytest.approx(C * events)
    assert a[2]["synops"] - a[2]["skip_synops"] == pytest.approx(plain[2]["synops"])
    nonzero_src = float((qann_forward(net, x).levels[0] != 0).sum()) / len(x)
    assert a[2]["qann_macs_nonzero"] == pytest.approx(plain[2]["qann_macs_nonzero"] + C * nonzero_src)
    rec = build_report(net, x)
    t = rec["totals"]
    assert t["skip_synops"] == pytest.approx(C * events) and t["skip_synapses"] == C * C * N
    assert t["synops"] == pytest.approx(sum(layer["activity"]["synops"] for layer in rec["layers"]))
    assert t["synapses"] == sum(layer["synapses"] for layer in rec["layers"]) == t["qann_macs"]
    assert [layer["skips_from"] for layer in rec["layers"]] == [[], [], [1], []]
    assert rec["estimates"]["loihi2"]["latency_steps"] == net.timesteps + 4  # shortcuts add no pipeline step
    check_recomputable(rec)


def test_dense_skips_count_the_receiving_layer_as_fanout():
    rng = np.random.default_rng(1)
    dense = [Layer("dense", rng.integers(-9, 10, (12, 16 if i == 0 else 12)), rng.integers(-3, 4, 12),
                   SignedIF(40 if i == 0 else 20), (16,) if i == 0 else (12,), (12,)) for i in range(3)]
    dense[2].skips = [Skip(1, "dense", 13 * np.eye(12, dtype=int), (12,)),
                      Skip(2, "dense", rng.integers(-7, 8, (12, 12)), (12,))]
    out = Layer("dense", rng.integers(-9, 10, (5, 12)), np.zeros(5, int), Accumulator(), (12,), (5,))
    net = Network((16,), dense + [out], bits=2, input_max=16)
    x = _x().reshape(-1, 16)
    spikes = snn_forward(net, x, keep_spikes=True).spikes
    events = [float(s.abs().sum()) / len(x) for s in spikes[:2]]
    a = measure(net, x)
    assert a[2]["skip_input_events"] == pytest.approx(sum(events))
    assert a[2]["skip_synops"] == pytest.approx(12 * sum(events))
    m = map_network(net, load_target("loihi2"))["layers"]
    assert (m[2]["synapses"], m[2]["skip_synapses"], m[2]["fan_in"]) == (3 * 144, 2 * 144, 3 * 12)
    assert m[2]["core_inputs"] == 3 * 12  # its own input and the two sources'


def test_mapping_puts_the_skip_synapses_on_the_receiving_cores():
    net = _tiny_skip_net()
    plain = _with_skips(net, [])
    target = load_target("loihi2")
    m, p = map_network(net, target)["layers"], map_network(plain, target)["layers"]
    assert m[2]["synapses"] - p[2]["synapses"] == m[2]["skip_synapses"] == C * C * N
    assert m[2]["fan_in"] - p[2]["fan_in"] == C  # one synapse from each source channel
    assert m[2]["core_inputs"] - p[2]["core_inputs"] == C * N  # the whole 4×4 source feeds the core
    assert m[0]["core_outputs"] == 2 * p[0]["core_outputs"]  # layer 1 also sends to layer 3's core
    assert [x["synapses"] for x in (m[0], m[1], m[3])] == [x["synapses"] for x in (p[0], p[1], p[3])]
    # memory for 16 neurons of 27 synapses holds only 14 of 30: the shortcut's synapses cost a fourth core
    small = {**target, "limits": dict(target["limits"], synaptic_memory_bits_per_core=N * 27 * 8)}
    assert map_network(plain, small)["layers"][2]["cores"] == 3
    tight = map_network(net, small)["layers"][2]
    assert (tight["neurons_per_core"], tight["cores"], tight["limited_by"]) == (14, 4, "synaptic_memory_bits_per_core")


@pytest.fixture(scope="module")
def resnet_report(tmp_path_factory):
    """resnet8 by name, untrained (no epochs), exported and reported through the CLI on 40 digits."""
    from fastsnn_lava.pipeline import export, train
    d = tmp_path_factory.mktemp("resnet_report")
    train("digits", "resnet8", 2, str(d / "r8.pt"), epochs=0, qat_epochs=0, progress=False)
    net = export(str(d / "r8.pt"), str(d / "net.h5"))
    r = cli(d / "net.h5", "--dataset", "digits", "--samples", 40, "--json", d / "r.json", "--plot", d / "r.png")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((d / "r.json").read_text()), net, d, r.stdout


def test_cli_reports_an_exported_resnet(resnet_report):
    rec, net, d, stdout = resnet_report
    skipped = [i for i, layer in enumerate(net.layers) if layer.skips]
    assert len(skipped) == 3 and rec["samples"] == 40 and rec["synaptic_layers"] == len(net.layers)
    for i, layer in enumerate(rec["layers"]):
        assert layer["skips_from"] == [s.source for s in net.layers[i].skips]
        assert (layer["skip_synapses"] > 0) == (i in skipped)
        assert layer["activity"]["qann_macs"] == layer["synapses"]
        assert layer["activity"]["skip_synops"] <= layer["activity"]["synops"]
    assert rec["totals"]["skip_synapses"] == sum(rec["layers"][i]["skip_synapses"] for i in skipped) > 0
    assert rec["totals"]["skip_synops"] > 0 and "shortcut)" in stdout
    assert (d / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (d / "r.png").stat().st_size > 20_000
    check_recomputable(rec)
