"""No silent wrong result (issue 30, items 3 and 4): a backend that disagrees with the reference is an
error, and after fine-tuning every accuracy says which QANN it compares with."""
import dataclasses
import json


import numpy as np
import pytest

from fastsnn_lava.cli import run
from fastsnn_lava.data import balanced_subset, load_dataset
from fastsnn_lava.pipeline import convert, diagnose, evaluate, export, finetune
from fastsnn_lava.reference import qann_forward, run_batches


def test_lava_differing_from_the_reference_exits_3_with_one_line_and_keeps_the_record(trained, tmp_path, capsys,
                                                                                      monkeypatch):
    from fastsnn_lava.lava import isolated
    h5, js = tmp_path / "net.h5", tmp_path / "out.json"
    export(str(trained("mlp", 2)[3]), str(h5))
    real = isolated.run

    def off_by_one(function, path, x, **kw):  # Lava as if it had mis-computed one integer of sample 3
        out, info = real(function, path, x, **kw)
        out = out.copy()
        out[3, 7] += 1
        return out, info
    monkeypatch.setattr(isolated, "run", off_by_one)
    code = run.main([str(h5), "--dataset", "digits", "--backend", "lava-sim", "--samples", "8", "--json", str(js),
                     "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fastsnn-run")]
    assert code == 3 and len(err) == 1, err
    assert "sample 3, output 7" in err[0] and "1 of 8 samples" in err[0]
    rec = json.loads(js.read_text())
    assert rec["reference_agreement"] == 7 / 8 and rec["first_difference"]["sample"] == 3
    monkeypatch.setattr(isolated, "run", real)
    assert run.main([str(h5), "--dataset", "digits", "--samples", "8", "--no-progress"]) == 0  # agreeing: 0


def test_after_fine_tuning_each_agreement_names_its_qann(trained, tmp_path):
    model = trained("mlp", 2)[3]
    tuned_pt, h5 = tmp_path / "ft.pt", tmp_path / "ft.h5"
    net, _ = finetune(str(model), str(tuned_pt), method="calibrate", calibrate=64, progress=False)
    export(str(tuned_pt), str(h5))
    ds = load_dataset("digits")
    idx = balanced_subset(ds.y_test, 120)  # what --samples 120 takes
    x, y = ds.x_test[idx], ds.y_test[idx]
    trained_q = run_batches(convert(str(tuned_pt), finetuned=False), x, qann_forward).argmax(1)
    tuned_q = run_batches(convert(str(tuned_pt)), x, qann_forward).argmax(1)
    rec = evaluate(str(h5), "digits", "reference", 120, str(tuned_pt), progress=False)
    assert rec["qann_scope"] == "the trained QANN"
    assert rec["qann_accuracy"] == float((trained_q == y).mean())
    assert rec["tuned_qann_accuracy"] == float((tuned_q == y).mean())
    alone = evaluate(str(h5), "digits", "reference", 120, progress=False)  # no checkpoint: no trained QANN to name
    assert alone["qann_accuracy"] is None and "--model" in alone["qann_scope"]
    assert alone["tuned_qann_accuracy"] == rec["tuned_qann_accuracy"]
    d = diagnose(str(tuned_pt), samples=120, sweep_samples=20)
    assert d["qann_accuracy"] == float((trained_q == y).mean())
    assert d["tuned_qann_accuracy"] == float((tuned_q == y).mean())
    assert "tuned_qann_agreement" in d["variants"]["signed_finetuned"]


def test_an_untuned_network_compares_with_its_own_qann(trained, tmp_path):
    h5 = tmp_path / "net.h5"
    export(str(trained("mlp", 2)[3]), str(h5))
    rec = evaluate(str(h5), "digits", "reference", 50, progress=False)
    assert rec["qann_scope"] == "the trained QANN" and rec["qann_accuracy"] is not None
    assert "tuned_qann_accuracy" not in rec and rec["first_difference"] is None


def _conv_net(code: int, theta: int = 2000, bits: int = 2):
    from fastsnn_lava.ir import Layer, Network
    from fastsnn_lava.neuron import Accumulator, SignedIF
    return Network((1, 3, 3), [
        Layer("conv", np.full((1, 1, 3, 3), code), np.zeros(1, dtype=np.int64), SignedIF(theta), (1, 3, 3), (1, 1, 1)),
        Layer("dense", np.ones((2, 1), dtype=np.int64), np.zeros(2, dtype=np.int64), Accumulator(), (1, 1, 1), (2,)),
    ], bits=bits, input_max=255)


