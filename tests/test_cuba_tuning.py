"""Tandem fine-tuning through Lava's CUBA LIF (issue 25, part 1): the forward is the exported CUBA network
exactly, the acceptance rule holds, the codes stay exportable, and the command-line chain
finetune --target cuba → export --neuron cuba → run --backend lava-sim is lossless on Lava."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.cli.export import main as export_cli
from fastsnn_lava.cli.finetune import main as finetune_cli
from fastsnn_lava.cli.run import main as run_cli
from fastsnn_lava.cuba import check_registers, to_cuba
from fastsnn_lava.data import load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.lif import cuba_step, lif_forward, run_lif_batches
from fastsnn_lava.netx.cuba import read_lif_network
from fastsnn_lava.neuron import CubaLIF
from fastsnn_lava.pipeline import convert, finetune
from fastsnn_lava.surrogate import lif_bptt
from fastsnn_lava.tuning import KEEP, CubaTuner, cuba_tandem, decide, heldout_count
from fastsnn_lava.tuning.distillation import kl, qann_logits

THRESHOLDS = ("theta", "half", "bias")


@pytest.mark.parametrize("vth,steps", [(1, 1), (7, 3), (100, 7), (1001, 15)])
def test_surrogate_lif_spikes_equal_lavas_cuba_step(vth, steps):
    """Forward, :func:`lif_bptt` is the CUBA step of the export's mapping (iDecay 4096, vDecay 0,
    vThMant ϑ − 1) on currents both ways; backward the ramp reaches the currents."""
    gen = torch.Generator().manual_seed(vth + steps)
    cur = torch.randint(-2 * vth - 2, 2 * vth + 2, (steps, 3000), generator=gen)
    s = lif_bptt(cur.double().requires_grad_(), vth)
    u = v = torch.zeros(3000, dtype=torch.int64)
    want = []
    for t in range(steps):
        u, v, st = cuba_step(u, v, cur[t], CubaLIF(vth - 1, 4096, 0), torch.zeros(3000, dtype=torch.int64))
        want.append(st)
    assert torch.equal(s.detach().long(), torch.stack(want)) and s.detach().sum() > 0
    leaf = cur.double().requires_grad_()
    lif_bptt(leaf, vth).sum().backward()
    assert leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_surrogate_lif_saturates_as_lavas_voltage_register(dtype):
    """With ``floor``, :func:`lif_bptt` is Lava's CUBA step where the 24-bit voltage saturates low and climbs
    back (firing one unit of 2^6 earlier than unbounded arithmetic would), in float32 as in float64."""
    from fastsnn_lava.tuning.cuba_tuning import FLOOR
    gen = torch.Generator().manual_seed(3)
    steps, n, vth = 60, 4000, 20001
    drift = torch.linspace(-1, 1, n)
    cur = (torch.randint(-2 ** 17 + 1, 2 ** 17 + 1, (steps, n), generator=gen) // 4
           + torch.where(torch.arange(steps)[:, None] < 20, -60000, 40000 * drift).long())  # down, then up or down
    cur = cur.clamp(-2 ** 17 + 1, 2 ** 17)
    u = v = free = torch.zeros(n, dtype=torch.int64)
    want, unbounded, floored = [], [], torch.zeros(n, dtype=torch.bool)
    for t in range(steps):
        u, v, st = cuba_step(u, v, cur[t], CubaLIF(vth - 1, 4096, 0), torch.zeros(n, dtype=torch.int64))
        floored |= v == -(2 ** 23 - 1)
        free = free + cur[t]
        unbounded.append((free >= vth).long())
        free = torch.where(free >= vth, 0, free)
        want.append(st)
    want, unbounded = torch.stack(want), torch.stack(unbounded)
    assert floored.float().mean() > 0.5 and want.sum() > 0 and not torch.equal(want, unbounded)
    s = lif_bptt(cur.to(dtype), vth, FLOOR)
    assert torch.equal(s.long(), want)
    assert not torch.equal(lif_bptt(cur.double(), vth).long(), want)  # without the floor: unbounded


def _tuner_sums(tuner: CubaTuner, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([tuner.sums(torch.as_tensor(x[i:i + 128])) for i in range(0, len(x), 128)]).numpy()


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_cuba_tuner_forward_is_the_exported_network_bit_for_bit(trained, threshold):
    """2^6 × the tuner's Σ_t I^L is lif_forward's read-out of to_cuba(codes) exactly: as converted, and
    after moving every tuned code (the masters shifted by up to ±3 codes); its gradient reaches them."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    x = load_dataset("digits").x_test[:200]
    tuner = CubaTuner(qann, net, threshold=threshold)
    assert tuner.dtype == torch.float32  # exact: proven by the bounds, not hoped
    sums = _tuner_sums(tuner, x)
    assert np.array_equal(64 * sums.astype(np.int64), lif_forward(to_cuba(net, threshold), x).out.numpy())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tuner.params():
            p.add_(torch.randint(-3, 4, p.shape, generator=gen).to(p.dtype))
    lif = tuner.cuba_network()
    assert not all(a.equals(b) for a, b in zip(lif.layers, to_cuba(net, threshold).layers))
    assert np.array_equal(64 * _tuner_sums(tuner, x).astype(np.int64), run_lif_batches(lif, x))
    tuner.forward(torch.as_tensor(x[:64])).logsumexp(1).sum().backward()
    for w, b in zip(tuner.w, tuner.b):
        assert w.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_cuba_tuner_is_exact_where_a_hidden_voltage_saturates(trained):
    """Codes that drive layer 4's membrane below Lava's 24-bit voltage register (layer 3 fires every step,
    every weight into layer 4's first 64 neurons is −127, 6 steps at --cuba-window 2): to_cuba keeps them,
    the reference saturates there, and the tuner's forward still equals it bit for bit."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    x = load_dataset("digits").x_test[:64]
    tuner = CubaTuner(qann, net, threshold="half", window=2)
    with torch.no_grad():
        tuner.w[1].zero_()
        tuner.b[1].fill_(4095)  # layer 3: the bias alone crosses its threshold every step
        tuner.w[2][:64] = -127
    lif = tuner.cuba_network()
    v4 = lif_forward(lif, x, keep_state=True).voltages[3]
    assert (v4[-1, :, :64] == -(2 ** 23 - 1)).all() and lif_forward(lif, x).counts[3].sum() > 0
    assert np.array_equal(64 * _tuner_sums(tuner, x).astype(np.int64), run_lif_batches(lif, x))


def test_cuba_tuner_is_exact_on_a_narrowed_first_layer(trained):
    """A first layer whose current could wrap Lava's register (the digits cnn's, ×64: the same IF spikes)
    is divided by 2^s by to_cuba; the tuner computes that divided layer: its forward equals lif_forward bit
    for bit under ``half`` and ``bias``, and under ``half`` equals the unscaled network's CUBA read-out (the
    division is exact there; ``bias`` adds ⌊θ/(2T)⌉ of the divided θ)."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    first = net.layers[0]
    big = dataclasses.replace(net, layers=[dataclasses.replace(
        first, weight=64 * first.weight, bias=64 * first.bias,
        neuron=dataclasses.replace(first.neuron, threshold=64 * first.threshold)), *net.layers[1:]])
    x = load_dataset("digits").x_test[:200]
    for mode in ("half", "bias"):
        lif = to_cuba(big, mode)
        assert 1 <= lif.meta["cuba_first_shift"] <= 6
        got = run_lif_batches(lif, x)
        assert np.array_equal(64 * _tuner_sums(CubaTuner(qann, big, threshold=mode), x).astype(np.int64), got)
    assert np.array_equal(run_lif_batches(to_cuba(big, "half"), x), lif_forward(to_cuba(net, "half"), x).out.numpy())


