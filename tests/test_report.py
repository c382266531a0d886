"""fastsnn-report: JSON and PNG, estimates recomputable from the JSON, the mapping's limits."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.hardware import check_network, load_target
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.mapping import map_network
from fastsnn_lava.pipeline import export, report


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.report", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cnn_report(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    h5 = d / "net.h5"
    export(str(trained("cnn", 2)[3]), str(h5))
    r = cli(h5, "--dataset", "digits", "--hw", "loihi2", "--json", d / "r.json", "--plot", d / "r.png")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((d / "r.json").read_text()), d, r.stdout


def test_report_json_png_and_summary(cnn_report):
    rec, d, stdout = cnn_report
    assert (d / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (d / "r.png").stat().st_size > 20_000
    assert rec["samples"] == 360 and rec["timesteps"] == 3 and rec["synaptic_layers"] == len(rec["layers"])
    for layer in rec["layers"]:
        assert layer["cores"]["loihi2"] >= 1 and layer["synapses"] >= layer["neurons"]
        assert layer["activity"]["neuron_updates"] == layer["neurons"] * 3
    hidden = rec["layers"][:-1]
    assert sum(layer["activity"]["spikes_pos"] for layer in hidden) > 0
    assert rec["totals"]["spikes_neg"] == pytest.approx(sum(l["activity"]["spikes_neg"] for l in rec["layers"]))
    for name in ("loihi2", "loihi1", "qann_baseline"):
        est = rec["estimates"][name]
        assert est["label"].startswith("estimate") and all(c["source"] for c in est["constants"].values())
    assert 0.9 <= rec["accuracy"]["snn"] <= 1 and "loihi2 (estimate)" in stdout


def test_energy_and_latency_recomputed_from_json(cnn_report):
    check_recomputable(cnn_report[0])


def check_recomputable(rec: dict) -> None:
    """Dynamic energy, latency, throughput, QANN energy and their ratio recomputed from the JSON alone."""
    est = rec["estimates"]["loihi2"]
    c = {k: v["value"] for k, v in est["constants"].items()}
    dyn = sum(l["activity"]["synops"] * c["energy_per_synop_pj"]
              + l["activity"]["neuron_updates"] * c["energy_per_neuron_update_pj"]
              + l["activity"]["input_events"] * c["energy_per_spike_pj"] for l in rec["layers"])
    assert est["dynamic_energy_uj"] == pytest.approx(dyn * 1e-6, rel=1e-12)
    T = rec["timesteps"]
    step = max(l["activity"]["synops"] / (T * l["cores"]["loihi2"]) * c["time_per_synop_ns"]
               + l["neurons_per_core"]["loihi2"] * c["time_per_neuron_update_ns"] for l in rec["layers"])
    step += c["barrier_ns"]
    assert est["latency_us"] == pytest.approx((T + rec["synaptic_layers"]) * step * 1e-3, rel=1e-12)
    assert est["throughput_per_s"] == pytest.approx(1e9 / (rec["reset_interval"] * step), rel=1e-12)
    assert est["static_energy_uj"] == pytest.approx(c["static_power_w"] * rec["reset_interval"] * step * 1e-3, rel=1e-12)
    assert est["cores"] == sum(l["cores"]["loihi2"] for l in rec["layers"])
    q = rec["estimates"]["qann_baseline"]
    qc = {k: v["value"] for k, v in q["constants"].items()}
    e_q = sum(l["activity"]["qann_macs"] * qc["energy_per_mac_pj"] + l["activity"]["qann_adds"] * qc["energy_per_add_pj"]
              for l in rec["layers"])
    assert q["energy_uj"] == pytest.approx(e_q * 1e-6, rel=1e-12)
    proxy = (rec["layers"][0]["activity"]["synops"] * qc["energy_per_mac_pj"]
             + sum(l["activity"]["synops"] for l in rec["layers"][1:]) * qc["energy_per_add_pj"])
    assert q["snn_compute_only_proxy_uj"] == pytest.approx(proxy * 1e-6, rel=1e-12)
    assert rec["ratio_qann_over_loihi2"]["dynamic"] == pytest.approx(q["energy_uj"] / est["dynamic_energy_uj"])


def test_synops_equal_events_times_fanout_on_a_dense_net():
    net = Network((4,), [Layer("dense", [[2, -1, 0, 3], [1, 1, 1, 1]], [0, 0], SignedIF(4), (4,), (2,)),
                         Layer("dense", [[1, -1]], [0], Accumulator(), (2,), (1,))], bits=2, input_max=3)
    from fastsnn_lava.activity import measure
    from fastsnn_lava.reference import snn_forward
    x = np.array([[3, 0, 1, 2]])
    a = measure(net, x)
    assert a[0]["input_events"] == 3 * 3 and a[0]["synops"] == 3 * 3 * 2  # 3 nonzero inputs × T, fan-out 2
    s = snn_forward(net, x, keep_spikes=True).spikes[0]
    assert a[1]["input_events"] == float(s.abs().sum()) and a[1]["synops"] == float(s.abs().sum())
    assert a[0]["spikes_pos"] == float((s > 0).sum()) and a[0]["spikes_neg"] == float((s < 0).sum())


def oversized(n_in=5000):
    return Network((n_in,), [Layer("dense", np.ones((16, n_in)), np.zeros(16), SignedIF(2 ** 16), (n_in,), (16,)),
                             Layer("dense", np.ones((2, 16)), np.zeros(2), Accumulator(), (16,), (2,))],
                   bits=2, input_max=1)


def test_oversized_layers_are_rejected_naming_layer_and_limit():
    with pytest.raises(FastSNNError, match=r"layer 1 \(dense, 16 neurons\).*5000 distinct inputs.*fan_in_per_core"):
        check_network(oversized(), load_target("loihi2"))
    conv = Network((512, 8, 8), [
        Layer("conv", np.ones((4, 512, 3, 3)), np.zeros(4), SignedIF(2 ** 14), (512, 8, 8), (4, 8, 8), padding=1),
        Layer("dense", np.ones((2, 256)), np.zeros(2), Accumulator(), (4, 8, 8), (2,))], bits=1, input_max=1)
    with pytest.raises(FastSNNError, match=r"layer 1 \(conv.*fan_in_per_core.*fewer input channels"):
        check_network(conv, load_target("loihi2"))
    m = map_network(oversized(4000), load_target("loihi1"))  # fits: 4000 axons ≤ 4096
    assert m["cores"] == 2 and m["chips"] == 1


def test_big_layer_is_split_over_cores():
    net = Network((64,), [Layer("dense", np.ones((20000, 64)), np.zeros(20000), SignedIF(2 ** 10), (64,), (20000,)),
                          Layer("dense", np.ones((2, 20000)), np.zeros(2), Accumulator(), (20000,), (2,))],
                  bits=2, input_max=1)
    with pytest.raises(FastSNNError, match=r"layer 2 .*20000 distinct inputs"):
        map_network(net, load_target("loihi2"))
    first = map_network(Network((64,), net.layers[:1] + [
        Layer("dense", np.ones((2, 20000)), np.zeros(2), Accumulator(), (20000,), (2,))], bits=2), {
        **load_target("loihi2"), "limits": dict(load_target("loihi2")["limits"], fan_in_per_core=10 ** 6)})
    l1 = first["layers"][0]
    assert l1["cores"] == -(-20000 // l1["neurons_per_core"]) and l1["neurons_per_core"] <= 8192


def test_report_on_npy_input_and_bad_input(trained, tmp_path):
    h5 = tmp_path / "c.h5"
    export(str(trained("mlp", 2)[3]), str(h5), neuron="cuba")
    from fastsnn_lava.data import load_dataset
    np.save(tmp_path / "x.npy", load_dataset("digits").x_test[:20])
    rec = report(str(h5), input_path=str(tmp_path / "x.npy"), json_path=str(tmp_path / "r.json"))
    assert rec["samples"] == 20 and "accuracy" not in rec and rec["neuron"] == ["cuba", "cuba (read-out voltage)"]
    assert all(l["activity"]["spikes_neg"] == 0 for l in rec["layers"])  # CUBA spikes are binary
    np.save(tmp_path / "bad.npy", np.zeros((3, 7)))
    r = cli(h5, "--input", tmp_path / "bad.npy")
    assert r.returncode == 2 and "expected integer inputs of shape (N, 1, 8, 8)" in r.stderr and "Traceback" not in r.stderr


def test_report_reads_a_slayer_network(lavadl_mnist_net, tmp_path):
    x = np.random.default_rng(0).integers(0, 2, (8, 784))
    np.save(tmp_path / "x.npy", x)
    rec = report(str(lavadl_mnist_net), input_path=str(tmp_path / "x.npy"), steps=8)
    assert [l["kind"] for l in rec["layers"]] == ["identity", "dense", "dense", "dense"]
    assert rec["totals"]["synapses"] == 784 + 784 * 512 + 512 * 512 + 512 * 10


def test_backend_loihi2_says_what_is_missing(require_lava, trained, tmp_path):
    h5 = tmp_path / "net.h5"
    export(str(trained("mlp", 2)[3]), str(h5))
    r = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.run", str(h5), "--backend", "loihi2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "lava-loihi" in r.stderr and "Traceback" not in r.stderr