def test_cuba_export_narrows_a_first_layer_and_refuses_a_hidden_current_that_would_wrap():
    """The issue's case: 3×3 codes 60 on 255-valued pixels give a_in = 137,700 > 2^17 per step, which Lava's
    CUBA current (a_in·2^6 in 24 bits) would wrap: the first layer is divided by 2 (codes 30, θ/2 halved,
    recorded as cuba_first_shift) and fits; codes 57 (130,815 ≤ 2^17) map as they are. A hidden layer's
    current has no such way out (its inputs are spikes): refused, naming the layer and the register."""
    from fastsnn_lava.cuba import to_cuba
    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.ir import Layer, Network
    from fastsnn_lava.lif import run_lif_batches
    from fastsnn_lava.neuron import Accumulator, SignedIF
    lif = to_cuba(_conv_net(60))
    assert lif.meta["cuba_first_shift"] == 1 and (lif.layers[0].weight == 30).all()
    assert lif.layers[0].neuron.vth + 1 == 2000 // 4  # ϑ = θ/2 of the halved θ
    assert "cuba_first_shift" not in to_cuba(_conv_net(57)).meta
    assert (to_cuba(_conv_net(57)).layers[0].weight == 57).all()
    x = np.full((1, 1, 3, 3), 255)
    assert run_lif_batches(lif, x)[0, 0] > 0  # the brightest image fires: no wrap
    wide = Network((4,), [
        Layer("dense", np.ones((1100, 4), dtype=np.int64), np.zeros(1100, dtype=np.int64), SignedIF(2), (4,), (1100,)),
        Layer("dense", np.full((3, 1100), 120), np.zeros(3, dtype=np.int64), SignedIF(2), (1100,), (3,)),
        Layer("dense", np.ones((2, 3), dtype=np.int64), np.zeros(2, dtype=np.int64), Accumulator(), (3,), (2,)),
    ], bits=2, input_max=15)
    with pytest.raises(FastSNNError, match=r"layer 2 \(dense\): neuron 0's input current can reach 132000 .*24-bit "
                       "CUBA current register"):
        to_cuba(wide)


def _saturating_and_unbounded(currents, neuron):
    """Spikes of Lava's CUBA step (:func:`lif.cuba_step`, v saturating at ±(2^23 − 1)) and of the same
    neuron in unbounded integers, under ``currents`` (steps, n); and the unbounded membrane's lowest value."""
    import torch

    from fastsnn_lava.lif import cuba_step
    n = currents.shape[1]
    u = v = unbounded = torch.zeros(n, dtype=torch.int64)
    spikes, free, lowest = [], [], unbounded
    for a in currents:
        u, v, s = cuba_step(u, v, a, neuron, torch.zeros(n, dtype=torch.int64))
        unbounded = unbounded + 64 * a
        lowest = torch.minimum(lowest, unbounded)
        fired = unbounded > 64 * neuron.vth
        unbounded = torch.where(fired, 0, unbounded)
        spikes.append(s)
        free.append(fired.long())
    return torch.stack(spikes), torch.stack(free), lowest


def test_a_saturating_voltage_exports_to_netx_and_is_refused_for_nir():
    """Lava's 24-bit voltage saturates, and the reference saturates alike, so the netx export keeps a hidden
    layer whose membrane falls below the register and climbs back (its spikes then differ from unbounded
    arithmetic's); NIR's IF has no register, so --format nir refuses that layer, naming it, and accepts one
    that cannot climb back (its spikes equal the unbounded ones). The first layer is never refused (its
    current is the same at every step: a falling membrane never fires, saturated or not)."""
    import torch

    from fastsnn_lava.cuba import to_cuba
    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.formats.nir_graph import check
    from fastsnn_lava.ir import Layer, Network
    from fastsnn_lava.neuron import Accumulator, SignedIF
    lif = to_cuba(_conv_net(-57, theta=2 ** 16, bits=8))  # 255 steps of −130,815 saturate v
    check(lif)
    x = np.random.default_rng(0).integers(0, 256, (64, 9))
    w = np.full(9, -57)
    w[::2] = 40  # some images rise, most fall far below the register
    first = dataclasses.replace(lif.layers[0], weight=w.reshape(1, 1, 3, 3))
    spikes, free, lowest = _saturating_and_unbounded(torch.as_tensor(x @ w).expand(255, 64), first.neuron)
    assert (lowest < -(2 ** 23)).any() and spikes.sum() > 0 and torch.equal(spikes, free)

    def hidden(ups: int):  # 16 inputs of code −127 and `ups` of +127 into a hidden neuron, 255 steps
        w = np.array([[-127] * 16 + [127] * ups])
        return Network((9,), [
            Layer("dense", np.ones((16 + ups, 9), dtype=np.int64), np.zeros(16 + ups, dtype=np.int64), SignedIF(200),
                  (9,), (16 + ups,)),
            Layer("dense", w, np.zeros(1, dtype=np.int64), SignedIF(2), (16 + ups,), (1,)),
            Layer("dense", np.ones((2, 1), dtype=np.int64), np.zeros(2, dtype=np.int64), Accumulator(), (1,), (2,)),
        ], bits=8, input_max=255)
    gen = np.random.default_rng(1)
    for ups, nir_ok in ((12, False), (2, True)):
        net = to_cuba(hidden(ups))  # the netx export keeps both
        s_in = torch.as_tensor(gen.random((255, 256, 16 + ups)) < np.linspace(0.0, 0.5, 256)[None, :, None]).long()
        s_in[:70, :, :16], s_in[:70, :, 16:], s_in[70:, :, 16:] = 1, 0, 1  # 70 steps down (saturating), then up
        spikes, free, lowest = _saturating_and_unbounded(s_in @ torch.as_tensor(net.layers[1].weight[0]),
                                                         net.layers[1].neuron)
        assert (lowest < -(2 ** 23)).all() and (spikes.sum() > 0) != nir_ok
        assert torch.equal(spikes, free) == nir_ok  # climbing back from the floor, it fires earlier than unbounded
        if nir_ok:
            check(net)
        else:
            with pytest.raises(FastSNNError, match=r"layer 2 \(dense\): the CUBA voltage could fall to .*24-bit "
                               r"register saturates.*NIR's IF has no such register.*--format netx"):
                check(net)