def test_cuba_tandem_keeps_only_what_lowers_the_heldout_kl_and_stays_exportable(trained):
    """Whatever the training did: every verdict is decide()'s, the KL reported for the returned codes is
    their CUBA network's KL measured here (by lif_forward), never above the start's; the first layer and
    the grid are untouched, the codes within the limits, the registers fine, the tuner exact on them."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    x = load_dataset("digits").x_train
    tuned, rep = cuba_tandem(qann, net, x, threshold="bias", epochs=2, checks=3, lr=1.0, progress=False,
                             classifier=True)
    assert rep.target == "cuba" and rep.cuba_threshold == "bias" and len(rep.history) >= 2
    best = start = rep.history[0]["criterion"]
    for check in rep.history[1:]:
        assert check["decision"] == decide(check["criterion"], best, start, False)
        if check["decision"] == KEEP:
            best = check["criterion"]
    assert rep.heldout_kl_after <= rep.heldout_kl_before and (rep.checks_kept > 0) == (rep.codes_changed > 0)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    held = x[perm[:heldout_count(len(x))]]
    tuner = CubaTuner(qann, tuned, threshold="bias", classifier=True)
    z_ref = qann_logits(net, torch.as_tensor(held), tuner.scale, torch.float64)
    lif = to_cuba(tuned, "bias")
    z = tuner.scale * torch.as_tensor(run_lif_batches(lif, held) / 64, dtype=torch.float64)
    assert float(kl(z, z_ref, 1.0)) == pytest.approx(rep.heldout_kl_after, rel=1e-5, abs=1e-9)
    assert tuned.layers[0].equals(net.layers[0])
    for a, b in zip(net.layers, tuned.layers):
        assert a.threshold == b.threshold and a.weight.shape == b.weight.shape
        assert np.abs(b.weight).max() <= 127 and -4096 <= b.bias.min() and b.bias.max() <= 4095
    check_registers(tuned, lif.layers)  # raises if a current could wrap
    assert np.array_equal(64 * _tuner_sums(tuner, held).astype(np.int64), run_lif_batches(lif, held))


def test_codes_the_cuba_neuron_cannot_run_are_never_kept(trained, monkeypatch):
    """A candidate that to_cuba refuses (here: weights beyond the 24-bit current register) simulates to
    None, judged infinitely bad: a run where every candidate is such returns the start unchanged."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    tuner = CubaTuner(qann, net)
    huge = dataclasses.replace(net.layers[2], weight=net.layers[2].weight * 10 ** 4)
    bad = dataclasses.replace(net, layers=[*net.layers[:2], huge, *net.layers[3:]])
    with pytest.raises(FastSNNError, match="current register"):
        to_cuba(bad)
    assert tuner.simulate(bad, load_dataset("digits").x_test[:4]) is None
    monkeypatch.setattr(CubaTuner, "simulate", lambda self, cand, xs: (
        None if not all(a.equals(b) for a, b in zip(cand.layers, net.layers)) else run_lif_batches(
            to_cuba(cand), xs) // 64))
    tuned, rep = cuba_tandem(qann, net, load_dataset("digits").x_train, epochs=1, checks=2, lr=1.0, progress=False)
    assert rep.checks_kept == 0 and all(a.equals(b) for a, b in zip(tuned.layers, net.layers))
    assert all(h["criterion"] == float("inf") for h in rep.history[1:]) and len(rep.history) >= 2


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_cli_chain_finetune_cuba_export_run_on_lava(trained, tmp_path, capsys, require_lava):
    """finetune --target cuba (a non-default mapping) → export --neuron cuba with the same mapping writes
    exactly to_cuba(tuned codes); Lava runs that file equal to lif.run_lif_batches on every sample.
    Exporting it any other way is refused in one line and writes nothing."""
    _, _, _, path = trained("cnn", 2)
    pt, h5 = tmp_path / "cuba.pt", tmp_path / "net.h5"
    assert finetune_cli([str(path), "--target", "cuba", "--cuba-threshold", "theta", "--lr", "1", "--checks", "2",
                         "--no-progress", "-o", str(pt)]) == 0
    assert "through the CUBA LIF, --cuba-threshold theta" in capsys.readouterr().out
    _, _, meta = checkpoint.load(str(pt))
    rec = meta["finetune"]
    assert rec["target"] == "cuba" and rec["cuba_threshold"] == "theta" and rec["method"] == "tandem"
    for argv in (["--neuron", "cuba"], [], ["--neuron", "unsigned"], ["--neuron", "cuba", "--cuba-threshold", "bias"]):
        err = _one_line_error(capsys, export_cli([str(pt), *argv, "-o", str(h5)]))
        assert "--neuron cuba --cuba-threshold theta" in err and not h5.exists()
    assert export_cli([str(pt), "--neuron", "cuba", "--cuba-threshold", "theta", "-o", str(h5)]) == 0
    lif = read_lif_network(h5)
    want = to_cuba(convert(str(pt)), "theta")
    assert all(a.equals(b) for a, b in zip(lif.layers, want.layers))
    x = load_dataset("digits").x_test
    assert rec["snn_test_accuracy"] == float((run_lif_batches(lif, x).argmax(1) == load_dataset("digits").y_test)
                                             .mean())
    out = tmp_path / "run.json"
    assert run_cli([str(h5), "--backend", "lava-sim", "--samples", "12", "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["samples"] == 12 and r["reference_agreement"] == 1.0 and r["first_difference"] is None


@pytest.mark.parametrize("argv,needle", [
    (["--target", "cuba", "--method", "layerwise"], "--target cuba"),
    (["--target", "cuba", "--method", "calibrate"], "--target cuba"),
    (["--target", "cuba", "--calibrate", "16"], "--target cuba"),
    (["--target", "cuba", "--gradient", "qann"], "--target cuba"),
    (["--target", "loihi"], "--target"),
    (["--target", "cuba", "--cuba-threshold", "quarter"], "--cuba-threshold"),
    (["--target", "cuba", "--cuba-threshold", "half,quarter"], "--cuba-threshold"),
    (["--target", "cuba", "--cuba-threshold", "half,,half,half"], "--cuba-threshold"),
    (["--target", "cuba", "--cuba-threshold", "half,bias"], "per spiking layer (4)"),
])
def test_bad_cuba_tuning_flags_are_one_line_exit_2(trained, tmp_path, capsys, argv, needle):
    _, _, _, path = trained("cnn", 2)
    dst = tmp_path / "x.pt"
    try:
        code = finetune_cli([str(path), *argv, "--no-progress", "-o", str(dst)])
    except SystemExit as e:  # argparse's refusal of a choice
        code = e.code
    assert needle in _one_line_error(capsys, code) and not dst.exists()


def test_cli_tunes_and_exports_a_mapping_per_layer(trained, tmp_path, capsys):
    """--cuba-threshold takes one mapping per spiking layer on the command line too: finetune through it,
    export with it (exactly to_cuba of the tuned codes); another list is refused in one line."""
    _, _, _, path = trained("cnn", 2)
    modes = "half,bias,half,theta"
    pt, h5 = tmp_path / "cuba.pt", tmp_path / "net.h5"
    assert finetune_cli([str(path), "--target", "cuba", "--cuba-threshold", modes, "--max-samples", "256",
                         "--checks", "1", "--no-progress", "-o", str(pt)]) == 0
    assert checkpoint.load(str(pt))[2]["finetune"]["cuba_threshold"] == modes
    capsys.readouterr()
    err = _one_line_error(capsys, export_cli([str(pt), "--neuron", "cuba", "--cuba-threshold", "half", "-o", str(h5)]))
    assert modes in err and not h5.exists()
    assert export_cli([str(pt), "--neuron", "cuba", "--cuba-threshold", modes, "-o", str(h5)]) == 0
    want = to_cuba(convert(str(pt)), modes)
    assert all(a.equals(b) for a, b in zip(read_lif_network(h5).layers, want.layers))
    half = to_cuba(convert(str(pt)), "half")  # the list is not one mapping for all layers
    assert any(not a.equals(b) for a, b in zip(want.layers, half.layers))


def test_signed_tuning_is_unchanged_and_exports_as_before(trained, tmp_path):
    """--target signed (the default) still tunes the signed IF, layer-wise by default, and records it."""
    _, _, _, path = trained("cnn", 2)
    _, rec = finetune(str(path), str(tmp_path / "s.pt"), progress=False, max_samples=64)
    assert rec["method"] == "layerwise" and rec["target"] == "signed" and "cuba_threshold" not in rec


@pytest.mark.parametrize("window", [2, 3])
def test_longer_window_same_thresholds_and_the_tuner_is_exact_on_it(trained, window):
    """--cuba-window k: k·T steps, the same ϑ per layer, ``bias`` adds ⌊θ/(2kT)⌉ per step; the tuner's
    forward is lif_forward of that network bit for bit (as converted and after moving the codes)."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    x = load_dataset("digits").x_test[:160]
    for mode in THRESHOLDS:
        one, k = to_cuba(net, mode), to_cuba(net, mode, window)
        assert k.timesteps == window * net.timesteps and k.reset_interval > k.timesteps
        assert [a.neuron for a in one.layers] == [b.neuron for b in k.layers]
        for a, b, lay in zip(one.layers, k.layers, net.layers):
            if mode == "bias" and not lay.accumulates:
                assert np.array_equal(b.bias - lay.bias, np.full_like(lay.bias, round(lay.threshold / (2 * window * 3))))
            else:
                assert np.array_equal(a.bias, b.bias)
    tuner = CubaTuner(qann, net, threshold="bias", window=window)
    assert tuner.T == window * net.timesteps
    want = lif_forward(to_cuba(net, "bias", window), x).out.numpy()
    assert np.array_equal(64 * _tuner_sums(tuner, x).astype(np.int64), want)
    with torch.no_grad():
        for p in tuner.params():
            p.add_(torch.randint(-2, 3, p.shape, generator=torch.Generator().manual_seed(window)).to(p.dtype))
    assert np.array_equal(64 * _tuner_sums(tuner, x).astype(np.int64), run_lif_batches(tuner.cuba_network(), x))


@pytest.mark.parametrize("window", [0, -1, 65, 1.5, True, "2"])
def test_a_window_out_of_range_is_refused(trained, window):
    net = convert(str(trained("cnn", 2)[3]))
    with pytest.raises(FastSNNError, match="--cuba-window"):
        to_cuba(net, "half", window)


def test_cli_window_is_remembered_and_wrong_window_flags_are_refused(trained, tmp_path, capsys, require_lava):
    """finetune --target cuba --cuba-window 2 → export needs the same window (one line, exit 2, nothing
    written otherwise); --cuba-window with the IF neuron or target is refused; Lava runs the 2T-step file
    equal to the LIF reference."""
    _, _, _, path = trained("cnn", 2)
    pt, h5 = tmp_path / "w2.pt", tmp_path / "w2.h5"
    assert finetune_cli([str(path), "--target", "cuba", "--cuba-window", "2", "--checks", "2", "--no-progress",
                         "-o", str(pt)]) == 0
    assert checkpoint.load(str(pt))[2]["finetune"]["cuba_window"] == 2
    capsys.readouterr()
    for argv in (["--neuron", "cuba"], ["--neuron", "cuba", "--cuba-window", "3"], []):
        err = _one_line_error(capsys, export_cli([str(pt), *argv, "-o", str(h5)]))
        assert "--cuba-window 2" in err and not h5.exists()
    err = _one_line_error(capsys, export_cli([str(path), "--cuba-window", "2", "-o", str(h5)]))
    assert "--neuron cuba only" in err and not h5.exists()
    err = _one_line_error(capsys, finetune_cli([str(path), "--cuba-window", "2", "--no-progress", "-o",
                                                str(tmp_path / "s.pt")]))
    assert "--target cuba only" in err and not (tmp_path / "s.pt").exists()
    assert export_cli([str(pt), "--neuron", "cuba", "--cuba-window", "2", "-o", str(h5)]) == 0
    lif = read_lif_network(h5)
    assert lif.timesteps == 6 and all(a.equals(b) for a, b in zip(lif.layers, to_cuba(convert(str(pt)), "half", 2).layers))
    out = tmp_path / "run.json"
    assert run_cli([str(h5), "--backend", "lava-sim", "--samples", "10", "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["timesteps"] == 6 and r["reference_agreement"] == 1.0 and r["first_difference"] is None


def test_a_mapping_per_spiking_layer(trained):
    """--cuba-threshold per spiking layer ("half,bias,…"): each layer is the single mapping's layer; the
    wrong count or an unknown mapping is refused naming the count; the tuner is exact through it."""
    qann, _, _, path = trained("cnn", 2)
    net = convert(str(path))
    n = sum(not layer.accumulates for layer in net.layers)
    mixed = ["theta", "half", "bias", "half", "theta", "bias"][:n]
    lif = to_cuba(net, ",".join(mixed))
    for i, m in enumerate(mixed):
        assert lif.layers[i].equals(to_cuba(net, m).layers[i])
    assert lif.layers[-1].equals(to_cuba(net, "half").layers[-1])
    assert all(a.equals(b) for a, b in zip(to_cuba(net, ",".join(["half"] * n)).layers, to_cuba(net, "half").layers))
    for bad in (",".join(mixed[:-1]), ",".join(mixed + ["half"]), ",".join(["half"] * (n - 1) + ["quarter"])):
        with pytest.raises(FastSNNError, match=f"per spiking layer \\({n}\\)"):
            to_cuba(net, bad)
    x = load_dataset("digits").x_test[:100]
    tuner = CubaTuner(qann, net, threshold=",".join(mixed))
    assert np.array_equal(64 * _tuner_sums(tuner, x).astype(np.int64), lif_forward(lif, x).out.numpy())