def test_every_hardware_field_about_messages_and_delays_is_enforced(tmp_path):
    """graded_spike_bits carries the raw inputs and the ±1 spikes, delay_bits every shortcut's delay:
    a network that needs more is refused, naming the field's target and what it needs."""
    import dataclasses

    import yaml

    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.hardware import check_network, input_message_bits, load_target
    from fastsnn_lava.ir import Layer, Network, Skip
    from fastsnn_lava.neuron import Accumulator, SignedIF
    net = _conv_net(3)
    check_network(net, load_target("loihi2"))
    with pytest.raises(FastSNNError, match="loihi1 carries 0-bit graded spikes.*signed"):
        check_network(net, load_target("loihi1"))  # Loihi 1 spikes are binary: no −1, no graded input
    assert input_message_bits(255) == 8 and input_message_bits(1000) == 10
    cfg = yaml.safe_load(open(load_target("loihi2")["path"]))
    cfg["limits"]["graded_spike_bits"]["value"] = 9
    (tmp_path / "g9.yaml").write_text(yaml.safe_dump(cfg))
    check_network(net, load_target(str(tmp_path / "g9.yaml")))
    with pytest.raises(FastSNNError, match="10-bit messages for its raw inputs"):
        check_network(dataclasses.replace(net, input_max=1000), load_target(str(tmp_path / "g9.yaml")))
    rng = np.random.default_rng(0)
    chain = [Layer("dense", rng.integers(1, 5, (4, 4)), np.zeros(4, dtype=np.int64), SignedIF(8), (4,), (4,))
             for _ in range(3)]
    chain[2] = dataclasses.replace(chain[2], skips=[Skip(1, "dense", rng.integers(1, 5, (4, 4)), (4,))])
    chain.append(Layer("dense", np.ones((2, 4), dtype=np.int64), np.zeros(2, dtype=np.int64), Accumulator(),
                       (4,), (2,)))
    deep = Network((4,), chain, bits=2, input_max=3)
    check_network(deep, load_target("loihi2"))  # the shortcut 1 → 3 waits one step
    cfg["limits"]["delay_bits"]["value"] = 1
    (tmp_path / "d1.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FastSNNError, match="layer 3: the shortcut from layer 1 waits 1 steps.*1-bit synaptic delay"):
        check_network(deep, load_target(str(tmp_path / "d1.yaml")))


def test_weight_exp_bits_is_enforced(tmp_path):
    """weight_exp_bits holds the exponent netx gives a dense synapse: code 1 alone is scaled by 2^7
    (exponent −7), which a 3-bit exponent field ([−4, 3]) cannot hold; loihi2's 4 bits can."""
    import yaml

    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.hardware import check_network, load_target
    from fastsnn_lava.ir import Layer, Network
    from fastsnn_lava.neuron import Accumulator, SignedIF
    net = Network((4,), [Layer("dense", np.ones((3, 4), dtype=np.int64), np.zeros(3, dtype=np.int64), SignedIF(4),
                               (4,), (3,)),
                         Layer("dense", np.full((2, 3), 100), np.zeros(2, dtype=np.int64), Accumulator(),
                               (3,), (2,))], bits=2, input_max=3)
    check_network(net, load_target("loihi2"))
    cfg = yaml.safe_load(open(load_target("loihi2")["path"]))
    cfg["limits"]["weight_exp_bits"]["value"] = 3
    (tmp_path / "e3.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FastSNNError, match=r"layer 1: netx encodes these weights with exponent -7.*\[-4, 3\]"):
        check_network(net, load_target(str(tmp_path / "e3.yaml")))
